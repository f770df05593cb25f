"""``rdex models-compare IMAGE... --models a,b,c``: Figure 12, CartoonX per classifier."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rdex.cli._common import add_image_args, add_rde_args, pick_device, rde_config
from rdex.cli.compare import add_output_args, stem


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models-compare",
        help="one CartoonX per classifier with the same hyperparameters (Figure 12)",
        description="Explain each IMAGE with CartoonX (or --method) for several classifiers, with "
        "the same hyperparameters; each panel carries that model's predicted label, green when it "
        "matches --true-label, red when it differs.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated models (see `rdex models`; default: every listed model whose weights "
        "are present)",
    )
    p.add_argument(
        "--method", default="cartoonx", help="method to run per model (default cartoonx)"
    )
    p.add_argument(
        "--true-label",
        nargs="+",
        default=None,
        metavar="L",
        help="true label per image (index or class name, looked up per model; '-' for unknown), or one for all",
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when available)"
    )
    add_output_args(p, default_name="models-IMAGES")
    add_image_args(p)
    add_rde_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rdex.baselines import resolve_methods
    from rdex.figures import compare_models
    from rdex.images import load_batch
    from rdex.methods import METHODS
    from rdex.models import available_models, load_classifier
    from rdex.plots import models_figure
    from rdex.viz import save_figure

    if args.models:
        model_names = [m.strip() for m in args.models.split(",") if m.strip()]
    else:
        model_names = [m.name for m in available_models() if m.weights_present]
    if not model_names:
        raise ValueError("no models: pass --models a,b,c (see `rdex models`)")
    (method,) = resolve_methods([args.method])
    device = pick_device(args.device)
    names, images = load_batch(args.images, size=args.size, fit=args.fit)
    models = {n: load_classifier(n).to(device) for n in model_names}
    settings = {}
    if method in METHODS:
        cfg = rde_config(args, method)
        settings = {"config": cfg, "obfuscation": args.obfuscation}
        print(
            f"{method}: preset {args.preset}, lambda_k={cfg.lambda_k:g}, steps={cfg.steps}, "
            f"samples={cfg.samples} for {', '.join(model_names)}",
            file=sys.stderr,
        )
    wanted = args.true_label
    if wanted is not None:
        if len(wanted) == 1:
            wanted = wanted * len(names)
        if len(wanted) != len(names):
            raise ValueError(f"--true-label: {len(wanted)} labels for {len(names)} images")
        wanted = [None if w in ("-", "") else w for w in wanted]
    runs = compare_models(
        models,
        images.to(device),
        method=method,
        settings=settings,
        true_labels=wanted,
        names=names,
        progress=not args.quiet,
    )
    fig = models_figure(images, runs, method=method, names=names, title=f"{method} per classifier")
    name = args.name or stem("models", names)
    paths = save_figure(fig, Path(args.out) / f"{name}.png", pdf=args.pdf)
    for run_ in runs:
        for i, n in enumerate(names):
            pred = int(run_.probs[i].argmax())
            label = run_.labels[pred] if run_.labels else str(pred)
            print(f"{run_.name} {n}: predicted {label} ({float(run_.probs[i, pred]):.1%})")
    print(" ".join(str(p) for p in paths))
    return 0
