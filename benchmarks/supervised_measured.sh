#!/usr/bin/env bash
# The measured ur-lstm vs lstm runs of the README (issue 5), sized for a shared 2-core CPU:
# one thread per run, the two cells of a task side by side, each run well under 15 minutes.
# Run directories go to runs/supervised-bench/ (TensorBoard events, checkpoints: not committed);
# benchmarks/supervised_summary.py then writes benchmarks/results/supervised_measured.{json,md}
# and docs/supervised/*.png.
#
#   bash benchmarks/supervised_measured.sh            # all four tasks, ~45 minutes on a lightly loaded machine
#   bash benchmarks/supervised_measured.sh adding     # one task
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
RUNS=runs/supervised-bench
FASHION=${FASHION:-/usr/share/datasets/fashion-mnist}   # apt-get install dataset-fashion-mnist
PTB=${PTB:-data/ptb}                                     # python -m supervised.prepare_ptb data/ptb
mkdir -p "$RUNS"

pair() {  # pair NAME ARGS...: ur-lstm and lstm on the same settings, concurrently
  local name=$1; shift
  for cell in ur-lstm lstm; do
    rm -rf "$RUNS/$name-$cell"
    $PY -m supervised "$@" --cell "$cell" --seed 1 --no-progress --out "$RUNS/$name-$cell" \
      > "$RUNS/$name-$cell.log" 2>&1 &
  done
  wait
}

tasks=${*:-adding copy fashion ptb}
for task in $tasks; do
  case $task in
    adding)  pair adding adding --hidden-size 128 --steps 1200 --seq-len 200 --eval-seq-len 1000 \
               --eval-size 512 --eval-every 200 --log-every 20 --gate-histograms-every 400 ;;
    copy)    pair copy copy --hidden-size 128 --steps 8000 --seq-len 20 --eval-seq-len 40 \
               --eval-size 512 --eval-every 500 --log-every 50 --gate-histograms-every 1000 ;;
    fashion) pair fashion smnist --data-dir "$FASHION" --hidden-size 128 --steps 800 --eval-every 100 \
               --eval-batches 4 --eval-batch-size 500 --log-every 20 --gate-histograms-every 200 ;;
    ptb)     [ -f "$PTB/ptb.train.txt" ] || $PY -m supervised.prepare_ptb "$PTB"
             pair ptb wikitext103 --data-dir "$PTB" --hidden-size 128 --bptt 35 --epochs 1 --eval-every 100 \
               --eval-batches 40 --log-every 10 --gate-histograms-every 100 ;;
    *) echo "unknown task $task (adding, copy, fashion, ptb)" >&2; exit 2 ;;
  esac
done
$PY benchmarks/supervised_summary.py "$RUNS"
