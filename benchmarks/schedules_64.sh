#!/usr/bin/env bash
# Candidate fast schedules on chelsea 64x64 (lambda_k 20, seed 0), one after the other, 1 thread.
# Scored later against the paper-schedule runs by `python benchmarks/run_bench.py score`.
set -u
cd "$(dirname "$0")/.."
run() { python benchmarks/quality_runs.py --size 64 "$@" >> benchmarks/results/runs/schedules.log 2>&1; }
run --name fast-s0 --preset fast
run --name preview-s0 --preset preview
run --name cos0.1-N200-L16-s0 --preset fast --lr 0.1 --steps 200
run --name cos0.03-N300-L8-s0 --preset fast --steps 300 --samples 8
run --name cos0.05-N300-L16-s0 --preset fast --lr 0.05 --steps 300
run --name const0.01-N300-L16-s0 --preset paper --lr 0.01 --steps 300 --samples 16
