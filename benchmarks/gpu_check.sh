#!/usr/bin/env bash
# One call, everything a GPU can show: `bash benchmarks/gpu_check.sh OUT_DIR` on an H100/H200 machine.
#
# Runs from the source tree with the machine's own python3 (torch + Triton + CUDA; nothing installed, no network):
#   1. the gpu-marked tests (kernels vs references, CUDA-graph decode, TensorRT where present)  -> gpu_tests.xml/.log
#   2. benchmarks/bench_kernels.py: fused NN lookup vs cdist+argmin, head argmax, cached attention, and the
#      17-position decode: Triton (eager / CUDA graph) vs torch eager CUDA vs torch CUDA graph  -> bench_kernels.json
#   3. hipart-bench --device cuda on every backend available there (bundled model), JSON + PNG  -> hipart_bench_cuda.*
#   4. the machine: nvidia-smi, versions                                                            -> gpu_env.txt
# Each step has its own time limit so the whole check ends within ~8 minutes; a failing step is recorded and the
# next one still runs. The exit status is the number of failed steps.
set -u
OUT="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
PY="${PYTHON:-python3}"
failed=0
step() {  # step NAME SECONDS CMD...: run with a time limit, log to OUT/NAME.log, count failures
  local name=$1 secs=$2
  shift 2
  echo "== $name (limit ${secs}s): $*" | tee -a "$OUT/gpu_check.log"
  local t0=$SECONDS
  timeout "$secs" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "   -> exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/gpu_check.log"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

{ nvidia-smi || true; "$PY" -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', \
torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')"; \
"$PY" -c "import triton; print('triton', triton.__version__)" || true; } >"$OUT/gpu_env.txt" 2>&1

step gpu_tests 240 "$PY" -m pytest -q -m gpu -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml" tests/
step bench_kernels 150 "$PY" benchmarks/bench_kernels.py --reps 100 --out "$OUT"
step hipart_bench_cuda 120 "$PY" -m edge.cli_bench --device cuda --backends all --batch 1,8,64,256 --iters 50 \
  --max-seconds 10 --json "$OUT/hipart_bench_cuda.json" --report "$OUT/hipart_bench_cuda.png"
echo "gpu_check: $failed step(s) failed; results in $OUT" | tee -a "$OUT/gpu_check.log"
exit "$failed"
