#!/usr/bin/env bash
# Time-to-quality study at 128x128 (chelsea, "Egyptian cat" p = 0.99 at this size; lambda_k 20,
# the default), the size the performance issue allows for CPU studies. One thread per run; the
# two paper-schedule runs (about 45 min each) went first, in parallel:
#   python benchmarks/studies/quality_runs.py --name paper-s0 --preset paper --seed 0 --size 128 --out benchmarks/studies/results/runs-chelsea128
#   python benchmarks/studies/quality_runs.py --name paper-s1 --preset paper --seed 1 --size 128 --out benchmarks/studies/results/runs-chelsea128
# Scored by: rdex bench --mode quality --runs benchmarks/studies/results/runs-chelsea128 --image chelsea
#   --size 128 --out benchmarks/studies/results/quality-128
set -u
cd "$(dirname "$0")/.."
out=benchmarks/studies/results/runs-chelsea128
run() { OMP_NUM_THREADS=1 python benchmarks/studies/quality_runs.py --image chelsea --size 128 --out "$out" "$@" >> "$out/schedules.log" 2>&1; }
for s in 0 1; do
  run --name fast-s$s --preset fast --seed $s
  run --name preview-s$s --preset preview --seed $s
  run --name cos0.1-N200-L8-s$s --preset fast --lr 0.1 --steps 200 --samples 8 --seed $s
  run --name cos0.05-N300-L16-s$s --preset fast --lr 0.05 --steps 300 --seed $s
done
# After scoring the above (fast: SSIM 0.93-0.94 to the paper's, under the 0.95 target), two
# schedules with twice fast's evaluations, in parallel:
run --name cos0.03-N400-L32-s0 --preset fast --samples 32 &
run --name cos0.03-N800-L16-s0 --preset fast --steps 800 &
wait
