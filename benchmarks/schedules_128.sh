#!/usr/bin/env bash
# Time-to-quality study at 128x128 (chelsea, "Egyptian cat" p = 0.99 at this size; lambda_k 20,
# the default), the size the performance issue allows for CPU studies. One thread per run; the
# two paper-schedule runs (about 45 min each) went first, in parallel:
#   python benchmarks/quality_runs.py --name paper-s0 --preset paper --seed 0 --size 128 --out benchmarks/results/runs-chelsea128
#   python benchmarks/quality_runs.py --name paper-s1 --preset paper --seed 1 --size 128 --out benchmarks/results/runs-chelsea128
# Scored by: rdex bench --mode quality --runs benchmarks/results/runs-chelsea128 --image chelsea
#   --size 128 --out benchmarks/results/quality-128
set -u
cd "$(dirname "$0")/.."
out=benchmarks/results/runs-chelsea128
run() { OMP_NUM_THREADS=1 python benchmarks/quality_runs.py --image chelsea --size 128 --out "$out" "$@" >> "$out/schedules.log" 2>&1; }
for s in 0 1; do
  run --name fast-s$s --preset fast --seed $s
  run --name preview-s$s --preset preview --seed $s
  run --name cos0.1-N200-L8-s$s --preset fast --lr 0.1 --steps 200 --samples 8 --seed $s
done
