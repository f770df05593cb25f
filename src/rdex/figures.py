"""The paper's comparison figures: computing what they show (tensors in, tensors out, progress
bars). :mod:`rdex.plots` draws them; the CLI saves the drawing with :func:`rdex.viz.save_figure`.

* :func:`compare_methods` (drawn by :func:`rdex.plots.compare_figure`): Figures 5 and 6, per image
  CartoonX, Pixel RDE, Integrated Gradients, SmoothGrad, Guided Backprop and LRP;
  :func:`save_comparison` and :func:`load_comparison` keep it as ``.npz`` to redraw or score later.
* :func:`sweep` (:func:`rdex.plots.sweep_figure`): Figures 7, 8 and 9 (appendix A.3), per image and
  method one explanation per value of ``lambda_k``, the obfuscation or the distortion.
* :func:`compare_models` (:func:`rdex.plots.models_figure`): Figure 12, one CartoonX per classifier
  with the same hyperparameters, each under that model's own label.
* :func:`mask_from_npz`: the CartoonX mask of a saved result for Figure 4
  (:func:`rdex.plots.dwt_figure`).

A method that refuses a model (e.g. LRP without relevance conservation) gets the reason instead of
a map, which the drawing shows as a "not available" panel.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, Figures 4-9 and 12.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rdex.baselines import ATTRIBUTIONS, BaselineWarning, UnsupportedModelError, resolve_methods
from rdex.methods.registry import RegistryView, get_method, paper_methods
from rdex.rde import RDEConfig, frozen, resolve_target

__all__ = [
    "RDE_METHODS",
    "Comparison",
    "SweepResult",
    "ModelRun",
    "SweepParam",
    "compare_methods",
    "save_comparison",
    "load_comparison",
    "sweep",
    "compare_models",
    "mask_from_npz",
]

#: Methods whose registry entry returns an RDE explanation picture rather than an attribution
#: (a live view of :mod:`rdex.methods.registry`, ``kind="rde"``).
RDE_METHODS: RegistryView[Any] = RegistryView(lambda info: info.factory, kind="rde")

SweepParam = Literal["lambda-k", "obfuscation", "distortion"]

#: One cell of a map grid: a picture ``(1, H, W)``, or a string saying why there is none.
Cell = Tensor | str


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="map", disable=not enabled, leave=False)


def _probs(model: nn.Module, x: Tensor) -> Tensor:
    with frozen(model), torch.no_grad():
        return torch.softmax(model(x).float(), dim=1)


def _batch(
    model: nn.Module, x: Tensor, target: Any, names: Sequence[str] | None
) -> tuple[Tensor, Tensor, Tensor, list[str]]:
    """Images as a batch ``(B, C, H, W)``, the model's probabilities, the explained label per
    image (the prediction unless ``target`` says otherwise) and a display name per image."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    probs = _probs(model, x)
    targets = resolve_target(model, probs, target)
    names = list(names) if names is not None else [f"image {i}" for i in range(len(x))]
    return x, probs, targets, names


def _labels(model: nn.Module) -> list[str] | None:
    return list(getattr(model, "labels", []) or []) or None


def _run_method(
    name: str,
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    settings: Mapping[str, Any],
    progress: bool,
    desc: str,
    notes: dict[str, str],
) -> Cell:
    """One method on one image ``(1, C, H, W)``: its map ``(1, H, W)`` on CPU, or the reason it
    is not available. Baseline warnings are collected in ``notes``."""
    fn = ATTRIBUTIONS[name]
    kwargs = dict(settings)
    if name in RDE_METHODS:
        kwargs.update(progress=progress, desc=desc)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BaselineWarning)
        try:
            out = fn(model, x, target=target, **kwargs)
        except UnsupportedModelError as exc:
            notes.setdefault(name, str(exc))
            return exc.reason
    for w in caught:
        if issubclass(w.category, BaselineWarning):
            notes.setdefault(name, str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out[0].detach().float().cpu()


# --------------------------------------------------------------------------- Figures 5 and 6


@dataclass
class Comparison:
    """What :func:`compare_methods` computed for a batch of images.

    Attributes:
        images: The inputs ``(B, C, H, W)`` on CPU.
        names: Display name per image.
        methods: Method names, in column order.
        maps: Per method, per image, the map ``(1, H, W)`` or why it is not available.
        probs: Model output probabilities ``(B, m)``.
        targets: Explained label per image ``(B,)``.
        labels: Class names of the model.
        notes: Per method, a warning or refusal message (first one seen).
    """

    images: Tensor
    names: list[str]
    methods: list[str]
    maps: dict[str, list[Cell]]
    probs: Tensor
    targets: Tensor
    labels: list[str] | None
    notes: dict[str, str] = field(default_factory=dict)


def compare_methods(
    model: nn.Module,
    x: Tensor,
    methods: str | Sequence[str] | None = None,
    *,
    target: Any = None,
    names: Sequence[str] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
) -> Comparison:
    """Run every method on every image (one progress bar per image and method).

    Args:
        model: Classifier on images in ``[0, 1]``.
        x: Images ``(B, C, H, W)``.
        methods: Names in :data:`rdex.baselines.ATTRIBUTIONS` (or aliases), comma-separated or a
            list; default the paper's comparison (:func:`rdex.methods.paper_methods`).
        target: Label per image to explain (index, name, list, tensor); the prediction by default.
        names: Display name per image.
        settings: Per method, keyword settings for its registry entry (e.g. ``{"cartoonx":
            {"config": cfg}}``); RDE methods default to :data:`rdex.config.DEFAULT_PRESET`.
        progress: Progress bars (RDE bars show the current loss).

    Returns:
        A :class:`Comparison`.
    """
    methods = resolve_methods(paper_methods() if methods is None else methods)
    x, probs, targets, names = _batch(model, x, target, names)
    maps: dict[str, list[Cell]] = {m: [] for m in methods}
    notes: dict[str, str] = {}
    settings = settings or {}
    outer = _bar(len(x) * len(methods), "compare", progress)
    for i in range(len(x)):
        for method in methods:
            outer.set_postfix_str(f"{names[i]} · {method}")
            cell = _run_method(
                method,
                model,
                x[i : i + 1],
                targets[i : i + 1],
                settings.get(method, {}),
                progress,
                f"{method} {names[i]}",
                notes,
            )
            maps[method].append(cell)
            outer.update(1)
    outer.close()
    return Comparison(
        images=x.detach().cpu(),
        names=names,
        methods=methods,
        maps=maps,
        probs=probs.cpu(),
        targets=targets.cpu(),
        labels=_labels(model),
        notes=notes,
    )


def save_comparison(comparison: Comparison, path: str | os.PathLike[str]) -> Path:
    """Write a :class:`Comparison` as ``.npz`` (atomically), to redraw or score it later.

    Keys: ``images``, ``probs``, ``targets``, ``methods``, ``names``, ``labels``, ``notes`` (JSON),
    ``<method>_<i>`` per available map ``(1, H, W)`` and ``<method>_<i>_unavailable`` (the reason)
    per missing one.
    """
    from rdex.io import atomic_write_with

    c = comparison
    arrays: dict[str, Any] = {
        "images": c.images.numpy(),
        "probs": c.probs.numpy(),
        "targets": c.targets.numpy(),
        "methods": np.array(c.methods),
        "names": np.array(c.names),
        "labels": np.array(c.labels or []),
        "notes": np.array(json.dumps(c.notes)),
    }
    for m, cells in c.maps.items():
        for i, cell in enumerate(cells):
            if isinstance(cell, str):
                arrays[f"{m}_{i}_unavailable"] = np.array(cell)
            else:
                arrays[f"{m}_{i}"] = cell.numpy()
    return atomic_write_with(path, lambda buf: np.savez_compressed(buf, **arrays))


def load_comparison(path: str | os.PathLike[str]) -> Comparison:
    """Read a :class:`Comparison` written by :func:`save_comparison` (``rdex compare``'s .npz)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    with np.load(p, allow_pickle=False) as data:
        if "methods" not in data.files or "images" not in data.files:
            raise ValueError(f"{p} was not written by rdex compare")
        methods = [str(m) for m in data["methods"]]
        n = len(data["images"])
        maps: dict[str, list[Cell]] = {}
        for m in methods:
            maps[m] = [
                str(data[f"{m}_{i}_unavailable"])
                if f"{m}_{i}_unavailable" in data.files
                else torch.from_numpy(data[f"{m}_{i}"])
                for i in range(n)
            ]
        labels = [str(v) for v in data["labels"]] if "labels" in data.files else []
        return Comparison(
            images=torch.from_numpy(data["images"]),
            names=[str(v) for v in data["names"]],
            methods=methods,
            maps=maps,
            probs=torch.from_numpy(data["probs"]),
            targets=torch.from_numpy(data["targets"]),
            labels=labels or None,
            notes=json.loads(str(data["notes"])) if "notes" in data.files else {},
        )


# --------------------------------------------------------------------------- Figures 7, 8, 9


@dataclass
class SweepResult:
    """What :func:`sweep` computed.

    Attributes:
        images: Inputs ``(B, C, H, W)`` on CPU.
        names: Display name per image.
        param: The swept parameter.
        values: Per method, the values in column order.
        maps: Per method, per image, one picture ``(1, H, W)`` per value.
        probs: Probabilities ``(B, m)``; targets: explained labels ``(B,)``; labels: class names.
    """

    images: Tensor
    names: list[str]
    param: str
    values: dict[str, list[Any]]
    maps: dict[str, list[list[Cell]]]
    probs: Tensor
    targets: Tensor
    labels: list[str] | None


def _parse_value(param: str, value: Any) -> Any:
    if param == "lambda-k":
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"lambda-k values must be numbers, got {value!r}") from None
        if v < 0:
            raise ValueError(f"lambda-k values must be non-negative, got {v}")
        return v
    if param == "obfuscation":
        from rdex.obfuscations import make_obfuscation

        make_obfuscation(str(value))
        return str(value)
    if param == "distortion":
        from rdex.distortions import get_distortion

        get_distortion(str(value))
        return str(value)
    raise ValueError(
        f"unknown sweep parameter {param!r}; choose lambda-k, obfuscation or distortion"
    )


def sweep(
    model: nn.Module,
    x: Tensor,
    param: SweepParam,
    values: Sequence[Any] | Mapping[str, Sequence[Any]],
    *,
    methods: Sequence[str] | None = None,
    configs: Mapping[str, RDEConfig] | None = None,
    obfuscation: str = "gaussian",
    target: Any = None,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> SweepResult:
    """Explain each image once per value of one RDE hyperparameter (appendix A.3).

    Args:
        model: Classifier.
        x: Images ``(B, C, H, W)``.
        param: ``"lambda-k"`` (Figure 7), ``"obfuscation"`` (Figure 8: e.g. ``gaussian, zeros``) or
            ``"distortion"`` (Figure 9: ``label, max-label, l2, kl``).
        values: The values, or per method its own values (e.g. smaller ``lambda_k`` for Pixel RDE).
        methods: RDE methods, one row each per image (default: CartoonX and Pixel RDE for
            ``lambda-k``, CartoonX otherwise).
        configs: Per method the base configuration (default: :data:`rdex.config.DEFAULT_PRESET` with the
            method's default ``lambda_k``).
        obfuscation: Obfuscation of the runs that do not sweep it.
        target: Label per image; the prediction by default.
        names: Display name per image.
        progress: Progress bars with the current loss.

    Returns:
        A :class:`SweepResult`.
    """
    from rdex.methods import METHODS

    if param not in ("lambda-k", "obfuscation", "distortion"):
        raise ValueError(
            f"unknown sweep parameter {param!r}; choose lambda-k, obfuscation or distortion"
        )
    if methods is None:
        methods = ["cartoonx", "pixel-rde"] if param == "lambda-k" else ["cartoonx"]
    methods = resolve_methods(methods)
    for m in methods:
        if m not in RDE_METHODS:
            raise ValueError(f"sweeps are over RDE hyperparameters; {m!r} is not an RDE method")
    per_method = {
        m: [_parse_value(param, v) for v in (values[m] if isinstance(values, Mapping) else values)]
        for m in methods
    }
    for m, vals in per_method.items():
        if not vals:
            raise ValueError(f"no values to sweep for {m}")
    x, probs, targets, names = _batch(model, x, target, names)
    configs = configs or {}
    maps: dict[str, list[list[Cell]]] = {m: [[] for _ in range(len(x))] for m in methods}
    outer = _bar(len(x) * sum(len(v) for v in per_method.values()), f"sweep {param}", progress)
    for m in methods:
        cls = METHODS[m]
        base = configs.get(m) or get_method(m).config()
        for value in per_method[m]:
            cfg, obf = base, obfuscation
            if param == "lambda-k":
                cfg = base.replace(lambda_k=value)
            elif param == "distortion":
                cfg = base.replace(distortion=value)
            else:
                obf = value
            explainer = cls(model, config=cfg, obfuscation=obf)
            for i in range(len(x)):
                outer.set_postfix_str(f"{names[i]} · {m} {param}={value}")
                result = explainer.explain(
                    x[i : i + 1],
                    target=targets[i : i + 1],
                    progress=progress,
                    desc=f"{m} {names[i]} {value}",
                )
                maps[m][i].append(result.explanation[0].detach().float().cpu())
                outer.update(1)
    outer.close()
    return SweepResult(
        images=x.detach().cpu(),
        names=names,
        param=param,
        values=per_method,
        maps=maps,
        probs=probs.cpu(),
        targets=targets.cpu(),
        labels=_labels(model),
    )


# --------------------------------------------------------------------------- Figure 12


@dataclass
class ModelRun:
    """CartoonX of a batch of images for one classifier (Figure 12).

    Attributes:
        name: Display name of the model.
        maps: Per image the explanation ``(1, H, W)`` or why there is none.
        probs: Probabilities ``(B, m)``; targets: explained labels ``(B,)``; labels: class names.
        true_labels: Per image the true label index in this model's label set, or None.
    """

    name: str
    maps: list[Cell]
    probs: Tensor
    targets: Tensor
    labels: list[str] | None
    true_labels: list[int | None]


def compare_models(
    models: Mapping[str, nn.Module],
    x: Tensor,
    *,
    method: str = "cartoonx",
    settings: Mapping[str, Any] | None = None,
    true_labels: Sequence[int | str | None] | None = None,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> list[ModelRun]:
    """One explanation per classifier with the same hyperparameters (Figure 12).

    Args:
        models: Display name -> classifier (each explains its own predicted label).
        x: Images ``(B, C, H, W)``.
        method: A method of :data:`rdex.baselines.ATTRIBUTIONS` (default CartoonX).
        settings: Keyword settings of the method, the same for every model (e.g. ``config=``).
        true_labels: Per image the true label, by index or by name (looked up per model with its
            :func:`rdex.models.resolve_label`), or None.
        names: Display name per image.
        progress: Progress bars.

    Returns:
        One :class:`ModelRun` per model, in order.
    """
    from rdex.models import resolve_label

    (method,) = resolve_methods([method])
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if not models:
        raise ValueError("no models given")
    names = list(names) if names is not None else [f"image {i}" for i in range(len(x))]
    wanted = list(true_labels) if true_labels is not None else [None] * len(x)
    if len(wanted) != len(x):
        raise ValueError(f"{len(wanted)} true labels for {len(x)} images")
    runs = []
    for model_name, model in models.items():
        dev = next((p.device for p in model.parameters()), x.device)
        xm = x.to(dev)
        probs = _probs(model, xm)
        targets = probs.argmax(dim=1)
        trues = [None if t is None else resolve_label(model, t) for t in wanted]
        notes: dict[str, str] = {}
        maps = [
            _run_method(
                method,
                model,
                xm[i : i + 1],
                targets[i : i + 1],
                settings or {},
                progress,
                f"{model_name} {names[i]}",
                notes,
            )
            for i in range(len(x))
        ]
        runs.append(
            ModelRun(
                name=model_name,
                maps=maps,
                probs=probs.cpu(),
                targets=targets.cpu(),
                labels=_labels(model),
                true_labels=trues,
            )
        )
    return runs


# --------------------------------------------------------------------------- Figure 4


def mask_from_npz(path: Any) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The per-band mask (and explanation picture) saved by ``rdex explain`` (:func:`rdex.io.save_npz`).

    Returns:
        The bands ``mask_0, mask_1, ...`` with the shared channel dimension removed (approximation
        ``(h, w)``, details ``(3, h, w)``), and the explanation ``(H, W)`` if saved.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file holds no wavelet mask (e.g. a Pixel RDE result).
    """
    from rdex.io import load_result

    try:
        saved = load_result(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such mask file: {path}") from None
    p = saved.path
    if len(saved.mask) < 2:
        raise ValueError(
            f"{p} holds no wavelet mask (found {len(saved.mask)} band(s); CartoonX masks have one per scale plus one)"
        )
    bands = [m[0] if m.shape[0] == 1 else m for m in saved.mask]
    for b in bands[1:]:
        if b.ndim != 3 or b.shape[0] != 3:
            raise ValueError(
                f"{p}: band shapes {[tuple(b.shape) for b in bands]} are not a wavelet mask"
            )
    explanation = saved.explanation[0] if saved.explanation is not None else None
    return bands, explanation
