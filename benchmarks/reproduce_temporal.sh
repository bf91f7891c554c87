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
run unpruned --prune none                           # H2OT Table 2 row "MixSTE" (no pruning)
run tps_tri --prune tps --recover tri               # default: r=[14,9], b=[0,1]
run tps_tra --prune tps --recover tra
run tpmo_tra --prune tpmo --recover tra
run tpa_tra --prune tpa --recover tra
run tpc_tra --prune tpc --recover tra
run tps_tri_r9_b0 --prune tps --recover tri --schedule-r 9 --schedule-b 0    # Table 4 sweep
run tps_tri_r5_b1 --prune tps --recover tri --schedule-r 14 5 --schedule-b 0 1
run seq2frame_tps_tri --prune tps --recover tri --pipeline seq2frame          # Table 3
# single-frame HiPART (the bundled model's lifter) on exactly the same test frames, for the >= 10% goal
hipart-temporal eval --checkpoint "$R/tps_tri/temporal.pt" --data "$DATA" --split test --camera 0 \
  --generated "$R/gen_test_c0.npz" --single-frame "$RUNS/default/hipart.pt" --no-progress \
  --json "$OUT/temporal_tps_tri_vs_single_frame_test.json"
hipart-temporal bench --threads 2 --json "$OUT/temporal_bench_cpu.json"
