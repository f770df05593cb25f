"""CPU seconds per image-step of CartoonX over image sizes and chunk sizes, per pixel.

Why does a step at 256 px cost more than 4x a step at 128 px (``rdex bench --mode cost``)? This
times one image's CartoonX step (the CLI's default preset, L from it) with several
``sample_chunk`` values per size, and the model's forward+backward alone on the same chunks, in
process CPU time (robust to other processes' load, not to their use of the shared caches), one
thread, interleaved rounds. Usage:

    OMP_NUM_THREADS=1 python benchmarks/studies/cost_per_pixel.py --sizes 128 256 512 \
        --chunks 16,8,4,2 --out benchmarks/studies/results/cost_per_pixel.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from rdex.bench.cost import cli_default_preset
from rdex.config import preset
from rdex.images import sample_image
from rdex.inference import keep_freed_memory
from rdex.methods import CartoonX
from rdex.models import load_classifier


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--chunks", default="16,8,4,2")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--samples", type=int, default=None, help="L (default: the preset's)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as the rdex command does
    model = load_classifier()
    name = cli_default_preset()
    samples = a.samples or preset(name).samples
    chunks = [int(c) for c in a.chunks.split(",")]
    runs = {}
    for size in a.sizes:
        x = sample_image("chelsea", size=size).unsqueeze(0)
        runner = CartoonX(model, preset=name)._model_runner(x)  # folded, channels-last weights
        for chunk in chunks:
            if chunk > samples:
                continue

            def step(c: int = chunk, img: torch.Tensor = x) -> tuple[float, float]:
                stamps: list[tuple[float, float]] = []
                ex = CartoonX(
                    model, preset=name, steps=1 + a.steps, samples=samples, sample_chunk=c
                )
                ex.callback = lambda _step, _masks: stamps.append(
                    (time.process_time(), time.perf_counter())
                )
                ex.explain(img)
                # the steps after the first: CPU and wall seconds
                return tuple((e - s) / a.steps for s, e in zip(stamps[0], stamps[-1], strict=True))

            def forward_backward(c: int = chunk, s: int = size, run=runner):  # noqa: ANN001, ANN202
                t, w = time.process_time(), time.perf_counter()
                for _ in range(0, samples, c):
                    y = torch.rand(c, 3, s, s).requires_grad_(True)
                    out = run(y.contiguous(memory_format=torch.channels_last))
                    torch.autograd.grad(torch.softmax(out, 1)[:, 0].sum(), y)
                return time.process_time() - t, time.perf_counter() - w

            runs[(size, chunk, "cartoonx step")] = step
            runs[(size, chunk, "model fwd+bwd (as rdex runs it)")] = forward_backward
    for fn in runs.values():  # warm-up
        fn()
    cpu: dict[tuple[int, int, str], list[float]] = {k: [] for k in runs}
    wall: dict[tuple[int, int, str], list[float]] = {k: [] for k in runs}
    for _ in range(a.repeats):
        for k, fn in runs.items():
            c, w = fn()
            cpu[k].append(c)
            wall[k].append(w)
    base = {}
    rows = []
    for (size, chunk, what), values in cpu.items():
        med = statistics.median(values)
        wall_med = statistics.median(wall[(size, chunk, what)])
        per_mpx = med / (size * size / 1e6)
        base.setdefault(what, per_mpx)
        rows.append(
            {
                "size": size,
                "chunk": chunk,
                "what": what,
                "cpu_s": values,
                "cpu_s_median": med,
                "wall_s_median": wall_med,
                "cpu_s_per_megapixel": per_mpx,
                "vs_first": per_mpx / base[what],
            }  # fmt: skip
        )
        print(
            f"{size:5d} px chunk {chunk:3d} {what:30s} {med:7.3f} CPU s, "
            f"{per_mpx:6.2f} s/Mpx ({per_mpx / base[what]:.2f}x the first), {wall_med:7.3f} wall s"
        )
    report = {
        "preset": name,
        "samples": samples,
        "threads": a.threads,
        "loadavg": os.getloadavg(),
        "note": "CPU and wall s per step of one image (after its first step), and of L fwd+bwd",
        "rows": rows,
    }
    print("loadavg", report["loadavg"])
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
