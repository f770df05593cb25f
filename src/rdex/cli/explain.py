"""``rdex explain IMAGE...``: CartoonX / Pixel RDE explanations with figures and saved masks."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from rdex.cli._common import (
    add_image_args,
    add_model_args,
    add_rde_args,
    add_seeds_arg,
    method_names,
    pick_device,
    rde_config,
)
from rdex.methods import method_choices


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="explain images with CartoonX, Pixel RDE, ShearletX or WaveletX",
        description="Explain each IMAGE (a file or a bundled sample name: chelsea, coffee, astronaut, "
        "rocket, sky). Writes per image and method: a figure, the explanation PNG, the mask and "
        "history as .npz, and a JSON record (with --seeds also a figure of the seeds).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--method",
        default="cartoonx",
        help=f"{method_choices('rde')}, or several comma-separated (default cartoonx)",
    )
    p.add_argument(
        "--target",
        default=None,
        help="label to explain: index, class name or WordNet id such as n02123045 (default: the "
        "predicted label); for a misclassification name the true label",
    )
    p.add_argument(
        "--true-label",
        default=None,
        help="true label (index or name): colours the prediction red/green",
    )
    p.add_argument("--topk", type=int, default=0, help="print the top-k predictions first")
    p.add_argument(
        "--batch-size", type=int, default=1, help="images optimised together in one loop"
    )
    p.add_argument("--out", default="rdex-out", help="output folder (default rdex-out)")
    p.add_argument("--pdf", action="store_true", help="also write figures as PDF")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_args(p)
    add_image_args(p)
    add_seeds_arg(add_rde_args(p))
    goal = p.add_argument_group("lambda_k from a target (rdex.calibrate; refuses --lambda-k)")
    goal = goal.add_mutually_exclusive_group()
    goal.add_argument("--keep-probability", type=float, default=None, metavar="P",
                      help="search lambda_k per image so the explanation keeps P of the label's "
                      "probability under the method's obfuscation (e.g. 0.9)")  # fmt: skip
    goal.add_argument("--sparsity", type=float, default=None, metavar="S",
                      help="search lambda_k per image so a share S of mask entries is > 0.5")  # fmt: skip
    p.set_defaults(func=run)


def stem_for(name: str) -> str:
    """A file-name stem for an image name or path (portable characters, bounded length)."""
    from rdex.io import safe_stem

    return safe_stem(Path(name).stem)


def output_stems(specs: Sequence[str]) -> list[str]:
    """One distinct file-name stem per image argument, the same on every run.

    Images whose stems would clash (``a/good.png`` and ``b/good.png``, or ``good.png`` and
    ``good.jpg``) get ``-`` and 8 hex digits of the SHA-256 of the argument appended, so no
    explanation overwrites another of the same run.
    """
    stems = [stem_for(s) for s in specs]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [
        f"{s}-{hashlib.sha256(spec.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
        if counts[s] > 1
        else s
        for s, spec in zip(stems, specs, strict=True)
    ]


def run(args: argparse.Namespace) -> int:
    from rdex.images import load_batch
    from rdex.io import display_name, save_result
    from rdex.methods import METHODS
    from rdex.models import load_classifier, resolve_label
    from rdex.viz import explanation_figure, save_figure, seed_figure

    methods = method_names(args.method)
    if args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    calibrating = args.keep_probability is not None or args.sparsity is not None
    if calibrating and args.lambda_k is not None:
        raise ValueError("--lambda-k fixes lambda_k, --keep-probability/--sparsity search for it")
    if calibrating:
        args.batch_size = 1  # the search is per image
    seeds = None
    if args.seeds is not None:
        from rdex.seeds import parse_seeds

        if calibrating:
            raise ValueError("--seeds runs one lambda_k; it does not combine with a search "
                             "(--keep-probability/--sparsity)")  # fmt: skip
        seeds = parse_seeds(args.seeds)
    device = pick_device(args.device)
    specs = list(dict.fromkeys(args.images))  # the same image twice is explained once
    names, images = load_batch(specs, size=args.size, fit=args.fit)
    stems = output_stems(specs)
    model = load_classifier(args.model, weights=args.weights).to(device)
    labels = model.labels
    target = (
        None if args.target in (None, "pred", "predicted") else resolve_label(model, args.target)
    )
    true_label = None if args.true_label is None else resolve_label(model, args.true_label)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.topk > 0:
        with torch.no_grad():
            probs = torch.softmax(model(images.to(device)), dim=1).cpu()
        for name, p in zip(names, probs, strict=True):
            top = p.topk(args.topk)
            print(
                f"{display_name(name)}: "
                + ", ".join(f"{labels[int(i)]} {v:.1%}" for v, i in zip(*top, strict=True))
            )

    for method in methods:
        cls = METHODS[method]
        config = rde_config(args, method)
        explainer = cls(model, config=config, obfuscation=args.obfuscation)
        if calibrating:
            from rdex.calibrate import Calibrated

            explainer = Calibrated(  # type: ignore[assignment]
                explainer, keep_probability=args.keep_probability, sparsity=args.sparsity
            )
        print(
            f"{method}: preset {args.preset}, lambda_k="
            f"{'searched from ' if calibrating else ''}{config.lambda_k:g}, steps={config.steps}, "
            f"samples={config.samples}, lr={config.lr:g} ({config.schedule}), device {device}",
            file=sys.stderr,
        )
        for lo in range(0, len(names), args.batch_size):
            batch_names = names[lo : lo + args.batch_size]
            shown = [display_name(n) for n in batch_names]
            x = images[lo : lo + args.batch_size].to(device)
            desc = f"{method} {', '.join(shown)}"
            runs = None
            if seeds is not None:
                from rdex.seeds import explain_seeds

                runs = explain_seeds(
                    explainer, x, seeds=seeds, target=target, progress=not args.quiet, desc=desc
                )
                result = runs.result
            else:
                result = explainer.explain(x, target=target, progress=not args.quiet, desc=desc)
            for i, name in enumerate(batch_names):
                stem = f"{stems[lo + i]}-{method}"
                _, record = save_result(
                    result,
                    out,
                    stem,
                    i,
                    labels=labels,
                    extra={
                        "image": display_name(name),
                        "model": args.model,
                        # With "settings", what re-creates this result exactly.
                        "options": {
                            "weights": args.weights,
                            "size": args.size,
                            "fit": args.fit,
                            "obfuscation": args.obfuscation,
                        },
                    },
                )
                fig = explanation_figure(
                    x.cpu(),
                    result.to("cpu"),
                    i,
                    labels=labels,
                    true_label=true_label,
                    title=f"{shown[i]} · {args.model}",
                )
                save_figure(fig, out / f"{stem}-figure.png", pdf=args.pdf)
                print(
                    f"{shown[i]} [{method}] explained {record['target_label']} "
                    f"(p={record['target_prob']:.3f}) in {record['runtime_s']:.1f} s, "
                    f"distortion {record['final_distortion']:.4f} -> {out / (stem + '-figure.png')}"
                )
                if runs is not None:
                    fig = seed_figure(x.cpu(), runs, i, labels=labels, title=shown[i])
                    save_figure(fig, out / f"{stem}-seeds.png", pdf=args.pdf)
                    agree = record["seeds"]
                    print(
                        f"{shown[i]} [{method}] seeds {','.join(map(str, runs.seeds))}: SSIM between "
                        f"any two {agree['ssim_min']:.3f}-"
                        f"{max(p['ssim'] for p in agree['ssim_pairs']):.3f}, spread -> "
                        f"{out / (stem + '-seeds.png')}"
                    )
                for note in record["warnings"]:
                    print(f"warning: {shown[i]} [{method}]: {note}", file=sys.stderr)
    return 0
