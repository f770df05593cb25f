"""Figures of the metrics and experiments (matplotlib, drawn with :mod:`rdex.viz`'s helpers).

Figures are kept small (low dpi, few panels) so that the generated report stays light.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from rdex.metrics import Evaluation

__all__ = ["image_grid", "curves_figure", "bars_figure", "method_label", "save_figure"]

#: Panels of :func:`curves_figure`: curve name, y label, which direction is better.
CURVES = (
    ("rate-distortion", "expected distortion", "lower is better"),
    ("deletion", "target probability", "lower is better"),
    ("insertion", "target probability", "higher is better"),
)


def save_figure(fig: Any, path: str | Path, *, dpi: int = 90) -> Path:
    """Write ``fig`` as a palette PNG (256 adaptive colours) atomically and close it.

    Explanations of noisy images compress badly as true-colour PNG; the palette keeps figures of
    the report small (a few hundred KB at most) with no visible loss at this size.
    """
    import io

    from PIL import Image

    from rdex.io import atomic_write_with
    from rdex.viz import _pyplot

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _pyplot().close(fig)
    buf.seek(0)
    image = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    return atomic_write_with(path, lambda out: image.save(out, format="PNG", optimize=True))


def method_label(name: str) -> str:
    try:
        from rdex.baselines import method_label as label

        return label(name)
    except ImportError:  # pragma: no cover - baselines ship with rdex
        return name


def image_grid(
    rows: Sequence[Sequence[tuple[Tensor, str, str]]],
    path: str | Path,
    *,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell: float = 1.7,
    dpi: int = 80,
) -> Path:
    """A grid of pictures, each given as ``(image (C, H, W) or (1, H, W), colour map, title)``."""
    from rdex.viz import _pyplot, show_image

    plt = _pyplot()
    nrows = len(rows)
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(cell * ncols + (0.5 if row_labels else 0), (cell + 0.3) * nrows + 0.4),
        squeeze=False,
    )
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(row):
                ax.axis("off")
                continue
            image, cmap, text = row[j]
            show_image(ax, image, cmap=cmap, title=text)
            ax.title.set_fontsize(7)
        if row_labels:
            axes[i][0].set_ylabel(row_labels[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=dpi)
    return Path(path)


def curves_figure(
    evaluations: Mapping[str, Evaluation],
    path: str | Path,
    *,
    index: int | None = None,
    title: str | None = None,
    dpi: int = 90,
) -> Path:
    """Rate-distortion, deletion and insertion curves of several methods (mean over the batch, or
    input ``index``), areas in the legend."""
    from rdex.viz import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (name, ylabel, better) in zip(axes, CURVES, strict=True):
        for method, ev in evaluations.items():
            curve = ev.curves.get(name)
            if curve is None:
                continue
            values = curve.values if index is None else curve.values[index : index + 1]
            area = curve.area if index is None else curve.area[index : index + 1]
            ax.plot(
                curve.fractions.numpy(),
                values.mean(dim=0).numpy(),
                marker=".",
                label=f"{method_label(method)} ({float(area.mean()):.3f})",
            )
        xlabel = (
            "fraction of entries kept"
            if name == "rate-distortion"
            else f"fraction of pixels {name[:-3]}ed"
        )
        ax.set_xlabel(
            xlabel.replace("deletioned", "deleted").replace("insertioned", "inserted"), fontsize=8
        )
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(f"{name} ({better}; area)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=dpi)
    return Path(path)


def bars_figure(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    path: str | Path,
    *,
    group: str = "method",
    title: str | None = None,
    dpi: int = 90,
) -> Path:
    """One bar chart per metric: the mean of each ``group`` (e.g. method) over the rows."""
    from rdex.viz import _pyplot

    plt = _pyplot()
    groups = list(dict.fromkeys(str(r[group]) for r in rows))
    cols = min(4, len(metrics))
    nrows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.1 * cols, 2.4 * nrows), squeeze=False)
    for k, metric in enumerate(metrics):
        ax = axes[k // cols][k % cols]
        means = []
        for g in groups:
            vals = [
                float(r[metric]) for r in rows if str(r[group]) == g and r.get(metric) is not None
            ]
            vals = [v for v in vals if np.isfinite(v)]
            means.append(float(np.mean(vals)) if vals else np.nan)
        ax.bar(range(len(groups)), means, color=[f"C{i}" for i in range(len(groups))])
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([method_label(g) for g in groups], rotation=35, ha="right", fontsize=6)
        ax.set_title(metric, fontsize=8)
        ax.tick_params(axis="y", labelsize=6)
    for k in range(len(metrics), nrows * cols):
        axes[k // cols][k % cols].axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=dpi)
    return Path(path)
