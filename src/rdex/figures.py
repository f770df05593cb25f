"""The paper's comparison figures: computing what they show, and drawing them.

Each figure has a compute step (tensors in, tensors out, progress bars) and a drawing step that
returns a matplotlib ``Figure`` (the CLI saves it with :func:`rdex.viz.save_figure`):

* :func:`compare_methods` + :func:`compare_figure`: Figures 5 and 6, one row per image: the input
  with its predicted label (green when it matches a given true label, red when it differs), then
  CartoonX, Pixel RDE, Integrated Gradients, SmoothGrad, Guided Backprop and LRP.
* :func:`sweep` + :func:`sweep_figure`: Figures 7, 8 and 9 (appendix A.3), one row per image and
  method, one column per value of ``lambda_k``, the obfuscation or the distortion.
* :func:`compare_models` + :func:`models_figure`: Figure 12, one CartoonX per classifier with the
  same hyperparameters, each under that model's own label.
* :func:`dwt_figure`: Figure 4, the DWT coefficients of an image as nested L-shaped sub-images per
  scale, and optionally a CartoonX mask in the same coefficient layout.

RDE pictures are drawn as in the paper (CartoonX in greyscale, Pixel RDE masks with viridis);
baseline attributions as :func:`rdex.viz.heatmap` (magnitude, clipped at the 99th percentile). A
method that refuses a model (e.g. LRP without relevance conservation) gets a "not available" panel.

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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rdex.baselines import (
    ATTRIBUTIONS,
    BaselineWarning,
    UnsupportedModelError,
    method_label,
    resolve_methods,
)
from rdex.rde import RDEConfig, preset, resolve_target
from rdex.viz import (
    HEATMAP_CMAP,
    _pyplot,
    explanation_cmap,
    heatmap,
    label_color,
    show_image,
    show_unavailable,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "RDE_METHODS",
    "Comparison",
    "SweepResult",
    "ModelRun",
    "SweepParam",
    "compare_methods",
    "compare_figure",
    "save_comparison",
    "load_comparison",
    "sweep",
    "sweep_figure",
    "compare_models",
    "models_figure",
    "dwt_mosaic",
    "dwt_figure",
    "mask_from_npz",
    "grid_axes",
    "default_lambda_k",
]

#: Methods whose registry entry returns an RDE explanation picture rather than an attribution.
RDE_METHODS = ("cartoonx", "pixel-rde")

SweepParam = Literal["lambda-k", "obfuscation", "distortion"]

#: One cell of a map grid: a picture ``(1, H, W)``, or a string saying why there is none.
Cell = Tensor | str


def default_lambda_k(method: str) -> float:
    """The default sparsity ``lambda_k`` of an RDE method (CartoonX 20, Pixel RDE 4)."""
    from rdex.methods import METHODS

    value = getattr(METHODS[method], "default_lambda_k", None)
    if value is None:
        raise ValueError(f"{method!r} is not an RDE method")
    return float(value)


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="map", disable=not enabled, leave=False)


def _label_name(labels: Sequence[str] | None, i: int) -> str:
    return labels[i] if labels is not None and 0 <= i < len(labels) else f"class {i}"


def _probs(model: nn.Module, x: Tensor) -> Tensor:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return torch.softmax(model(x).float(), dim=1)
    finally:
        for m, mode in modes:
            m.training = mode


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


# --------------------------------------------------------------------------- drawing helpers


def grid_axes(
    rows: int, cols: int, *, cell: float = 2.1, title_space: float = 0.45
) -> tuple[Figure, np.ndarray]:
    """A figure with a ``rows x cols`` grid of image axes (always a 2-D array of axes)."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        rows, cols, figsize=(cell * cols, (cell + title_space) * rows), squeeze=False
    )
    return fig, axes


def _finish(fig: Figure, title: str | None) -> None:
    """Tight layout, leaving room for the figure title above the panel titles."""
    if title:
        fig.suptitle(title, fontsize=10)
        fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.3 / fig.get_figheight()))
    else:
        fig.tight_layout()


def _draw_cell(
    ax: Any,
    method: str,
    cell: Cell,
    *,
    title: str | None = None,
    shape: tuple[int, int] | None = None,
) -> None:
    if isinstance(cell, str):
        show_unavailable(ax, cell, title=title, shape=shape)
    elif method in RDE_METHODS:
        show_image(ax, cell, cmap=explanation_cmap(method), title=title)
    else:
        show_image(ax, heatmap(cell), cmap=HEATMAP_CMAP, title=title)


def _input_title(probs: Tensor, target: int, labels: Sequence[str] | None) -> str:
    pred = int(probs.argmax())
    title = f"{_label_name(labels, pred)} ({float(probs[pred]):.0%})"
    if target != pred:
        title += f"\nexplaining: {_label_name(labels, target)}"
    return title


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
    methods: str | Sequence[str] = tuple(ATTRIBUTIONS),
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
            list; default all six.
        target: Label per image to explain (index, name, list, tensor); the prediction by default.
        names: Display name per image.
        settings: Per method, keyword settings for its registry entry (e.g. ``{"cartoonx":
            {"config": cfg}}``); RDE methods default to the ``"fast"`` preset.
        progress: Progress bars (RDE bars show the current loss).

    Returns:
        A :class:`Comparison`.
    """
    methods = resolve_methods(methods)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    probs = _probs(model, x)
    targets = resolve_target(model, probs, target)
    names = list(names) if names is not None else [f"image {i}" for i in range(len(x))]
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
        labels=list(getattr(model, "labels", []) or []) or None,
        notes=notes,
    )


def compare_figure(
    comparison: Comparison,
    *,
    true_labels: Sequence[int | None] | None = None,
    title: str | None = None,
) -> Figure:
    """Figures 5/6: one row per image; the input, then one column per method.

    The input's title is the predicted label and probability, green when it equals the image's
    true label, red when it differs, black when none is given (:func:`rdex.viz.label_color`).

    Args:
        comparison: From :func:`compare_methods`.
        true_labels: True label index per image (``None`` entries for unknown).
        title: Figure title.

    Returns:
        A figure with ``B x (1 + len(methods))`` axes.
    """
    c = comparison
    n = len(c.images)
    true_labels = list(true_labels) if true_labels is not None else [None] * n
    if len(true_labels) != n:
        raise ValueError(f"{len(true_labels)} true labels for {n} images")
    fig, axes = grid_axes(n, 1 + len(c.methods))
    for i in range(n):
        pred = int(c.probs[i].argmax())
        show_image(
            axes[i, 0],
            c.images[i],
            title=_input_title(c.probs[i], int(c.targets[i]), c.labels),
            color=label_color(pred, true_labels[i]),
        )
        axes[i, 0].set_ylabel(c.names[i], fontsize=8)
        for j, method in enumerate(c.methods, start=1):
            _draw_cell(
                axes[i, j],
                method,
                c.maps[method][i],
                title=method_label(method) if i == 0 else None,
                shape=(int(c.images.shape[-2]), int(c.images.shape[-1])),
            )
    _finish(fig, title)
    return fig


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
        configs: Per method the base configuration (default: the ``"fast"`` preset with the
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
    if x.dim() == 3:
        x = x.unsqueeze(0)
    probs = _probs(model, x)
    targets = resolve_target(model, probs, target)
    names = list(names) if names is not None else [f"image {i}" for i in range(len(x))]
    configs = configs or {}
    maps: dict[str, list[list[Cell]]] = {m: [[] for _ in range(len(x))] for m in methods}
    outer = _bar(len(x) * sum(len(v) for v in per_method.values()), f"sweep {param}", progress)
    for m in methods:
        cls = METHODS[m]
        base = configs.get(m) or preset("fast", lambda_k=default_lambda_k(m))
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
        labels=list(getattr(model, "labels", []) or []) or None,
    )


def _value_title(param: str, value: Any) -> str:
    if param == "lambda-k":
        return f"λk = {value:g}"
    return str(value)


def sweep_figure(
    result: SweepResult,
    *,
    true_labels: Sequence[int | None] | None = None,
    title: str | None = None,
) -> Figure:
    """Figures 7-9: per image and method a row: the input, then one column per value.

    Returns:
        A figure with ``(B * len(methods)) x (1 + max values)`` axes.
    """
    r = result
    methods = list(r.values)
    n = len(r.images)
    true_labels = list(true_labels) if true_labels is not None else [None] * n
    cols = 1 + max(len(v) for v in r.values.values())
    fig, axes = grid_axes(n * len(methods), cols)
    for i in range(n):
        pred = int(r.probs[i].argmax())
        for k, m in enumerate(methods):
            row = i * len(methods) + k
            if k == 0:
                show_image(
                    axes[row, 0],
                    r.images[i],
                    title=_input_title(r.probs[i], int(r.targets[i]), r.labels),
                    color=label_color(pred, true_labels[i]),
                )
            else:
                axes[row, 0].axis("off")
            axes[row, 0].set_ylabel(r.names[i], fontsize=8)
            for j in range(1, cols):
                ax = axes[row, j]
                if j - 1 >= len(r.values[m]):
                    ax.axis("off")
                    continue
                _draw_cell(
                    ax,
                    m,
                    r.maps[m][i][j - 1],
                    title=f"{method_label(m)}\n{_value_title(r.param, r.values[m][j - 1])}",
                )
    _finish(fig, title)
    return fig


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
                labels=list(getattr(model, "labels", []) or []) or None,
                true_labels=trues,
            )
        )
    return runs


def models_figure(
    x: Tensor,
    runs: Sequence[ModelRun],
    *,
    method: str = "cartoonx",
    names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Figure 12: per image a row: the input, then per model its explanation under the model's
    predicted label (green: matches the true label, red: differs, black: no true label).

    Returns:
        A figure with ``B x (1 + len(runs))`` axes.
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    n = len(x)
    fig, axes = grid_axes(n, 1 + len(runs), title_space=0.6)
    for i in range(n):
        show_image(axes[i, 0], x[i].cpu(), title=names[i] if names else None)
        for j, run in enumerate(runs, start=1):
            pred = int(run.probs[i].argmax())
            label = f"{run.name}\n{_label_name(run.labels, pred)} ({float(run.probs[i, pred]):.0%})"
            cell = run.maps[i]
            ax = axes[i, j]
            _draw_cell(ax, method, cell, shape=(int(x.shape[-2]), int(x.shape[-1])))
            ax.set_title(label, fontsize=8, color=label_color(pred, run.true_labels[i]))
    _finish(fig, title)
    return fig


# --------------------------------------------------------------------------- Figure 4


def _pywt_coeffs(bands: Sequence[np.ndarray]) -> list[Any]:
    """rdex band layout (approx ``(h, w)``, details ``(3, h, w)``) to pywt's wavedec2 list."""
    return [bands[0], *[(b[0], b[1], b[2]) for b in bands[1:]]]


def dwt_mosaic(
    bands: Sequence[np.ndarray], *, normalise: bool = True
) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """Arrange one image's wavelet bands as nested L-shapes (pywt's ``coeffs_to_array``).

    The approximation sits in the top-left corner; each scale's horizontal, vertical and diagonal
    details form an L around the coarser scales, the finest scale the outermost L (Figure 4).

    Args:
        bands: Approximation ``(h, w)``, then per scale coarse to fine the details ``(3, h, w)``
            (H, V, D), as :class:`rdex.representations.Wavelet` orders them (batch and channel
            dimensions removed).
        normalise: Show magnitudes: the absolute value of each sub-band divided by its 99th
            percentile and clipped to ``[0, 1]`` (the raw values otherwise).

    Returns:
        The mosaic ``(H', W')`` (NaN where sub-bands of odd sizes leave gaps) and the slices of
        every sub-band in it.
    """
    import pywt

    shown = []
    for b in bands:
        b = np.asarray(b, dtype=np.float64)
        if normalise:
            planes = b[None] if b.ndim == 2 else b
            out = []
            for p in planes:
                mag = np.abs(p)
                scale = np.percentile(mag, 99) if mag.size else 0.0
                scale = scale if scale > 0 else (mag.max() if mag.size and mag.max() > 0 else 1.0)
                out.append(np.clip(mag / scale, 0.0, 1.0))
            b = out[0] if b.ndim == 2 else np.stack(out)
        shown.append(b)
    arr, slices = pywt.coeffs_to_array(_pywt_coeffs(shown), padding=np.nan)
    flat: list[tuple[slice, slice]] = [slices[0]]
    for level in slices[1:]:
        flat.extend(level[k] for k in ("da", "ad", "dd"))
    return arr, flat


def mask_from_npz(path: Any) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The per-band mask (and explanation picture) saved by ``rdex explain`` (:func:`rdex.io.save_npz`).

    Returns:
        The bands ``mask_0, mask_1, ...`` with the shared channel dimension removed (approximation
        ``(h, w)``, details ``(3, h, w)``), and the explanation ``(H, W)`` if saved.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file holds no wavelet mask (e.g. a Pixel RDE result).
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such mask file: {p}")
    try:
        data = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{p} is not an .npz file saved by rdex explain: {exc}") from None
    keys = sorted(
        (k for k in data.files if k.startswith("mask_") and k[5:].isdigit()),
        key=lambda k: int(k[5:]),
    )
    if len(keys) < 2:
        raise ValueError(
            f"{p} holds no wavelet mask (found {len(keys)} band(s); CartoonX masks have one per scale plus one)"
        )
    bands = []
    for k in keys:
        m = data[k]
        bands.append(m[0] if m.shape[0] == 1 else m)
    for b in bands[1:]:
        if b.ndim != 3 or b.shape[0] != 3:
            raise ValueError(
                f"{p}: band shapes {[tuple(b.shape) for b in bands]} are not a wavelet mask"
            )
    explanation = data["explanation"][0] if "explanation" in data.files else None
    return bands, explanation


def dwt_figure(
    image: Tensor,
    *,
    wavelet: str = "db3",
    levels: int = 5,
    mode: str = "zero",
    mask: Sequence[np.ndarray] | None = None,
    explanation: np.ndarray | Tensor | None = None,
    title: str | None = None,
) -> Figure:
    """Figure 4: an image and its DWT coefficients (magnitudes, greyscale image); with ``mask``
    also the mask in coefficient space, the masked coefficients and the explanation picture.

    Args:
        image: One image ``(C, H, W)`` in ``[0, 1]``.
        wavelet, levels, mode: The DWT (defaults: CartoonX's db3, 5 scales, zero padding).
        mask: A CartoonX mask per band (see :func:`mask_from_npz`) for this image and DWT.
        explanation: The CartoonX picture ``(H, W)`` to show beside it.
        title: Figure title.

    Returns:
        A figure with one row: 2 axes, or 5 with a mask (4 without ``explanation``).

    Raises:
        ValueError: When the mask's bands do not match the image's DWT.
    """
    from rdex.representations import Wavelet

    if image.dim() == 4:
        image = image[0]
    grey = image.mean(dim=0, keepdim=True)[None].float()
    bands = [
        b[0, 0].detach().cpu().numpy()
        for b in Wavelet(wavelet, levels=levels, mode=mode).encode(grey)
    ]
    coeff_img, slices = dwt_mosaic(bands)
    panels: list[tuple[str, np.ndarray, str]] = [
        ("DWT coefficients (magnitude)", coeff_img, "gray")
    ]
    if mask is not None:
        mask = [np.asarray(m, dtype=np.float64) for m in mask]
        want = [tuple(b.shape) for b in bands]
        got = [tuple(m.shape) for m in mask]
        if want != got:
            raise ValueError(
                f"the mask does not fit this image's DWT ({wavelet}, {levels} scales, {mode}, "
                f"{tuple(image.shape[-2:])}): mask bands {got}, DWT bands {want}; use the image, "
                "--size and wavelet settings of the explanation"
            )
        mask_img, _ = dwt_mosaic(mask, normalise=False)
        masked, _ = dwt_mosaic([b * m for b, m in zip(bands, mask, strict=True)])
        panels.append(("mask in coefficient space", mask_img, "viridis"))
        panels.append(("masked coefficients", masked, "gray"))
    ncols = 1 + len(panels) + (1 if explanation is not None else 0)
    widths = [1.0] + [1.0] * (ncols - 1)
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, ncols, figsize=(3.2 * ncols, 3.6), squeeze=False, gridspec_kw={"width_ratios": widths}
    )
    axes = axes[0]
    show_image(axes[0], image.cpu(), title="image")
    from matplotlib.patches import Rectangle

    for ax, (name, arr, cmap) in zip(axes[1:], panels, strict=False):
        cm = plt.get_cmap(cmap).with_extremes(bad="white")
        ax.imshow(np.ma.masked_invalid(arr), cmap=cm, vmin=0.0, vmax=1.0, interpolation="nearest")
        for rs, cs in slices:
            r0, r1, _ = rs.indices(arr.shape[0])
            c0, c1, _ = cs.indices(arr.shape[1])
            ax.add_patch(
                Rectangle(
                    (c0 - 0.5, r0 - 0.5),
                    c1 - c0,
                    r1 - r0,
                    fill=False,
                    edgecolor="tab:orange",
                    linewidth=0.6,
                )
            )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=9)
    if explanation is not None:
        exp = torch.as_tensor(np.asarray(explanation, dtype=np.float32))
        show_image(axes[-1], exp, title="CartoonX")
    _finish(fig, title)
    return fig
