"""``rdex sweep IMAGE... --param lambda-k|obfuscation|distortion``: Figures 7, 8 and 9."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rdex.cli._common import (
    add_image_args,
    add_model_args,
    add_rde_args,
    finite_float_value,
    pick_device,
    rde_config,
)
from rdex.cli.compare import add_label_args, add_output_args, stem, targets, true_labels

#: Default values per swept parameter (Figure 7: lambda_k; Figure 8: obfuscations; Figure 9:
#: distortions). Pixel RDE's lambda_k row defaults to a fifth of CartoonX's (the ratio of their
#: defaults, 4 / 20), as the paper uses smaller sparsity levels for it (appendix A.2).
DEFAULT_VALUES = {
    "lambda-k": "0,10,20,40,80",
    "obfuscation": "gaussian,zeros",
    "distortion": "label,max-label,l2,kl",
}
DEFAULT_PIXEL_VALUES = "0,2,4,8,16"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="explanations for a range of lambda_k, obfuscations or distortions (Figures 7-9)",
        description="Explain each IMAGE once per value of one RDE hyperparameter: lambda-k "
        "(Figure 7: a CartoonX and a Pixel RDE row), obfuscation (Figure 8: gaussian vs zeros) or "
        "distortion (Figure 9: label, max-label, l2, kl). Other settings come from the RDE options.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--param", required=True, choices=sorted(DEFAULT_VALUES), help="parameter to sweep"
    )
    p.add_argument(
        "--values",
        default=None,
        help="comma-separated values (defaults: lambda-k "
        f"{DEFAULT_VALUES['lambda-k']}; obfuscation {DEFAULT_VALUES['obfuscation']}; distortion "
        f"{DEFAULT_VALUES['distortion']})",
    )
    p.add_argument(
        "--pixel-values",
        default=None,
        help=f"lambda-k values of the Pixel RDE row (default {DEFAULT_PIXEL_VALUES} when --values is "
        "not given, else the same as --values)",
    )
    p.add_argument(
        "--methods",
        default=None,
        help="RDE methods, one row each (default cartoonx,pixel-rde for lambda-k, cartoonx otherwise)",
    )
    add_label_args(p)
    add_output_args(p, default_name="sweep-PARAM-IMAGES")
    add_model_args(p)
    add_image_args(p)
    add_rde_args(p)
    p.set_defaults(func=run)


def _split(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ValueError(f"no values in {value!r}")
    return items


def run(args: argparse.Namespace) -> int:
    from rdex.baselines import resolve_methods
    from rdex.figures import sweep
    from rdex.images import load_batch
    from rdex.methods import METHODS
    from rdex.models import load_classifier
    from rdex.plots import sweep_figure
    from rdex.viz import save_figure

    param = args.param
    default_methods = "cartoonx,pixel-rde" if param == "lambda-k" else "cartoonx"
    methods = resolve_methods(args.methods or default_methods)
    values = _split(args.values or DEFAULT_VALUES[param])
    if param == "lambda-k":
        for v in [*values, *_split(args.pixel_values or DEFAULT_PIXEL_VALUES)]:
            finite_float_value(v, "--values")
    per_method = {m: values for m in methods}
    if (
        param == "lambda-k"
        and "pixel-rde" in methods
        and (args.pixel_values or args.values is None)
    ):
        per_method["pixel-rde"] = _split(args.pixel_values or DEFAULT_PIXEL_VALUES)
    device = pick_device(args.device)
    names, images = load_batch(args.images, size=args.size, fit=args.fit)
    model = load_classifier(args.model, weights=args.weights).to(device)
    trues = true_labels(model, args.true_label, len(names))
    target = targets(model, args.target, trues)
    configs = {}
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"sweeps are over RDE hyperparameters; {m!r} is not an RDE method")
        configs[m] = rde_config(args, m)
        print(f"{m}: {param} = {', '.join(per_method[m])}; preset {args.preset}", file=sys.stderr)
    result = sweep(
        model,
        images.to(device),
        param,
        per_method,
        methods=methods,
        configs=configs,
        obfuscation=args.obfuscation,
        target=target,
        names=names,
        progress=not args.quiet,
    )
    fig = sweep_figure(result, true_labels=trues, title=f"{args.model} · sweep {param}")
    name = args.name or stem(f"sweep-{param}", names)
    paths = save_figure(fig, Path(args.out) / f"{name}.png", pdf=args.pdf)
    print(" ".join(str(p) for p in paths))
    return 0
