"""Long CartoonX runs for the time-to-quality study, one schedule per process.

Each run snapshots its mask along the way (with wall-clock times) into a ``.pt`` record under
``benchmarks/studies/results/runs/`` (partial saves every 100 steps: a long run leaves a curve
behind); ``rdex bench --mode quality --runs DIR`` scores them afterwards with one common evaluator.
A finished run is also kept as a run record (``NAME.npz`` with eight snapshots of the mask,
``NAME.json`` with the settings; :class:`rdex.bench.repeat.RunRecord`), the small, safe format that
is committed and that ``rdex bench --mode repeat --records DIR`` scores new schedules against.

    python benchmarks/studies/quality_runs.py --name paper-s0 --preset paper --seed 0 --size 64
    python benchmarks/studies/quality_runs.py --convert DIR/paper-s0.pt --out DIR  # older .pt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from rdex.bench import run_schedule
from rdex.bench.repeat import RunRecord
from rdex.images import sample_image
from rdex.models import load_classifier
from rdex.rde import RDEConfig, preset


def add_schedule_args(p: argparse.ArgumentParser, *, preset: str, size: int) -> None:
    """The run's name, image and schedule (shared with ``schedule_search.py``)."""
    p.add_argument("--name", default=None, help="the run's name (required for a run)")
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
    p.add_argument("--convert", default=None, help="turn this finished .pt run into a run record")
    p.add_argument("--out", default="benchmarks/studies/results/runs")
    a = p.parse_args()
    if a.convert:
        convert(Path(a.convert), Path(a.out))
        return
    if not a.name:
        p.error("--name is required for a run")
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
    keep_record(record, out, name=a.name, schedule=a.preset, image=a.image, size=a.size)
    print(f"{a.name}: {record['runtime_s']:.1f} s, final loss {record['loss'][-1]:.4f}")


def keep_record(
    record: dict, out: Path, *, name: str, schedule: str, image: str, size: int
) -> None:
    """Save a finished run as a :class:`RunRecord` (``.npz`` + ``.json``) in ``out``."""
    if not record.get("finished"):
        raise ValueError(f"{name}: the run did not finish; only finished runs become records")
    RunRecord.from_run(record, name=name, schedule=schedule, image=image, size=size).save(out)


def convert(path: Path, out: Path) -> None:
    """A ``.pt`` record of an earlier run (loaded with ``weights_only=True``) as a run record."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    schedule = "paper" if record["config"]["steps"] == 2000 else path.stem.split("-")[0]
    keep_record(record, out, name=record["name"], schedule=schedule, image=record["image"],
                size=int(record["size"]))  # fmt: skip
    print(f"{path} -> {out / (record['name'] + '.npz')}")


if __name__ == "__main__":
    main()
