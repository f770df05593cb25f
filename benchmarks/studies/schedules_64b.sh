#!/usr/bin/env bash
# Second batch: schedules of ~1000 model evaluations (steps x samples), what fits about 60 s at
# 256x256 on the 2-core CPU, plus second seeds of the candidates (rocket 64x64, lambda_k 20).
set -u
cd "$(dirname "$0")/.."
run() { python benchmarks/studies/quality_runs.py --image rocket --size 64 "$@" >> benchmarks/studies/results/runs/schedules_b.log 2>&1; }
run --name cos0.2-N100-L8-s0 --preset fast --lr 0.2 --steps 100 --samples 8
run --name cos0.05-N100-L8-s0 --preset fast --lr 0.05 --steps 100 --samples 8
run --name cos0.1-N250-L4-s0 --preset fast --lr 0.1 --steps 250 --samples 4
run --name cos0.1-N60-L16-s0 --preset fast --lr 0.1 --steps 60 --samples 16
run --name preview-s1 --preset preview --seed 1
run --name fast-s1 --preset fast --seed 1
run --name cos0.1-N60-L8-s0 --preset fast --lr 0.1 --steps 60 --samples 8
run --name cos0.1-N120-L4-s0 --preset fast --lr 0.1 --steps 120 --samples 4
# Third batch (second session): the 128 px study's best cheaper candidate, on rocket at 64x64 too.
run --name cos0.05-N300-L16-s0 --preset fast --lr 0.05 --steps 300 --samples 16
run --name cos0.05-N300-L16-s1 --preset fast --lr 0.05 --steps 300 --samples 16 --seed 1
