"""Long CartoonX runs for the time-to-quality study, one schedule per process.

Each run snapshots its mask along the way (with wall-clock times) into a ``.pt`` record under
``benchmarks/studies/results/runs/``; ``rdex bench --mode quality --runs DIR`` scores them
afterwards with one common evaluator.

    python benchmarks/studies/quality_runs.py --name paper-s0 --preset paper --seed 0 --size 64
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from rdex.bench import run_schedule
from rdex.images import sample_image
from rdex.models import load_classifier
from rdex.rde import RDEConfig, preset


def add_schedule_args(p: argparse.ArgumentParser, *, preset: str, size: int) -> None:
    """The run's name, image and schedule (shared with ``schedule_search.py``)."""
    p.add_argument("--name", required=True)
    p.add_argument("--preset", default=preset)
    p.add_argument("--image", default="chelsea")
    p.add_argument("--size", type=int, default=size)
    p.add_argument("--lambda-k", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--lr-final", type=float, default=None)
    p.add_argument("--schedule", default=None)


def schedule_config(a: argparse.Namespace, **extra: object) -> RDEConfig:
    """The :class:`RDEConfig` of the arguments of :func:`add_schedule_args` (``extra``: more fields)."""
    return preset(
        a.preset,
        lambda_k=a.lambda_k,
        seed=a.seed,
        steps=a.steps,
        samples=a.samples,
        lr=a.lr,
        lr_final=a.lr_final,
        schedule=a.schedule,
        **extra,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_schedule_args(p, preset="paper", size=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/studies/results/runs")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    config = schedule_config(a)
    model = load_classifier()
    x = sample_image(a.image, size=a.size).unsqueeze(0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    record = run_schedule(
        model,
        x,
        config,
        save_path=out / f"{a.name}.pt",
        save_every=100,
        meta={"name": a.name, "image": a.image, "size": a.size, "pid": os.getpid()},
    )
    print(f"{a.name}: {record['runtime_s']:.1f} s, final loss {record['loss'][-1]:.4f}")


if __name__ == "__main__":
    main()
