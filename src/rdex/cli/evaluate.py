"""``rdex evaluate OUTPUT_DIR|IMAGE...``: metrics of explanations, as a CSV table and a figure.

Given an output folder of ``rdex explain`` (``<stem>.npz`` + ``<stem>.json``) or of ``rdex batch``
(``manifest.jsonl``), it reloads every saved mask with its input and scores it; given images (files
or sample names) it explains them first with the chosen methods, baselines included, and scores
those. Writes ``metrics.csv`` (one row per image and method), ``metrics-curves.png`` (mean
rate-distortion, deletion and insertion curves per method) and ``metrics.png`` (bar charts).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch

from rdex.cli._common import add_image_args, add_model_args, add_rde_args, pick_device, rde_config
from rdex.methods import method_choices

#: Metrics shown in the bar chart.
FIGURE_METRICS = (
    "rd_auc", "deletion_auc", "insertion_auc", "cp_pixel_l1", "cp_coeff_l1", "cp_entropy",
    "hallucination", "tv", "wavelet_gini",
)  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score explanations: rate-distortion, deletion/insertion, sparsity, smoothness, CP, hallucination",
        description="Score explanations with the metrics of rdex.metrics. INPUT is an output folder "
        "of `rdex explain` or `rdex batch` (saved masks are reloaded with their inputs), or images "
        "(files or sample names) that are explained first with --method. Writes metrics.csv, "
        "metrics-curves.png and metrics.png to --out.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument(
        "--method",
        default="cartoonx,pixel-rde",
        help=f"for images: comma-separated methods of {method_choices()}",
    )
    p.add_argument(
        "--target", default=None, help="for images: label to explain (default: the prediction)"
    )
    p.add_argument(
        "--out", default=None, help="output folder (default: the input folder, or rdex-eval)"
    )
    p.add_argument(
        "--eval-samples", type=int, default=16, help="obfuscation draws per rate-distortion point"
    )
    p.add_argument("--eval-steps", type=int, default=32, help="deletion/insertion steps")
    p.add_argument(
        "--deletion-baseline",
        default="zeros",
        help="zeros (default), mean, blur[:SIGMA] or a number",
    )
    p.add_argument(
        "--insertion-baseline",
        default="blur",
        help="blur[:SIGMA] (default), zeros, mean or a number",
    )
    p.add_argument("--no-curves", action="store_true", help="only the cheap scores (no curves)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_args(p)
    add_image_args(p)
    add_rde_args(p)
    # The model of a saved run is read from its records unless given.
    p.set_defaults(func=run, model=None)


_WAVELET_RE = re.compile(r"Wavelet\('([\w.]+)', levels=(\d+), mode='(\w+)'\)")


def representation_from_repr(text: str | None, method: str | None = None) -> Any:
    """The representation a saved record names (its ``repr``), e.g. ``Wavelet('db3', levels=5, mode='zero')``."""
    from rdex.representations import Fourier, Pixel, Wavelet

    if text:
        m = _WAVELET_RE.fullmatch(text.strip())
        if m:
            return Wavelet(m.group(1), levels=int(m.group(2)), mode=m.group(3))
        if text.strip() == "Pixel()":
            return Pixel()
        if text.strip() == "Fourier()":
            return Fourier()
    if method == "cartoonx":
        return Wavelet()
    if method == "pixel-rde":
        return Pixel()
    raise ValueError(f"cannot rebuild the representation {text!r} of a saved result")


def obfuscation_from_repr(text: str | None) -> str:
    """The obfuscation name a saved record's ``repr`` stands for (``gaussian`` if unknown)."""
    if not text:
        return "gaussian"
    t = text.strip()
    simple = {"GaussianAdaptive()": "gaussian", "UniformAdaptive()": "uniform", "Zeros()": "zeros"}
    if t in simple:
        return simple[t]
    m = re.fullmatch(r"Constant\(([-\d.e+]+)\)", t)
    if m:
        return f"constant:{m.group(1)}"
    m = re.fullmatch(r"Blur\(sigma=([-\d.e+]+)\)", t)
    if m:
        return f"blur:{m.group(1)}"
    return "gaussian"


def _saved_units(folder: Path, fit: str) -> list[dict[str, Any]]:
    """Saved explanations of a folder: dicts with name, method, model, x (3, H, W), npz, record."""
    from rdex.images import load_image, resolve_image
    from rdex.io import load_result

    units = []
    manifest = folder / "manifest.jsonl"
    if manifest.exists():
        from rdex.batch import read_manifest

        for rec in read_manifest(folder):
            if rec.get("status") != "ok":
                continue
            files = rec.get("files") or {}
            if "npz" not in files or "input" not in files:
                continue
            x = load_image(folder / files["input"]["path"], size=None)
            units.append(
                {"name": rec.get("name"), "method": rec.get("method"), "model": rec.get("model"),
                 "x": x, "npz": folder / files["npz"]["path"], "record": rec}
            )  # fmt: skip
        return units
    for json_path in sorted(folder.glob("*.json")):
        npz_path = json_path.with_suffix(".npz")
        if not npz_path.exists():
            continue
        try:
            rec = json.loads(json_path.read_text())
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or "method" not in rec:
            continue
        saved = load_result(npz_path)
        if saved.explanation is None:
            raise ValueError(f"{npz_path} holds no explanation picture")
        height = int(saved.explanation.shape[-1])
        image = rec.get("image")
        if image is None:
            raise ValueError(f"{json_path}: the record names no image; evaluate the images instead")
        try:
            _, x = resolve_image(str(image), size=height, fit=fit)  # type: ignore[arg-type]
        except FileNotFoundError:
            near = folder / str(image)
            if not near.exists():
                raise FileNotFoundError(
                    f"{json_path}: cannot find its image {image!r} (run from the folder you explained "
                    "in, or evaluate the images directly)"
                ) from None
            x = load_image(near, size=height, fit=fit)  # type: ignore[arg-type]
        units.append(
            {"name": str(image), "method": rec["method"], "model": rec.get("model"), "x": x,
             "npz": npz_path, "record": rec}
        )  # fmt: skip
    if not units:
        raise FileNotFoundError(
            f"{folder}: no saved explanations (.npz + .json, or manifest.jsonl)"
        )
    return units


def _explanation_from_npz(unit: dict[str, Any], x: torch.Tensor) -> Any:
    from rdex.io import load_result
    from rdex.metrics import Explanation

    rec = unit["record"]
    saved = load_result(unit["npz"])
    target = torch.tensor([saved.target]) if saved.target is not None else None
    if saved.mask:
        if saved.explanation is None:
            raise ValueError(f"{saved.path} holds a mask but no explanation picture")
        masks = [torch.from_numpy(m).float().unsqueeze(0) for m in saved.mask]
        picture = torch.from_numpy(saved.explanation).float().unsqueeze(0)
        rep = representation_from_repr(rec.get("representation"), unit["method"])
        settings = rec.get("settings") or {}
        config = settings.get("config", settings) if isinstance(settings, dict) else {}
        distortion = config.get("distortion", "label") if isinstance(config, dict) else "label"
        return Explanation.from_mask(
            unit["method"], x, masks, rep, obfuscation=obfuscation_from_repr(rec.get("obfuscation")),
            target=target, picture=picture, distortion=distortion,
        )  # fmt: skip
    array = saved.attribution if saved.attribution is not None else saved.explanation
    if array is None:
        raise ValueError(f"{saved.path} holds no mask, attribution or explanation picture")
    attr = torch.from_numpy(array).float()
    attr = attr.view(1, -1, *attr.shape[-2:])
    return Explanation.from_attribution(unit["method"], x, attr, target=target)


def run(args: argparse.Namespace) -> int:
    from rdex import metrics as M
    from rdex.experiments._core import on_device, write_csv
    from rdex.experiments.figures import bars_figure, curves_figure
    from rdex.models import DEFAULT_MODEL, load_classifier

    device = pick_device(args.device)
    folders = [Path(i) for i in args.inputs if Path(i).is_dir()]
    if folders and len(folders) != len(args.inputs):
        raise ValueError("give either output folders or images, not both")
    out = Path(args.out) if args.out else (folders[0] if len(folders) == 1 else Path("rdex-eval"))
    kwargs = {
        "samples": args.eval_samples,
        "steps": args.eval_steps,
        "deletion_baseline": _baseline(args.deletion_baseline),
        "insertion_baseline": _baseline(args.insertion_baseline),
        "curves": not args.no_curves,
        "seed": args.seed,
    }
    evaluations: dict[str, list[M.Evaluation]] = {}
    rows: list[dict[str, Any]] = []
    models: dict[str, Any] = {}

    def model_for(name: str) -> Any:
        if name not in models:
            models[name] = load_classifier(name, weights=args.weights).to(device).eval()
        return models[name]

    if folders:
        for folder in folders:
            for unit in _saved_units(folder, args.fit):
                model = model_for(args.model or unit.get("model") or DEFAULT_MODEL)
                x = unit["x"].unsqueeze(0)
                ex = _explanation_from_npz(unit, x)
                ev = M.evaluate(model, x.to(device), on_device(ex, device), **kwargs)
                evaluations.setdefault(unit["method"], []).append(ev)
                rows.extend(r | {"source": str(unit["npz"])} for r in ev.rows([unit["name"]]))
                print(f"{unit['name']} [{unit['method']}]: " + _summary(rows[-1]), file=sys.stderr)
    else:
        rows.extend(
            _evaluate_images(
                args, model_for(args.model or DEFAULT_MODEL), device, kwargs, evaluations
            )
        )
    csv_path = write_csv(out / "metrics.csv", rows)
    merged = {m: _merge(evs) for m, evs in evaluations.items()}
    if not args.no_curves:
        curves_figure(merged, out / "metrics-curves.png", title="mean curves")
    bars_figure(
        rows,
        [m for m in FIGURE_METRICS if m in rows[0]],
        out / "metrics.png",
        title="metrics (mean over images)",
    )
    print(f"{len(rows)} evaluations -> {csv_path}")
    return 0


def _baseline(value: str) -> str | float:
    try:
        return float(value)
    except ValueError:
        return value


def _summary(row: dict[str, Any]) -> str:
    keys = ("rd_auc", "deletion_auc", "insertion_auc", "cp_entropy", "hallucination")
    return ", ".join(f"{k} {row[k]:.4g}" for k in keys if k in row)


def _merge(evs: list[Any]) -> Any:
    """One Evaluation from several single-batch ones of the same method."""
    from rdex.metrics import Curve, Evaluation

    if len(evs) == 1:
        return evs[0]
    scores = {k: torch.cat([e.scores[k] for e in evs]) for k in evs[0].scores}
    curves = {
        k: Curve(c.fractions, torch.cat([e.curves[k].values for e in evs]), c.name)
        for k, c in evs[0].curves.items()
    }
    return Evaluation(evs[0].method, scores, curves)


def _evaluate_images(
    args: argparse.Namespace,
    model: Any,
    device: torch.device,
    kwargs: dict[str, Any],
    evaluations: dict,
) -> list[dict[str, Any]]:
    from rdex import metrics as M
    from rdex.baselines import ATTRIBUTIONS, resolve_methods
    from rdex.experiments._core import on_device
    from rdex.images import load_batch
    from rdex.methods import METHODS

    methods = resolve_methods(args.method)
    names, images = load_batch(args.inputs, size=args.size, fit=args.fit)
    x = images.to(device)
    target = None if args.target in (None, "pred", "predicted") else model.label_index(args.target)
    rows = []
    for method in methods:
        if method in METHODS:
            cls: Any = METHODS[method]
            config = rde_config(args, method)
            explainer = cls(
                model, config=config, obfuscation=args.obfuscation, distortion=config.distortion
            )
            result = explainer.explain(x, target=target, progress=not args.quiet, desc=method)
            ex = M.Explanation.from_rde(explainer, x, result)
        else:
            attr = ATTRIBUTIONS[method](model, x, target=target)
            with torch.no_grad():
                t = (
                    torch.softmax(model(x), 1).argmax(1)
                    if target is None
                    else torch.full((len(names),), target)
                )
            ex = M.Explanation.from_attribution(method, x, attr, target=t.to(device))
        ev = M.evaluate(model, x, on_device(ex, device), **kwargs)
        evaluations.setdefault(method, []).append(ev)
        for row in ev.rows(names):
            rows.append(row)
            print(f"{row['image']} [{method}]: " + _summary(row), file=sys.stderr)
    return rows
