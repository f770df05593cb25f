"""``rdex classify IMAGE...``: the model's top-k labels for each image."""

from __future__ import annotations

import argparse

import torch

from rdex.cli._common import add_image_args, add_model_args, pick_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="print the top-k predicted labels of images",
        description="Classify each IMAGE (a file, or a bundled sample: chelsea, coffee, astronaut, "
        "rocket, sky) and print the top-k labels with their probabilities.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=int, default=5, help="labels to print per image (default 5)")
    add_model_args(p)
    add_image_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rdex.images import resolve_image
    from rdex.models import load_classifier

    if args.topk < 1:
        raise ValueError(f"--topk must be at least 1, got {args.topk}")
    device = pick_device(args.device)
    # Read every image before loading the model, so a bad file fails fast.
    loaded = [resolve_image(spec, size=args.size, fit=args.fit) for spec in args.images]
    model = load_classifier(args.model, weights=args.weights).to(device)
    for name, x in loaded:
        with torch.no_grad():
            logits = model(x.unsqueeze(0).to(device))
        probs = torch.softmax(logits.float(), dim=1)[0].cpu()
        k = min(args.topk, probs.numel())
        values, indices = probs.topk(k)
        print(f"{name} ({model.name}):")
        for rank, (v, i) in enumerate(zip(values.tolist(), indices.tolist(), strict=True), 1):
            print(f"  {rank:>2}. {i:>4}  {model.label_name(i):<30} {100 * v:6.2f}%")
    return 0
