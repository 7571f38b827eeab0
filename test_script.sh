#!/usr/bin/env bash
# Redo the paper with sweep.py: the first-epoch comparison (4 variants x 5 seeds, one epoch,
# the figure's lambdas: sweeps/first_epoch.json), then the four variants on MNIST and on
# translated MNIST, 5 seeds each, 100 epochs (sweeps/paper.json), every run evaluated under
# our protocol (best checkpoint, M = 1 and 10) and the author's (latest checkpoint, M = 10):
# the curve N = 1..50 and the dynamic sweeps; then the figures, the tables, and each run's
# best and latest checkpoints, slimmed down, in pretrained/.
#
#   bash test_script.sh           the full pipeline: results/ and plots/ (many hours on a CPU)
#   bash test_script.sh --quick   the same pipeline on a tiny budget (one seed, 400 images,
#                                 one epoch, N up to 8) into runs_quick/: a few minutes
#   bash test_script.sh --strong  the four variants with the strong recipe (sweeps/strong.json,
#                                 docs/results.md) into results/strong, then the report
#   bash test_script.sh [--quick|--strong] FLAG...   also pass flags to sweep.py, and to
#                                 every run: --address=auto for a Ray cluster, --use_gpu=True
#
# Idempotent and resumable (sweep.py): what is trained or evaluated is skipped, a run with a
# checkpoint resumes from it. Set PYTHON to choose the interpreter, and DATASETS (default
# "mnist translated") to sweep one dataset only.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python

MODE=${1:-}
case $MODE in --quick|--strong) shift;; *) MODE=;; esac
for flag in "$@"; do
    case $flag in --*=*) ;; *)
        echo "usage: bash test_script.sh [--quick|--strong] [--flag=value ...] (got '$flag')" >&2
        exit 2;;
    esac
done
DATASETS=${DATASETS:-mnist translated}
ARGS=(--dataset="${DATASETS// /,}" "$@")

if [ "$MODE" = --strong ]; then
    "$PY" sweep.py --grid=sweeps/strong.json --report=False --ckpt_dir=runs/strong/ckpt \
        --logs_dir=runs/strong/logs --results_dir=results/strong "${ARGS[@]}"
    exec "$PY" report.py --pretrained_dir=pretrained
fi
if [ "$MODE" = --quick ]; then
    # One seed of each variant for one epoch: its runs double as the first-epoch runs.
    exec "$PY" sweep.py --grid=sweeps/paper.json --random_seed=1 --epochs=1 --subset=400 \
        --max_glimpses=8 --exploration_rate 0 0.1 0.3 --compile=False \
        --ckpt_dir=runs_quick/ckpt --logs_dir=runs_quick/logs \
        --results_dir=runs_quick/results --plots_dir=runs_quick/plots \
        --pretrained_dir=runs_quick/pretrained --first_epoch_logs=runs_quick/logs "${ARGS[@]}"
fi
"$PY" sweep.py --grid=sweeps/first_epoch.json --evaluate=False --report=False \
    --ckpt_dir=runs/first_epoch/ckpt --logs_dir=runs/first_epoch/logs \
    --results_dir=runs/first_epoch/results "${ARGS[@]}"
exec "$PY" sweep.py --grid=sweeps/paper.json --ckpt_dir=runs/ckpt --logs_dir=runs/logs \
    --results_dir=results --plots_dir=plots --pretrained_dir=pretrained \
    --first_epoch_logs=runs/first_epoch/logs "${ARGS[@]}"
