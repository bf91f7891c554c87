#!/usr/bin/env bash
# Issue-8 tables in docs/RESULTS.md (H2OT on HiPART's stream), from a trained default run.
# Usage: bash benchmarks/reproduce_temporal.sh [DATA_DIR] [RUNS_DIR]    (run from the repository root)
# Budget: every model is the `small` preset at T=27, 300 steps of 16 windows (camera 0 of every train clip).
set -euo pipefail
DATA=${1:-data/cmu_lab}
RUNS=${2:-runs}
R="$RUNS/temporal"
OUT=benchmarks/results
mkdir -p "$R" "$OUT"
STEPS=${STEPS:-300}
# HiPART's generated dense/fine for camera 0 of every clip (train + test), stored detections as x_s
for split in train test; do
  [ -f "$R/gen_${split}_c0.npz" ] || hipart-temporal cache --hipart "$RUNS/default/hipart.pt" --data "$DATA" \
    --split $split --camera 0 --out "$R/gen_${split}_c0.npz" --no-progress
done
run() {  # name, then extra train args
  local name=$1; shift
  hipart-temporal train --data "$DATA" --out "$R/$name" --frames 27 --config small --camera 0 \
    --generated "$R/gen_train_c0.npz" --epochs 1 --max-steps "$STEPS" --no-progress --resume "$@"
  hipart-temporal eval --checkpoint "$R/$name/temporal.pt" --data "$DATA" --split test --camera 0 \
    --generated "$R/gen_test_c0.npz" --no-progress --json "$OUT/temporal_${name}_test.json"
}
# --- what was run in this session (docs/RESULTS.md): TPS+TRI 300 steps at the default lr, then one epoch at lr 1e-3
#     of the unpruned and the TPS+TRI lifter, each scored next to the single-frame HiPART on the same frames
run tps_tri --prune tps --recover tri
for spec in "unpruned600 --prune none" "tps_tri600 --prune tps --recover tri"; do
  set -- $spec; name=$1; shift
  hipart-temporal train --data "$DATA" --out "$R/$name" --frames 27 --config small --camera 0 \
    --generated "$R/gen_train_c0.npz" --epochs 1 --max-steps 600 --lr 1e-3 --no-progress --resume "$@"
  hipart-temporal eval --checkpoint "$R/$name/temporal.pt" --data "$DATA" --split test --camera 0 \
    --generated "$R/gen_test_c0.npz" --single-frame "$RUNS/default/hipart.pt" --no-progress \
    --json "$OUT/temporal_${name}_test.json"
done
hipart-temporal bench --threads 1 --runs 3 --json "$OUT/temporal_bench_cpu.json"
[ "${FULL:-0}" = 1 ] || exit 0
# --- the full H2OT tables (FULL=1; needs a much longer budget: set STEPS to ~20 epochs of 487 steps)
run unpruned --prune none                           # H2OT Table 2 row "MixSTE" (no pruning)
run tps_tra --prune tps --recover tra
run tpmo_tra --prune tpmo --recover tra
run tpa_tra --prune tpa --recover tra
run tpc_tra --prune tpc --recover tra
run tps_tri_r9_b0 --prune tps --recover tri --schedule-r 9 --schedule-b 0    # Table 4 sweep
run tps_tri_r5_b1 --prune tps --recover tri --schedule-r 14 5 --schedule-b 0 1
run seq2frame_tps_tri --prune tps --recover tri --pipeline seq2frame          # Table 3
