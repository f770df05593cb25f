"""``rdex experiment NAME``: the paper's claims as experiments, and ``experiments/REPORT.md``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from rdex.cli._common import add_model_args, pick_device

NAMES = ("artifacts", "sensitivity", "smoothness", "runtime", "multiscale")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="reproduce the paper's claims as numbers (artifacts, sensitivity, smoothness, runtime, multiscale, report)",
        description="Run experiments that test the paper's claims and write tables (CSV), figures and "
        "a summary per experiment under --out. NAME: artifacts (A.4, Fig. 10), sensitivity (A.3), "
        "smoothness (CartoonX vs Pixel RDE, plus all metrics for all methods), runtime, multiscale "
        "(ShearletX and WaveletX vs CartoonX and Pixel RDE: hallucination and CP scores, at most "
        "96 px); 'all' runs "
        "every experiment and writes REPORT.md; 'report' writes REPORT.md, running only the "
        "experiments that have no saved summary yet.",
    )
    p.add_argument("names", nargs="+", metavar="NAME", choices=(*NAMES, "all", "report"))
    p.add_argument("--out", default="experiments", help="output folder (default experiments)")
    p.add_argument(
        "--size", type=int, default=128, help="image side in pixels (default 128; the paper: 256)"
    )
    p.add_argument(
        "--preset",
        default="fast",
        help="RDE schedule: fast (default, the committed experiments/REPORT.md), preview (a first "
        "look), or paper (A.2: 2000 steps, L=64)",
    )
    p.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    p.add_argument(
        "--samples", type=int, default=None, help="override the preset's noise samples L"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--images",
        default="chelsea,coffee,astronaut,rocket",
        help="comma-separated sample names or image files for the sample-set experiments "
        "(the first is used by sensitivity and runtime)",
    )
    p.add_argument(
        "--eval-samples", type=int, default=8, help="obfuscation draws per rate-distortion point"
    )
    p.add_argument("--eval-steps", type=int, default=24, help="deletion/insertion steps")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice); 1 is much faster on a machine shared "
        "with other jobs, where extra threads only wait for each other",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rdex.experiments import Context, Settings, run_all, run_experiment, write_report
    from rdex.models import load_classifier
    from rdex.rde import PRESETS

    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    images = tuple(i.strip() for i in args.images.split(",") if i.strip())
    if not images:
        raise ValueError("--images: give at least one image")
    if args.size < 16:
        raise ValueError("--size must be at least 16")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    settings = Settings(
        model=args.model,
        size=args.size,
        preset=args.preset,
        steps=args.steps,
        samples=args.samples,
        seed=args.seed,
        images=images,
        device=str(device),
        eval_samples=args.eval_samples,
        eval_steps=args.eval_steps,
    )
    # Check images before the model loads and anything runs.
    from rdex.images import resolve_image

    for name in images:
        resolve_image(name, size=16)
    model = load_classifier(args.model, weights=args.weights)
    ctx = Context(settings, args.out, model=model, progress=not args.quiet)
    names = list(dict.fromkeys(args.names))
    command = (
        "rdex experiment " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["experiment"]
        else None
    )
    start = time.perf_counter()
    if "all" in names or "report" in names:
        results = run_all(ctx, reuse="all" not in names)
        for r in results:
            _print(r)
        path = write_report(args.out, command=command)
        print(f"report -> {path} ({time.perf_counter() - start:.0f} s)")
        return 0
    for name in names:
        _print(run_experiment(name, ctx))
    return 0


def _print(result) -> None:  # type: ignore[no-untyped-def]
    verdicts = {True: "held", False: "did not hold", None: "undecided"}
    print(f"{result.name} ({result.seconds:.0f} s):")
    for c in result.claims:
        print(f"  [{verdicts[c.held]}] {c.text}")
