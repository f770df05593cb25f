"""``rdex batch INPUT --out DIR``: explain a folder, a list or an ImageFolder tree, resumably."""

from __future__ import annotations

import argparse
import sys

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
        "batch",
        help="explain a folder of images, resumably, locally or on Ray",
        description="Explain every image of INPUT: a folder (searched recursively), a text file "
        "with one path per line (optionally a tab and the true label), or an ImageFolder tree "
        "whose class folders give the true labels (class names or indices). Writes per image and "
        "method the explanation PNG, the mask and history (.npz) and one line of OUT/manifest.jsonl; "
        "rerunning the same command skips what is done and redoes what is missing or broken. "
        "Exit code 0 when every image was explained, 1 when some failed (see the manifest), "
        "2 for usage errors.",
    )
    p.add_argument("input", metavar="INPUT", help="folder, list file, or image")
    p.add_argument("--out", required=True, help="output folder (rerun into it to resume)")
    p.add_argument(
        "--method",
        default="cartoonx",
        help=f"{method_choices('rde')}, or several comma-separated (default cartoonx)",
    )
    p.add_argument(
        "--target",
        default="pred",
        help="label to explain: pred (the prediction, default), true (the true label where known), "
        "or one class index or name for every image",
    )
    p.add_argument(
        "--labels",
        choices=("auto", "folders", "none"),
        default="auto",
        help="true labels from class folders: auto (when all images lie in two or more class "
        "folders directly below INPUT), folders (always), none",
    )
    p.add_argument(
        "--only-misclassified",
        action="store_true",
        help="explain only images whose prediction differs from their true label",
    )
    p.add_argument("--retry-errors", action="store_true", help="redo images recorded as failed")
    p.add_argument(
        "--metrics",
        action="store_true",
        help="add metric values (sparsity, smoothness, CP, hallucination) to each manifest line",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=4,
        help="images optimised together in one loop (default 4)",
    )
    p.add_argument(
        "--no-report", action="store_true", help="do not write OUT/index.html at the end"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    ray = p.add_argument_group("Ray (needs the 'dist' extra)")
    ray.add_argument(
        "--ray",
        action="store_true",
        help="run on a local Ray runtime (workers use CUDA when --gpus-per-task > 0; --device is ignored)",
    )
    ray.add_argument(
        "--ray-address",
        default=None,
        help="join a running Ray cluster (e.g. auto, ray://HOST:10001)",
    )
    ray.add_argument(
        "--ray-cpus", type=int, default=None, help="CPUs of the local runtime (default all)"
    )
    ray.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs per worker (default 1)")
    ray.add_argument(
        "--gpus-per-task",
        type=float,
        default=0.0,
        help="GPUs per worker, fractions share a GPU (default 0)",
    )
    ray.add_argument(
        "--images-per-task", type=int, default=4, help="images sent to a worker at once (default 4)"
    )
    ray.add_argument(
        "--workers",
        type=int,
        default=None,
        help="number of workers (default: as the resources allow)",
    )
    add_model_args(p)
    add_image_args(p)
    add_seeds_arg(add_rde_args(p))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rdex.batch import RayOptions, run_batch

    methods = method_names(args.method)
    if not methods:
        raise ValueError("--method names no method")
    configs = {m: rde_config(args, m) for m in methods}
    use_ray = args.ray or args.ray_address is not None
    ray_options = None
    device = None
    if use_ray:
        ray_options = RayOptions(
            address=args.ray_address,
            num_cpus=args.ray_cpus,
            cpus_per_task=args.cpus_per_task,
            gpus_per_task=args.gpus_per_task,
            images_per_task=args.images_per_task,
            workers=args.workers,
        )
    else:
        device = pick_device(args.device)
    summary = run_batch(
        args.input,
        args.out,
        model=args.model,
        weights=args.weights,
        methods=methods,
        configs=configs,
        obfuscation=args.obfuscation,
        size=args.size,
        fit=args.fit,
        target=args.target,
        labels=args.labels,
        only_misclassified=args.only_misclassified,
        retry_errors=args.retry_errors,
        batch_size=args.batch_size,
        device=device,
        ray=ray_options,
        progress=not args.quiet,
        metrics=args.metrics,
        seeds=args.seeds,
    )
    print(f"rdex batch: {summary}", file=sys.stderr)
    if args.seeds is not None:
        _print_seed_agreement(args.out, args.seeds)
    if not args.no_report:
        from rdex.report import write_report

        path = write_report(
            args.out, log=lambda m: print(f"rdex report: warning: {m}", file=sys.stderr)
        )
        print(
            f"report: {path} (open it in a browser, or run `rdex report {args.out}`)",
            file=sys.stderr,
        )
    if not summary.ok:
        print(
            f"rdex batch: some images failed; see the 'error' field in {args.out}/manifest.jsonl",
            file=sys.stderr,
        )
    return summary.exit_code


def _print_seed_agreement(out: str, seeds: str) -> None:
    """One line on how far the seeds agree over the folder's explanations with these seeds."""
    import statistics

    from rdex.batch import latest_records, read_manifest
    from rdex.io import display_name
    from rdex.report import seed_agreements
    from rdex.seeds import parse_seeds

    chosen = list(parse_seeds(seeds))
    scored = [
        (value, r)
        for value, r in seed_agreements(latest_records(read_manifest(out)))
        if (r.get("settings") or {}).get("seeds") == chosen
    ]
    if not scored:
        return
    values = [v for v, _ in scored]
    low, worst = min(scored, key=lambda item: item[0])
    print(
        f"rdex batch: seeds {','.join(map(str, chosen))} agree at SSIM {low:.2f} to "
        f"{max(values):.2f} (median {statistics.median(values):.2f}, lowest SSIM between two "
        f"seeds per explanation); least: {display_name(str(worst.get('name')))} "
        f"[{worst.get('method')}]",
        file=sys.stderr,
    )
