#!/usr/bin/env bash
# Candidate fast schedules on the rocket sample at 64x64 (lambda_k 20), one after the other, one
# thread each; scored against the paper-schedule runs by `rdex bench --mode quality --runs
# benchmarks/studies/results/runs --out benchmarks/studies/results/quality-64`.
# (At 64x64 chelsea's label probability is 0.52 and the empty mask is optimal for lambda_k 20:
# a degenerate study. The rocket sample is predicted 'altar' with p 0.94, and its masks keep ~1%.)
set -u
cd "$(dirname "$0")/.."
run() { python benchmarks/studies/quality_runs.py --image rocket --size 64 "$@" >> benchmarks/studies/results/runs/schedules.log 2>&1; }
run --name fast-s0 --preset fast
run --name preview-s0 --preset preview
run --name cos0.1-N100-L8-s0 --preset fast --lr 0.1 --steps 100 --samples 8
run --name cos0.1-N200-L16-s0 --preset fast --lr 0.1 --steps 200
run --name cos0.1-N200-L4-s0 --preset fast --lr 0.1 --steps 200 --samples 4
run --name cos0.03-N300-L8-s0 --preset fast --steps 300 --samples 8
run --name const0.01-N300-L16-s0 --preset paper --lr 0.01 --steps 300 --samples 16
