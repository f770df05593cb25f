"""Figures (matplotlib): the only module that draws.

Conventions: images are shown as in the paper (CartoonX in greyscale, Pixel RDE masks with the
viridis colour map, where a mask of ones is entirely yellow as in Figure 7); figures are written
atomically as PNG (and PDF on request) without a display.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

    from rdex.rde import RDEResult
    from rdex.seeds import SeedExplanation

__all__ = [
    "to_numpy",
    "show_image",
    "label_name",
    "explanation_figure",
    "seed_figure",
    "save_figure",
    "label_color",
    "heatmap",
    "show_heatmap",
    "show_unavailable",
]

#: Colour of a label that matches / differs from the given true label (Figures 5 and 13-16).
CORRECT_COLOR = "tab:green"
WRONG_COLOR = "tab:red"


def _pyplot():
    import matplotlib

    backend = matplotlib.get_backend().lower()
    # A backend given as "module://..." was chosen on purpose (a Jupyter kernel's inline
    # backend, ipympl): keep it, or notebooks would show no figures.
    if (
        os.environ.get("MPLBACKEND") is None
        and backend not in ("agg", "pdf")
        and not backend.startswith("module://")
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_numpy(image: Tensor) -> np.ndarray:
    """``(C, H, W)``/``(1, H, W)``/``(H, W)`` tensor to an ``(H, W, 3)`` or ``(H, W)`` array."""
    arr = image.detach().float().cpu().numpy()
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    return np.clip(arr, 0.0, 1.0)


def label_color(predicted: int, true_label: int | None) -> str:
    """Green when the prediction matches a given true label, red when it differs, black otherwise."""
    if true_label is None:
        return "black"
    return CORRECT_COLOR if predicted == true_label else WRONG_COLOR


def show_image(
    ax: Axes,
    image: Tensor,
    *,
    cmap: str = "gray",
    title: str | None = None,
    color: str = "black",
    vmax: float = 1.0,
) -> AxesImage:
    """Draw one picture without axes; single-channel pictures use ``cmap`` on ``[0, vmax]``.

    Returns the drawn image (for a colour bar)."""
    arr = to_numpy(image)
    drawn = ax.imshow(arr, cmap=cmap, vmin=0.0, vmax=vmax) if arr.ndim == 2 else ax.imshow(arr)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9, color=color)
    return drawn


def label_name(labels: Sequence[str] | None, i: int) -> str:
    """Class ``i``'s name, or ``"class i"`` without (or beyond) the names."""
    return labels[i] if labels is not None and 0 <= i < len(labels) else f"class {i}"


#: Colour map of baseline heatmaps (attribution magnitude, dark = none, bright = most).
HEATMAP_CMAP = "inferno"

#: Percentile at which heatmaps saturate (the top 1% of values are clipped to 1).
HEATMAP_PERCENTILE = 99.0


def heatmap(attr: Tensor, *, percentile: float = HEATMAP_PERCENTILE) -> Tensor:
    """Attribution maps as practitioners draw them: magnitude, per image in ``[0, 1]``.

    For each image: the signed attribution is summed over channels (a no-op for ``(B, 1, H, W)``
    per-pixel maps), its absolute value taken, divided by its ``percentile``-th percentile (so the
    brightest ``100 - percentile`` % of pixels saturate instead of one outlier darkening the rest)
    and clipped to ``[0, 1]``. An all-zero map stays zero. Pure tensor code, no drawing.

    Args:
        attr: Attributions ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``.
        percentile: Percentile mapped to 1 (default 99).

    Returns:
        ``(B, 1, H, W)`` (or ``(1, H, W)`` / ``(H, W)`` for unbatched input) in ``[0, 1]``.
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    squeeze = attr.dim()
    a = attr.detach().float()
    if a.dim() == 2:
        a = a[None, None]
    elif a.dim() == 3:
        a = a[None]
    mag = a.sum(dim=1, keepdim=True).abs()
    flat = mag.flatten(1)
    scale = torch.quantile(flat, percentile / 100.0, dim=1)
    scale = torch.where(scale > 0, scale, flat.amax(dim=1)).clamp_min(1e-30)
    out = (mag / scale.view(-1, 1, 1, 1)).clamp(0.0, 1.0)
    if squeeze == 2:
        return out[0, 0]
    if squeeze == 3:
        return out[0]
    return out


def show_heatmap(
    ax: Axes, attr: Tensor, *, title: str | None = None, cmap: str = HEATMAP_CMAP
) -> None:
    """Draw one attribution map ``(C, H, W)`` or ``(H, W)`` as a :func:`heatmap`."""
    show_image(ax, heatmap(attr), cmap=cmap, title=title)


def show_unavailable(
    ax: Axes, reason: str = "", *, title: str | None = None, shape: tuple[int, int] | None = None
) -> None:
    """An empty panel reading "not available" (and a short reason) instead of a wrong map.

    Args:
        ax: The axes.
        reason: Why (wrapped; cut after 120 characters).
        title: Panel title.
        shape: ``(H, W)`` of the neighbouring pictures, so the panel has their size and aspect.
    """
    import textwrap

    if shape is not None:
        ax.imshow(np.full(shape, 0.94), cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.set_facecolor("#f0f0f0")
    ax.set_xticks([])
    ax.set_yticks([])
    text = "not available"
    if reason:
        short = reason if len(reason) <= 120 else reason[:117] + "..."
        text += "\n\n" + textwrap.fill(short, 24)
    ax.text(
        0.5, 0.5, text, ha="center", va="center", fontsize=7, transform=ax.transAxes, color="0.3"
    )
    if title:
        ax.set_title(title, fontsize=9)


def explanation_cmap(method: str) -> str:
    """Colour map of a method's explanation picture."""
    from rdex.methods.registry import method_cmap

    return method_cmap(method)


def explanation_figure(
    x: Tensor,
    result: RDEResult,
    index: int = 0,
    *,
    labels: Sequence[str] | None = None,
    true_label: int | None = None,
    title: str | None = None,
) -> Figure:
    """Input with its predicted label, the explanation, its colour version and the loss history.

    Args:
        x: The explained images ``(B, C, H, W)``.
        result: Result of an RDE method for ``x``.
        index: Which image of the batch.
        labels: Class names.
        true_label: If given, the predicted label is drawn green (match) or red (mismatch).
        title: Figure title.
    """
    plt = _pyplot()
    r = result[index]
    probs = r.probs[0]
    pred = int(probs.argmax())
    target = int(r.target[0])

    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.2]})
    show_image(
        axes[0],
        x[index],
        title=f"{label_name(labels, pred)} ({probs[pred]:.1%})",
        color=label_color(pred, true_label),
    )
    from rdex.methods.registry import method_title

    what = method_title(r.method)
    show_image(
        axes[1],
        r.explanation[0],
        cmap=explanation_cmap(r.method),
        title=f"{what}: {label_name(labels, target)}" + ("" if target == pred else " (target)"),
    )
    show_image(axes[2], r.explanation_rgb[0], title="mask on colour image")
    hist = r.history
    if r.config.steps:
        steps = np.arange(1, r.config.steps + 1)
        ax = axes[3]
        ax.plot(steps, hist["loss"][:, 0].numpy(), label="loss")
        ax.plot(steps, hist["distortion"][:, 0].numpy(), label="distortion")
        ax.plot(steps, r.config.lambda_k * hist["l1"][:, 0].numpy(), label="λk · mean(s)")
        ax.set_yscale("log")
        # The first steps start from an unmasked image (distortion ~0): keep the scale readable.
        ax.set_ylim(bottom=1e-5)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.set_title(
            f"λk={r.config.lambda_k:g}, L={r.config.samples}, {r.runtime_s:.0f} s", fontsize=9
        )
    else:
        axes[3].axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    notes = r.warnings[0] if r.warnings else []
    if notes:
        # An empty or unsupported explanation says so on the figure itself, not only in a log.
        import textwrap

        text = "\n".join(textwrap.fill(f"warning: {n}", 150) for n in notes)
        lines = text.count("\n") + 1
        height = fig.get_figheight()
        extra = 0.16 * lines + 0.1
        fig.set_figheight(height + extra)
        fig.subplots_adjust(bottom=(extra + 0.05 * height) / (height + extra))
        fig.text(0.01, 0.01, text, fontsize=7, color=WRONG_COLOR, va="bottom", ha="left")
    return fig


#: Seeds drawn one by one in :func:`seed_figure` (the spread and the SSIM cover all of them).
SEED_PANELS = 4


def seed_figure(
    x: Tensor,
    runs: SeedExplanation,
    index: int = 0,
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """An explanation over several seeds: the input, the combined explanation, where the seeds'
    pictures differ (per-pixel spread) and the first seeds' own pictures.

    Args:
        x: The explained images ``(B, C, H, W)``.
        runs: :func:`rdex.seeds.explain_seeds` for ``x``.
        index: Which image of the batch.
        labels: Class names.
        title: Figure title (the seeds' SSIM is added).
    """
    from rdex.methods.registry import method_title

    plt = _pyplot()
    r = runs.result[index]
    summary = runs.summary(index)
    target = int(r.target[0])
    shown = list(zip(runs.seeds, runs.runs, strict=True))[:SEED_PANELS]
    fig, axes = plt.subplots(1, 3 + len(shown), figsize=(2.7 * (3 + len(shown)), 3.3))
    cmap = explanation_cmap(r.method)
    show_image(
        axes[0],
        x[index],
        title=f"input: {label_name(labels, target)} ({float(r.probs[0, target]):.1%})",
    )
    show_image(
        axes[1], r.explanation[0], cmap=cmap,
        title=f"{method_title(r.method)}, {runs.combine} of {len(runs.seeds)} seeds",
    )  # fmt: skip
    # Fixed scale: the standard deviation of pictures in [0, 1] is at most 0.5; 0.25 is already
    # a detail that half the seeds show at full strength and half not at all.
    im = show_image(axes[2], runs.spread[index, 0], cmap=HEATMAP_CMAP, vmax=0.25,
                    title="spread across seeds (std)")  # fmt: skip
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
    for ax, (seed, run) in zip(axes[3:], shown, strict=True):
        show_image(ax, run.explanation[index], cmap=cmap, title=f"seed {seed}")
    head = (
        f"seeds {', '.join(map(str, runs.seeds))}: SSIM between any two "
        f"{summary['ssim_min']:.3f}-{max(p['ssim'] for p in summary['ssim_pairs']):.3f}"
    )
    fig.suptitle(f"{title} · {head}" if title else head, fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(
    fig: Figure, path: str | os.PathLike[str], *, pdf: bool = False, dpi: int = 110
) -> list[Path]:
    """Write ``fig`` as PNG (and PDF beside it when ``pdf``) atomically, then close it."""
    from rdex.io import atomic_write_with

    plt = _pyplot()
    path = Path(path)
    written = [atomic_write_with(path, lambda buf: fig.savefig(buf, format="png", dpi=dpi))]
    if pdf:
        pdf_path = path.with_suffix(".pdf")
        written.append(atomic_write_with(pdf_path, lambda buf: fig.savefig(buf, format="pdf")))
    plt.close(fig)
    return written
