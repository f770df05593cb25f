"""``rdex compare IMAGE...``: the Figure 5/6 grid of CartoonX, Pixel RDE and the baselines."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rdex.cli._common import add_image_args, add_model_args, add_rde_args, pick_device, rde_config
from rdex.methods import method_choices


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare CartoonX with Pixel RDE, IG, SmoothGrad, Guided Backprop and LRP (Figures 5, 6)",
        description="One row per IMAGE (a file or a bundled sample: chelsea, coffee, astronaut, "
        "rocket, sky): the input with its predicted label (green when it matches --true-label, red "
        "when it differs), then one column per method. Methods a model does not support (LRP "
        "without relevance conservation) show 'not available'. Writes NAME.png (and .pdf with "
        "--pdf) and NAME.npz with every map (rdex.figures.load_comparison reads it).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    from rdex.methods import paper_methods

    default = ",".join(paper_methods())
    p.add_argument(
        "--methods",
        default=default,
        help=f"comma-separated methods in column order, of {method_choices()} (default {default})",
    )
    add_label_args(p)
    add_output_args(p, default_name="compare-IMAGES")
    add_model_args(p)
    add_image_args(p)
    add_rde_args(p)
    p.set_defaults(func=run)


def add_label_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--true-label",
        nargs="+",
        default=None,
        metavar="L",
        help="true label per image (index or class name; '-' for unknown), or one for all: the "
        "predicted label is drawn green when it matches, red when it differs",
    )
    p.add_argument(
        "--target",
        default="pred",
        help="label to explain: 'pred' (default, the prediction), 'true' (the true label, e.g. of "
        "a misclassified image), or a label index or name",
    )


def add_output_args(p: argparse.ArgumentParser, *, default_name: str) -> None:
    p.add_argument("--out", default="rdex-out", help="output folder (default rdex-out)")
    p.add_argument(
        "--name", default=None, help=f"file-name stem of the figure (default {default_name})"
    )
    p.add_argument("--pdf", action="store_true", help="also write the figure as PDF")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def stem(prefix: str, names: Sequence[str]) -> str:
    """A file-name stem from the image names, e.g. ``compare-chelsea-coffee``."""
    from rdex.cli.explain import stem_for

    parts = [stem_for(n) for n in names[:3]]
    more = f"-and-{len(names) - 3}-more" if len(names) > 3 else ""
    return f"{prefix}-{'-'.join(parts)}{more}"


def true_labels(model: Any, values: Sequence[str] | None, count: int) -> list[int | None]:
    """True label index per image from ``--true-label`` values (one per image, or one for all)."""
    if values is None:
        return [None] * count
    if len(values) == 1:
        values = list(values) * count
    if len(values) != count:
        raise ValueError(
            f"--true-label: {len(values)} labels for {count} images (give one per image or one)"
        )
    return [None if v in ("-", "") else int(model.label_index(v)) for v in values]


def targets(model: Any, spec: str, trues: Sequence[int | None]) -> Any:
    """The ``target`` argument for ``--target pred|true|LABEL``."""
    if spec in ("pred", "predicted"):
        return None
    if spec == "true":
        if any(t is None for t in trues):
            raise ValueError("--target true needs a --true-label for every image")
        return list(trues)
    return int(model.label_index(spec))


def rde_settings(args: argparse.Namespace, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Registry settings of the RDE methods from the RDE arguments (each with its default lambda_k)."""
    from rdex.methods import METHODS

    settings: dict[str, dict[str, Any]] = {}
    for m in methods:
        if m in METHODS:
            cfg = rde_config(args, m)
            settings[m] = {"config": cfg, "obfuscation": args.obfuscation}
            print(
                f"{m}: preset {args.preset}, lambda_k={cfg.lambda_k:g}, steps={cfg.steps}, "
                f"samples={cfg.samples}, lr={cfg.lr:g} ({cfg.schedule})",
                file=sys.stderr,
            )
    return settings


def run(args: argparse.Namespace) -> int:
    from rdex.baselines import resolve_methods
    from rdex.figures import compare_methods, save_comparison
    from rdex.images import load_batch
    from rdex.models import load_classifier
    from rdex.plots import compare_figure
    from rdex.viz import save_figure

    methods = resolve_methods(args.methods)
    device = pick_device(args.device)
    names, images = load_batch(args.images, size=args.size, fit=args.fit)
    model = load_classifier(args.model, weights=args.weights).to(device)
    trues = true_labels(model, args.true_label, len(names))
    target = targets(model, args.target, trues)
    settings = rde_settings(args, methods)
    comparison = compare_methods(
        model,
        images.to(device),
        methods,
        target=target,
        names=names,
        settings=settings,
        progress=not args.quiet,
    )
    for method, note in comparison.notes.items():
        print(f"note: {method}: {note}", file=sys.stderr)
    out = Path(args.out)
    name = args.name or stem("compare", names)
    fig = compare_figure(comparison, true_labels=trues, title=f"{args.model}")
    paths = save_figure(fig, out / f"{name}.png", pdf=args.pdf)
    paths.append(save_comparison(comparison, out / f"{name}.npz"))
    labels = comparison.labels
    for i, n in enumerate(names):
        pred = int(comparison.probs[i].argmax())
        label = labels[pred] if labels else str(pred)
        verdict = (
            "" if trues[i] is None else (" (correct)" if trues[i] == pred else " (misclassified)")
        )
        print(f"{n}: predicted {label} ({float(comparison.probs[i, pred]):.1%}){verdict}")
    print(" ".join(str(p) for p in paths))
    return 0
