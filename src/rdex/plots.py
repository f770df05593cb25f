"""Drawing the paper's comparison figures computed by :mod:`rdex.figures` (and Figure 4 from an
image and a saved mask). Every function returns a matplotlib ``Figure``; the CLI saves it with
:func:`rdex.viz.save_figure`.

* :func:`compare_figure`: Figures 5 and 6, one row per image: the input with its predicted label
  (green when it matches a given true label, red when it differs), then one column per method.
* :func:`sweep_figure`: Figures 7, 8 and 9, per image and method a row, one column per value.
* :func:`models_figure`: Figure 12, per image a row, one column per classifier.
* :func:`dwt_figure`: Figure 4, the DWT coefficients of an image as nested L-shaped sub-images per
  scale (:func:`dwt_mosaic`), and optionally a CartoonX mask in the same coefficient layout.

RDE pictures are drawn as in the paper (CartoonX in greyscale, Pixel RDE masks with viridis);
baseline attributions as :func:`rdex.viz.heatmap` (magnitude, clipped at the 99th percentile). A
method that refused a model gets a "not available" panel.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, Figures 4-9 and 12.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from rdex.baselines import method_label
from rdex.figures import RDE_METHODS, Cell, Comparison, ModelRun, SweepResult
from rdex.viz import (
    HEATMAP_CMAP,
    _pyplot,
    explanation_cmap,
    heatmap,
    label_color,
    label_name,
    show_image,
    show_unavailable,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "compare_figure",
    "sweep_figure",
    "models_figure",
    "dwt_mosaic",
    "dwt_figure",
    "grid_axes",
]


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
    title = f"{label_name(labels, pred)} ({float(probs[pred]):.0%})"
    if target != pred:
        title += f"\nexplaining: {label_name(labels, target)}"
    return title


# --------------------------------------------------------------------------- Figures 5 and 6


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
        comparison: From :func:`rdex.figures.compare_methods`.
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


# --------------------------------------------------------------------------- Figures 7, 8, 9


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
            label = f"{run.name}\n{label_name(run.labels, pred)} ({float(run.probs[i, pred]):.0%})"
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
        mask: A CartoonX mask per band (see :func:`rdex.figures.mask_from_npz`) for this image and DWT.
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
        show_image(axes[-1], exp, title=method_label("cartoonx"))
    _finish(fig, title)
    return fig
