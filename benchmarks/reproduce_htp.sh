#!/usr/bin/env bash
# Issue-18 tables in docs/RESULTS.md ("HTP"): the HTP diffusion lifter's Table-XI progression next to the deterministic
# H2OT lifter and single-frame HiPART, all on the bundled model's frozen lifter, T=27, camera 0 of every clip,
# stored detections, the same test frames. Each HTP row trains for MIN minutes of one thread (equal CPU time).
# Usage: bash benchmarks/reproduce_htp.sh [DATA_DIR] [RUNS_DIR]     (run from the repository root; ~75 min on 1 core)
set -euo pipefail
DATA=${1:-data/cmu_lab}
R=${2:-runs}/htp
OUT=benchmarks/results
HIP=hipart/assets/hipart_default.pt
MIN=${MIN:-10}
H=${H:-5}; K=${K:-5}
ONLY=${ONLY:-}  # e.g. ONLY="htp_full baseline": just these rows
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$R" "$OUT"
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
# deterministic H2OT lifters (6 epochs, ~9 min each), scored with single-frame HiPART on the same frames
for spec in "unpruned --prune none" "tps_tri --prune tps --recover tri"; do
  set -- $spec; name=h2ot_$1; shift
  want "$name" || continue
  hipart-temporal train --data "$DATA" --out "$R/$name" --frames 27 --config small --camera 0 --input sparse \
    --lifter-from "$HIP" --feature-cache "$R/features" --epochs 6 --lr 1e-3 --no-progress --resume "$@"
  single=(); [ "$name" = h2ot_unpruned ] && single=(--single-frame "$HIP")
  hipart-temporal eval --checkpoint "$R/$name/temporal.pt" --data "$DATA" --split test --camera 0 \
    --feature-cache "$R/features" "${single[@]}" --no-progress --json "$OUT/htp_${name}_test.json"
done
# HTP: the paper's Table XI progression (baseline = unpruned D3DP-style denoiser), MGPTP after 1 of 4 blocks, n = 4,
# its restore queries with each frame's own pre-pruning tokens and the frame's own single-frame pose as the base
# (full_learned: H2OT's restore instead, learned queries + interpolated base, for comparison)
common=(--data "$DATA" --frames 27 --config small --camera 0 --condition lifter --lifter-from "$HIP"
        --feature-cache "$R/features" --sft-layers 1 --keep 4 --epochs 100 --minutes "$MIN" --lr 1e-3 --no-progress --resume)
skip=(--restore-query skip --restore-base own)
for spec in "full ${skip[*]}" "baseline --no-tcep --no-mgptp" "tcep --no-sft --no-mgptp" "tcep_sft --no-mgptp" \
            "tcep_mgptp --no-sft ${skip[*]}" "full_learned"; do
  set -- $spec; name=$1; shift
  want "$name" || continue
  hipart-temporal htp-train --out "$R/htp_$name" "${common[@]}" "$@"
  hipart-temporal htp-eval --checkpoint "$R/htp_$name/htp.pt" --data "$DATA" --split test --camera 0 \
    --feature-cache "$R/features" --hypotheses "$H" --steps "$K" --no-progress --json "$OUT/htp_${name}_test_h${H}k${K}.json"
done
python benchmarks/htp_table.py --results "$OUT"
