"""``rdex models``: the models rdex knows and whether their weights are present offline."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list models and whether their weights are available offline",
        description="List the default model and common torchvision/timm models, whether their "
        "weights are present, and where they are (or where to put them; rdex never downloads). "
        "Any torchvision classification model (torchvision:NAME), timm model (timm:NAME), "
        "TorchScript file or package.module:factory also works with --model.",
    )
    p.add_argument(
        "--check-baselines",
        action="store_true",
        help="run IG, SmoothGrad, Guided Backprop and LRP on each listed model and print which "
        "apply (random weights where the trained ones are missing)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rdex.models import available_models

    infos = available_models()
    if args.check_baselines:
        from rdex.baselines import check_architectures, format_check_table

        print(format_check_table(check_architectures([m.name for m in infos])))
        return 0
    rows = [("MODEL", "WEIGHTS", "SOURCE", "WHERE")]
    rows += [(m.name, "yes" if m.weights_present else "missing", m.source, m.where) for m in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in range(3)) + "  " + r[3])
    if any(not m.weights_present for m in infos):
        print(
            "\nMissing weights: put the file at the path shown (torchvision: the torch hub "
            "checkpoints folder; timm: the Hugging Face hub cache), or pass --weights FILE."
        )
    return 0
