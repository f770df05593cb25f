"""What a ShearletX step costs beside a CartoonX step (and WaveletX's), on EfficientNet-Lite0.

Each method runs its own representation, obfuscation and penalties with the same number of noise
samples per step (``--samples``, default 16, ShearletX's), interleaved in rounds so that a change
of machine load hits all methods alike. Per run the step times come from the optimiser's
callback; the first ``--warmup`` steps (filter construction, allocator warm-up) are dropped and
the median of the rest is reported, then the median over rounds. It also times the
representation alone: encode, and decode with its backward pass, for ``samples`` images.

Usage (one thread; say the load, the machine is shared):
    OMP_NUM_THREADS=1 python benchmarks/studies/shearletx_cost.py --sizes 128 256 --threads 1 \
        --out benchmarks/studies/results/shearletx_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import torch

import rdex
from rdex.methods import METHODS


def step_times(
    method: str, model: torch.nn.Module, x: torch.Tensor, args: Any
) -> tuple[float, float]:
    """Median wall-clock and process CPU seconds per optimisation step of one run (after the
    warm-up steps). With one thread the CPU time is what the step costs without the machine's
    other load; the wall time is what it took here."""
    explainer = METHODS[method](
        model, preset="fast", steps=args.warmup + args.steps, samples=args.samples
    )
    stamps: list[tuple[float, float]] = []
    explainer.callback = lambda step, masks: stamps.append(
        (time.perf_counter(), time.process_time())
    )
    explainer.explain(x)
    pairs = list(zip(stamps, stamps[1:], strict=False))[args.warmup :]
    wall = statistics.median(b[0] - a[0] for a, b in pairs)
    cpu = statistics.median(b[1] - a[1] for a, b in pairs)
    return wall, cpu


def transform_times(method: str, x: torch.Tensor, samples: int, repeats: int) -> dict[str, float]:
    """Encode one image; decode ``samples`` coefficient sets and back-propagate through it."""
    explainer = METHODS[method](torch.nn.Identity())
    rep = explainer.representation
    rep.encode(x)  # build filters once
    enc, dec = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        bands = rep.encode(x)
        enc.append(time.perf_counter() - t)
        batch = [b.expand(samples, *b.shape[1:]).clone().requires_grad_(True) for b in bands]
        t = time.perf_counter()
        y = rep.decode(batch, shape=x.shape[1:])
        torch.autograd.grad(y.square().sum(), batch)
        dec.append(time.perf_counter() - t)
    coefficients = sum(b[0].numel() for b in bands)
    return {
        "encode_s": statistics.median(enc),
        "decode_backward_s": statistics.median(dec),
        "coefficients_per_image": coefficients,
        "redundancy": coefficients / x[0].numel(),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--methods", nargs="+", default=["cartoonx", "shearletx", "waveletx"])
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--image", default="chelsea")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = rdex.load_classifier()
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for size in args.sizes:
        x = rdex.sample_image(args.image, size=size)[None]
        per_method: dict[str, list[tuple[float, float]]] = {m: [] for m in args.methods}
        for _ in range(args.rounds):
            for method in args.methods:
                per_method[method].append(step_times(method, model, x, args))
        results[str(size)] = {
            m: {
                "step_s": statistics.median(w for w, _ in v),
                "step_cpu_s": statistics.median(c for _, c in v),
                "rounds_wall_cpu_s": v,
                **transform_times(m, x, args.samples, repeats=3),
            }
            for m, v in per_method.items()
        }
        base = results[str(size)].get("cartoonx", {}).get("step_cpu_s")
        for m, r in results[str(size)].items():
            ratio = f" ({r['step_cpu_s'] / base:.2f}x CartoonX)" if base else ""
            print(
                f"{size} px {m}: {r['step_cpu_s']:.3f} CPU s/step{ratio}, {r['step_s']:.3f} s wall;"
                f" encode {r['encode_s'] * 1e3:.0f} ms,"
                f" decode+backward of {args.samples} {r['decode_backward_s'] * 1e3:.0f} ms,"
                f" {r['redundancy']:.1f} coefficients per pixel and channel",
                flush=True,
            )
    record = {
        "settings": vars(args),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "results": results,
    }
    print(f"load average before {load_before}, after {record['load_average_after']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
