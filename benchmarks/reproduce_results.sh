#!/usr/bin/env bash
# Every number in docs/RESULTS.md, from scratch, on CPU (2 cores: ~3.5 h; set OMP_NUM_THREADS to your cores).
# Usage: bash benchmarks/reproduce_results.sh [DATA_DIR] [RUNS_DIR]   (run from the repository root)
# Each block is independent once its inputs exist; the `--resume` flags make reruns cheap.
set -euo pipefail
DATA=${1:-data/cmu_lab}
RUNS=${2:-runs}
OUT=benchmarks/results
mkdir -p "$RUNS" "$OUT"
SPLIT_ARGS=(--data "$DATA" --split test --input-2d det --no-progress)

# 0. dataset (CMU BVH subset, lab cameras, subject split from ../shared/data/cmu_bvh/README.md)
[ -f "$DATA/manifest.json" ] || hipart-data build --bvh-dir ../shared/data/cmu_bvh --out "$DATA" --cameras lab --seed 0

# 1. the default model: tokenizer 10 epochs, generator 2, lifter 2 (the equal-budget ablation reference, kept in
#    default_2ep), then the lifter resumed to 4 epochs (the bundled model); every 8th training sample
hipart-train all --data "$DATA" --out "$RUNS/default" --epochs 10 2 2 --subsample 8 --batch-sizes 128 64 64 \
  --no-progress --resume
mkdir -p "$RUNS/default_2ep" && cp "$RUNS/default/hipart.pt" "$RUNS/default/lifter.pt" "$RUNS/default_2ep/"
hipart-eval --checkpoint "$RUNS/default_2ep/hipart.pt" "${SPLIT_ARGS[@]}" --subsample 4 \
  --json "$OUT/eval_default_2ep_test.json"
hipart-train lifter --data "$DATA" --out "$RUNS/default" --epochs 10 2 4 --subsample 8 --batch-sizes 128 64 64 \
  --no-progress --resume
hipart-eval --checkpoint "$RUNS/default/hipart.pt" "${SPLIT_ARGS[@]}" --subsample 4 --json "$OUT/eval_default_test.json"

# 2. Table 5 (lifter input): the same generated training poses, the same lifter schedule, 17 / 65 / 161 points
for input in sparse dense; do
  mkdir -p "$RUNS/lift_$input"
  for f in tokenizer.pt generator.pt generated_train_s8_noisy.npz; do ln -sf "$(realpath "$RUNS/default/$f")" "$RUNS/lift_$input/$f"; done
  hipart-train lifter --data "$DATA" --out "$RUNS/lift_$input" --lifter-input "$input" --epochs 10 2 2 \
    --subsample 8 --batch-sizes 128 64 64 --no-progress --resume
  hipart-eval --checkpoint "$RUNS/lift_$input/hipart.pt" "${SPLIT_ARGS[@]}" --subsample 4 --json "$OUT/eval_lifter_${input}_test.json"
done

# 3. Table 7 protocol (occlusion sweeps), hierarchy vs sparse-only, every 4th test sample
for occ in mask crop; do
  hipart-eval --checkpoint "$RUNS/default_2ep/hipart.pt" "${SPLIT_ARGS[@]}" --subsample 16 --occlusion $occ \
    --json "$OUT/sweep_${occ}_hierarchy.json"
  hipart-eval --checkpoint "$RUNS/lift_sparse/hipart.pt" "${SPLIT_ARGS[@]}" --subsample 16 --occlusion $occ \
    --json "$OUT/sweep_${occ}_sparse.json"
done

# 4. Table 3 (tokenizer ablations) at the short budget (2 epochs, every 8th sample); reference = same budget, full
python - <<'PY'
import json
from hipart.models.config import HiPARTConfig
base = HiPARTConfig.paper().to_dict()
for name, change in {"full": {}, "noLA": {"local_alignment": False}, "noGA": {"global_alignment": False},
                     "shared": {"shared_codebook": True}}.items():
    d = json.loads(json.dumps(base)); d["tokenizer"].update(change)
    open(f"runs_cfg_tok_{name}.json", "w").write(json.dumps(d))
for name, change in {"cls": {"mode": "classification"}, "ar": {"order": "next_token", "sparse_to_dense": False},
                     "c2p": {"sparse_to_dense": False}, "s2d": {"order": "next_token"}, "both": {}}.items():
    d = json.loads(json.dumps(base)); d["generator"].update(change)
    open(f"runs_cfg_gen_{name}.json", "w").write(json.dumps(d))
PY
for v in full noLA noGA shared; do
  hipart-train tokenizer --data "$DATA" --out "$RUNS/tok_$v" --config "runs_cfg_tok_$v.json" --epochs 2 1 1 \
    --subsample 8 --no-progress --resume
  hipart-eval --checkpoint "$RUNS/tok_$v/tokenizer.pt" --data "$DATA" --split test --no-progress \
    --json "$OUT/eval_tokenizer_${v}_test.json"
done

# 5. Table 4 (generator variants), each 1 epoch on the tokens of the short-budget full tokenizer; every variant is
#    scored through the same lifter (the 2-epoch default lifter), so only the generator differs
for v in cls ar c2p s2d both; do
  mkdir -p "$RUNS/gen_$v"
  ln -sf "$(realpath "$RUNS/tok_full/tokenizer.pt")" "$RUNS/gen_$v/tokenizer.pt"
  hipart-train generator --data "$DATA" --out "$RUNS/gen_$v" --config "runs_cfg_gen_$v.json" --epochs 2 1 1 \
    --subsample 8 --no-progress --resume
  hipart-train assemble --data "$DATA" --out "$RUNS/gen_$v" --lifter-from "$RUNS/default_2ep/lifter.pt"
  hipart-eval --checkpoint "$RUNS/gen_$v/hipart.pt" "${SPLIT_ARGS[@]}" --subsample 8 \
    --json "$OUT/eval_generator_${v}_test.json"
done
