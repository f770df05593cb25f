"""Seconds per CartoonX step for the CPU levers: chunk size and BatchNorm folding, interleaved.

Runs ``rdex.CartoonX`` itself (default model, chelsea) for a few steps per variant, in turns
(A, B, C, A, B, C, ...), so other load hits every variant alike; reports the median wall and CPU
seconds per step and per model evaluation. Usage:

    python benchmarks/studies/step_levers.py --size 256 --samples 16 --chunks 4,8,16 --threads 2
    python benchmarks/studies/step_levers.py --size 256 --samples 16 --chunks 8 --fold both --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from rdex.images import sample_image
from rdex.methods import CartoonX
from rdex.models import load_classifier


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunks", default="4,8,16", help="obfuscations per forward pass")
    p.add_argument("--fold", choices=["on", "off", "both"], default="on")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=None, help="JSON file to write")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_classifier()
    x = sample_image("chelsea", size=a.size).unsqueeze(0)
    folds = {"on": [True], "off": [False], "both": [True, False]}[a.fold]
    variants = [(int(c), f) for c in a.chunks.split(",") for f in folds]

    def run(chunk: int, fold: bool, steps: int) -> tuple[float, float]:
        explainer = CartoonX(
            model,
            preset="paper",
            steps=steps,
            samples=a.samples,
            sample_chunk=chunk,
            fold_batchnorm=fold,
        )
        marks: list[tuple[float, float]] = []
        # Time from the end of the first step to the end of the last: setup (reference pass,
        # BatchNorm folding, DWT of the input) is paid once per explanation, not per step.
        explainer.callback = lambda step, masks: marks.append(
            (time.perf_counter(), time.process_time())
        )
        explainer.explain(x)
        if steps < 2:
            return 0.0, 0.0
        return (
            (marks[-1][0] - marks[0][0]) / (steps - 1),
            (marks[-1][1] - marks[0][1]) / (steps - 1),
        )

    if a.steps < 2:
        p.error("--steps must be at least 2 (steps are timed from the end of the first)")
    for v in variants:  # warm-up
        run(*v, steps=2)
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    loads = []
    for r in range(a.repeats):
        for chunk, fold in variants:
            name = f"chunk {chunk}, fold {'on' if fold else 'off'}"
            loads.append(os.getloadavg()[0])
            wall, cpu = run(chunk, fold, a.steps)
            walls.setdefault(name, []).append(wall)
            cpus.setdefault(name, []).append(cpu)
            print(
                f"round {r + 1} {name}: {wall:.3f} s/step wall, {cpu:.3f} CPU (load {loads[-1]:.1f})"
            )
    summary = {
        name: {
            "wall_s_per_step": statistics.median(walls[name]),
            "cpu_s_per_step": statistics.median(cpus[name]),
            "wall_ms_per_evaluation": 1000 * statistics.median(walls[name]) / a.samples,
            "all_wall": walls[name],
        }
        for name in walls
    }
    for name, s in summary.items():
        print(
            f"{name}: {s['wall_s_per_step']:.3f} s/step, {s['wall_ms_per_evaluation']:.1f} ms/eval"
        )
    if a.out:
        result = {
            "settings": vars(a) | {"torch": torch.__version__, "cpus": os.cpu_count()},
            "loadavg": loads,
            "variants": summary,
        }
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
