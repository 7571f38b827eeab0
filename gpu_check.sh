#!/usr/bin/env bash
# The GPU checks in one go, for a machine with CUDA, in about BUDGET_S seconds (default 480):
#   1. the test suite's CUDA cases (every test with a device parameter runs on cuda too);
#   2. one group (2 seeds x RAM + uncertainty / + both, 2 epochs of 640 images) trained on
#      CUDA and on the CPU from the same seeds: their logged losses compared step by step;
#   3. benchmark.py on CUDA: groups of K = 1 .. 64 runs eager, then K = 1 and 64 compiled with
#      CUDA graphs (--compile_mode=reduce-overhead) and plainly compiled, into
#      benchmark_cuda.json; no compiled row starts later than 2 minutes before the budget ends.
# Steps 1 and 2 are cut at 2 minutes each. Everything it prints goes to $OUT/gpu_check.log
# (OUT defaults to runs/gpu_check), with benchmark_cuda.json and devices.json (the comparison)
# beside it.
#
#   bash gpu_check.sh                       all three
#   STEPS="tests bench" bash gpu_check.sh   some of them (tests, train, bench)
#   PYTHON=/path/to/python bash gpu_check.sh  another interpreter than .venv's or python3
# On a machine whose image brings its own torch (not the pinned one), it runs with that torch;
# benchmark_cuda.json and the log record which version it was.
set -uo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
OUT=${OUT:-runs/gpu_check}
STEPS=${STEPS:-tests train bench}
BUDGET_S=${BUDGET_S:-480}
export PYTHONUNBUFFERED=1  # the log grows line by line, and keeps its lines if a step is cut
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
status=0
run() {  # a step: its command line and output into the log; a failure is remembered
    echo "== $*" | tee -a "$LOG"
    "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || { echo "== exit status $rc" | tee -a "$LOG"; status=1; }
}

run nvidia-smi
run "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name(0))"
for step in $STEPS; do
    case $step in
    tests)
        run timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests -k cuda;;
    train)
        for gpu in False True; do
            run timeout 60 "$PY" main.py --subset=640 --epochs=2 --random_seed=1,2 \
                --uncertainty=True --intrinsic=False,True --use_tensorboard=False --plot_freq=0 \
                --use_gpu=$gpu --ckpt_dir="$OUT/gpu$gpu/ckpt" --logs_dir="$OUT/gpu$gpu/logs" \
                --results_dir="$OUT/gpu$gpu/results"
        done
        run "$PY" compare_devices.py "$OUT/gpuFalse/logs" "$OUT/gpuTrue/logs" \
            --out="$OUT/devices.json";;
    bench)
        left=$((BUDGET_S - SECONDS - 120))
        run "$PY" benchmark.py --device=cuda --groups=1,2,4,8,16,32,64 --compile_groups=1,64 \
            --sweep=0 --budget_s=$((left > 30 ? left : 30)) --out="$OUT/benchmark_cuda.json"
        cp "$OUT/benchmark_cuda.json" benchmark_cuda.json;;
    *)
        echo "unknown step '$step' (tests, train, bench)" >&2; exit 2;;
    esac
done
echo "== done, exit status $status; files in $OUT" | tee -a "$LOG"
exit $status
