"""The benchmark commands quoted in the README, in one place.

    python benchmarks/run_bench.py speed          # CPU: reference vs rdex, 256x256, L=64
    python benchmarks/run_bench.py speed-demo     # per-step cost of the demo's batch (5 images)
    python benchmarks/run_bench.py gpu            # everything on CUDA at 256x256 (one command)
    python benchmarks/run_bench.py cost           # how cost grows: sizes x batches, rdex batch on Ray

Each writes JSON + PNG under benchmarks/results/. Extra arguments go to ``rdex bench``. The
explorations behind rdex's defaults (schedules, CPU levers, costs) are in benchmarks/studies/.
"""

from __future__ import annotations

import sys

from rdex.cli import main

COMMANDS: dict[str, list[str]] = {
    "speed": [
        "bench", "--mode", "speed", "--size", "256", "--samples", "64", "--steps", "3",
        "--repeats", "3", "--variants", "reference,rdex,rdex-nchw,rdex-onepass",
        "--out", "benchmarks/results/speed-cpu-256-L64",
    ],
    "speed-demo": [
        "bench", "--mode", "speed", "--size", "256", "--samples", "8", "--batch", "5",
        "--steps", "2", "--repeats", "2", "--variants", "rdex,rdex-onepass",
        "--out", "benchmarks/results/speed-cpu-demo",
    ],
    "gpu": [
        "bench", "--mode", "all", "--device", "cuda", "--size", "256", "--samples", "64",
        "--steps", "20", "--repeats", "5", "--schedules", "fast,preview",
        "--out", "benchmarks/results/gpu",
    ],
    "cost": [
        "bench", "--mode", "cost", "--threads", "1", "--max-memory-gb", "8",
        "--max-cell-seconds", "400", "--out", "benchmarks/results/cost-cpu",
    ],
}  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(COMMANDS[sys.argv[1]] + sys.argv[2:]))
