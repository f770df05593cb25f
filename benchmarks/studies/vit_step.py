"""Seconds per CartoonX step on a vision transformer (timm ViT-S/16) beside EfficientNet-Lite0.

ViT-S gets random weights (``timm.create_model("vit_small_patch16_224", pretrained=False)``:
the time of a step does not depend on the weights) and ImageNet normalisation; EfficientNet-Lite0
is rdex's default model. Both explain chelsea at 224 x 224 with ``L`` noise samples per step, in
turns (A, B, A, B, ...), so other load on the machine hits both alike. Reports the median wall
and CPU seconds per step (timed from the end of the first step to the end of the last, so the
per-explanation setup is left out) and the load average before and after. Usage:

    OMP_NUM_THREADS=2 python benchmarks/studies/vit_step.py --samples 16 --steps 4 --repeats 3
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
from rdex.models import load_classifier, wrap_classifier


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=None, help="JSON file to write")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import timm

    torch.manual_seed(0)
    models = {
        "efficientnet_lite0": load_classifier(),
        "vit_small_patch16_224": wrap_classifier(
            timm.create_model("vit_small_patch16_224", pretrained=False), name="vit_s16"
        ),
    }
    x = sample_image("chelsea", size=a.size).unsqueeze(0)

    def run(model: torch.nn.Module) -> tuple[float, float]:
        explainer = CartoonX(model, preset="paper", steps=a.steps, samples=a.samples)
        marks: list[tuple[float, float]] = []
        explainer.callback = lambda step, masks: marks.append(
            (time.perf_counter(), time.process_time())
        )
        explainer.explain(x)
        (w0, c0), (w1, c1) = marks[0], marks[-1]
        return (w1 - w0) / (len(marks) - 1), (c1 - c0) / (len(marks) - 1)

    load_before = os.getloadavg()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for model in models.values():  # warm-up (allocator, oneDNN kernels)
        run(model)
    for _ in range(a.repeats):
        for name, model in models.items():
            times[name].append(run(model))
    load_after = os.getloadavg()
    rows = {
        name: {
            "wall_s_per_step": statistics.median(t[0] for t in ts),
            "cpu_s_per_step": statistics.median(t[1] for t in ts),
        }
        for name, ts in times.items()
    }
    report = {
        "size": a.size,
        "samples": a.samples,
        "steps": a.steps,
        "repeats": a.repeats,
        "threads": a.threads,
        "load_before": load_before,
        "load_after": load_after,
        "torch": torch.__version__,
        "results": rows,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
