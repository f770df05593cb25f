"""Seeds of one CartoonX schedule on the bundled samples, kept as run records (``.npz`` + ``.json``)
for ``rdex bench --mode repeat --records DIR`` to score against the paper-schedule records.

    python benchmarks/studies/repeat_runs.py --name thorough --preset thorough --seeds 0 1 2 \
        --out benchmarks/studies/results/repeat-128
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rdex.bench.repeat import REPEAT_IMAGES, run_record
from rdex.models import load_classifier
from rdex.rde import preset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="schedule name in the records")
    p.add_argument("--preset", default="fast")
    p.add_argument("--images", nargs="+", default=list(REPEAT_IMAGES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--lambda-k", type=float, default=20.0)
    for opt, kind in (("steps", int), ("samples", int), ("lr", float), ("lr-final", float),
                      ("hold", float), ("init", float), ("early-steps", int),
                      ("early-samples", int)):  # fmt: skip
        p.add_argument(f"--{opt}", type=kind, default=None)
    p.add_argument("--schedule", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_classifier()
    out = Path(a.out)
    for image in a.images:
        for seed in a.seeds:
            name = f"{a.name}-{image}-s{seed}"
            if (out / f"{name}.json").is_file():
                continue
            config = preset(
                a.preset, lambda_k=a.lambda_k, seed=seed, steps=a.steps, samples=a.samples,
                lr=a.lr, lr_final=a.lr_final, hold=a.hold, init=a.init, schedule=a.schedule,
                early_steps=a.early_steps, early_samples=a.early_samples,
            )  # fmt: skip
            record = run_record(model, image, a.size, config, schedule=a.name, name=name)
            record.save(out)
            print(
                f"{name}: {record.meta['runtime_s']:.1f} s, loss {record.loss[-1]:.4f}", flush=True
            )


if __name__ == "__main__":
    main()
