#!/usr/bin/env bash
# The measured Ray Tune sweep of the README: ur-lstm vs lstm on the adding task (T=100, 64 units),
# two seeds each, two trials at a time on a local ray.init(num_cpus=2). Copies the sweep's table,
# CSV and curves to benchmarks/results/ and docs/supervised/.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
OUT=runs/sweep-adding-t100
rm -rf "$OUT"
$PY -m supervised.sweep adding --cells ur-lstm lstm --seeds 0 1 --out "$OUT" --num-cpus 2 --max-concurrent 2 \
  --steps 1500 --hidden-size 64 --seq-len 100 --eval-seq-len 200 --eval-size 512 --eval-every 250 \
  --log-every 50 --gate-histograms-every 0
cp "$OUT/results.md" benchmarks/results/supervised_sweep_adding.md
cp "$OUT/results.csv" benchmarks/results/supervised_sweep_adding.csv
cp "$OUT/curves.png" docs/supervised/sweep_adding.png
