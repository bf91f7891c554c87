#!/usr/bin/env bash
# The bundled edge model (hipart/assets/hipart_default.pt), command by command, as it was made on the shared
# 2-core CPU (one thread per job). Every step resumes: rerun the script after an interruption.
# Usage: bash benchmarks/train_edge.sh [DATA_DIR] [RUN_DIR]     (from the repository root)
#   PREV     the model the generator is fine-tuned from (session 2's bundled model: git show
#            f674eab:hipart/assets/hipart_default.pt > runs/hipart_session2_default.pt)
#   GEN_STEPS  generator steps of 64 to stop at (the bundled run stopped at GEN_STEPS; the state is kept, so a
#            larger value continues it), LIFT_MIN  minutes of training time per lifter candidate.
set -euo pipefail
DATA=${1:-data/cmu_lab}
RUN=${2:-runs/edge}
PREV=${PREV:-runs/hipart_session2_default.pt}
GEN_STEPS=${GEN_STEPS:-2000}
LIFT_MIN=${LIFT_MIN:-12}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -f "$DATA/manifest.json" ] || hipart-data build --bvh-dir ../shared/data/cmu_bvh --out "$DATA" --cameras lab --seed 0
# 1. Generator: fine-tune the previous model's HiARM on resampled detector noise, dropout 0.1 (the paper's 0.25
#    slows an under-trained model), constant lr 5e-4, batch 64; its tokenizer is kept as is.
GEN=(generator --data "$DATA" --out "$RUN" --config edge --init-from "$PREV" --generator-dropout 0.1
     --epochs 1 1 1 --batch-sizes 128 64 256 --input-2d noisy --no-progress)
hipart-train "${GEN[@]}" --resume --max-steps "$GEN_STEPS"
# 2. A HiPART holding the new generator (with an untrained lifter: only its densify path is used, to cache the
#    generated points the lifters train on).
[ -f "$RUN/seed_lifter.pt" ] || python -c "import sys; from hipart.checkpoint import save_checkpoint; \
from hipart.models.config import HiPARTConfig; from hipart.models.lifter import build_lifter; \
save_checkpoint(sys.argv[1], build_lifter(HiPARTConfig.edge().lifter))" "$RUN/seed_lifter.pt"
hipart-train assemble --data "$DATA" --out "$RUN" --tokenizer-from "$RUN/tokenizer.pt" \
  --generator-from "$RUN/generator.pt" --lifter-from "$RUN/seed_lifter.pt"
# 3. Lifters on the new generator's points (stored detections of every 4th training sample, cached once), equal
#    training time, chosen on the val subjects; the test subjects are scored once.
LB=(python benchmarks/lifter_budget.py --data "$DATA" --checkpoint "$RUN/hipart.pt" --minutes "$LIFT_MIN"
    --save-dir "$RUN/lifters" --cache "$RUN/cache")
"${LB[@]}" --cache-only --threads 2
"${LB[@]}" --candidates mlp-hier-512x2 --out benchmarks/results/lifter_final_hier.json &
"${LB[@]}" --candidates mlp-sparse-512x2 --out benchmarks/results/lifter_final_sparse.json
wait
# 4. Assemble the val winner (WINNER=mlp-hier-512x2 or mlp-sparse-512x2) and evaluate it on the test subjects.
WINNER=${WINNER:-mlp-hier-512x2}
hipart-train assemble --data "$DATA" --out "$RUN/final" --tokenizer-from "$RUN/tokenizer.pt" \
  --generator-from "$RUN/generator.pt" --lifter-from "$RUN/lifters/$WINNER.pt"
hipart-eval --checkpoint "$RUN/final/hipart.pt" --data "$DATA" --split test --input-2d det --subsample 4 \
  --json benchmarks/results/eval_edge_test.json --no-progress
python benchmarks/vs_blazepose.py --checkpoint "$RUN/final/hipart.pt" --out benchmarks/results/vs_blazepose_sample_clip.json
