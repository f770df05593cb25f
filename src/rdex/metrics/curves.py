"""Faithfulness curves over ranked entries: the curve type, its area, the ranking, and the pixel
deletion and insertion curves of RISE.

Curves are sampled at fractions ``0 .. 1`` of the ranked entries and their area is the trapezoid
rule over ``[0, 1]``. The rate-distortion curve, over the coefficients of any representation, is in
:mod:`rdex.metrics.rate_distortion`.

References:
    Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC
    2018.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rdex.metrics._model import _outputs, _target_index
from rdex.types import ModelOutput

#: Default fractions of kept / deleted entries at which curves are sampled.
DEFAULT_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


@dataclass
class Curve:
    """A metric curve for a batch.

    Attributes:
        fractions: Fractions of ranked entries kept, deleted or inserted, ``(n,)`` in ``[0, 1]``.
        values: Curve values per input, ``(B, n)``.
        name: ``"rate-distortion"``, ``"deletion"`` or ``"insertion"``.
    """

    fractions: Tensor
    values: Tensor
    name: str

    @property
    def area(self) -> Tensor:
        """Area under the curve per input, ``(B,)`` (trapezoid rule over ``[0, 1]``)."""
        return area_under_curve(self.fractions, self.values)

    def __getitem__(self, i: int) -> Curve:
        return Curve(self.fractions, self.values[i : i + 1], self.name)


def area_under_curve(fractions: Tensor, values: Tensor) -> Tensor:
    """Trapezoid-rule area of ``values`` ``(B, n)`` over ``fractions`` ``(n,)``, per input ``(B,)``.

    The area is divided by the span of ``fractions``, so a constant curve ``c`` has area ``c``.
    """
    fractions = fractions.to(values)
    if fractions.numel() < 2:
        raise ValueError("a curve needs at least two points")
    span = float(fractions[-1] - fractions[0])
    if span <= 0:
        raise ValueError("fractions must increase")
    return torch.trapezoid(values, fractions, dim=-1) / span


def _check_fractions(fractions: Sequence[float] | Tensor | None) -> Tensor:
    f = torch.as_tensor(DEFAULT_FRACTIONS if fractions is None else fractions, dtype=torch.float64)
    if f.dim() != 1 or f.numel() < 2:
        raise ValueError("fractions must be a sequence of at least two numbers")
    if bool((f < 0).any() or (f > 1).any()) or bool((f[1:] <= f[:-1]).any()):
        raise ValueError(f"fractions must increase within [0, 1], got {f.tolist()}")
    return f


def rank_order(scores: Tensor, *, tie_seed: int | None = 0) -> Tensor:
    """Indices ``(B, k)`` that sort every row of ``scores`` from the highest to the lowest value.

    Masks are often flat (many entries at exactly 0 or 1), so the order among equal scores matters
    for curves; it is a seeded random permutation (``tie_seed``; ``None``: by position), the same
    for every row, so that no region of the image is favoured and results are reproducible.
    """
    k = scores.shape[1]
    if tie_seed is None:
        return torch.argsort(scores, dim=1, descending=True, stable=True)
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(tie_seed)).to(scores.device)
    order = torch.argsort(scores[:, perm], dim=1, descending=True, stable=True)
    return perm[order]


def top_fraction_mask(scores: Tensor, fraction: float, *, tie_seed: int | None = 0) -> Tensor:
    """Binary mask keeping the ``round(fraction * k)`` highest scores of every row.

    Ties are broken as in :func:`rank_order` (deterministic for a given ``tie_seed``).

    Args:
        scores: Scores ``(B, k)``.
        fraction: Fraction in ``[0, 1]`` of entries to keep.

    Returns:
        ``(B, k)`` tensor of zeros and ones, dtype of ``scores``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    k = scores.shape[1]
    count = int(round(fraction * k))
    order = rank_order(scores, tie_seed=tie_seed)
    keep = torch.zeros_like(scores)
    if count:
        keep.scatter_(1, order[:, :count], 1.0)
    return keep


def make_baseline(x: Tensor, baseline: str | float | Tensor = "zeros") -> Tensor:
    """The image that deleted pixels are replaced by (or inserted pixels start from).

    Args:
        x: Images ``(B, C, H, W)``.
        baseline: ``"zeros"``, ``"mean"`` (per-image channel means), ``"blur"`` or ``"blur:SIGMA"``
            (Gaussian blur, sigma 5 pixels by default, as in RISE's insertion metric), a number,
            or a tensor broadcastable to ``x``.

    Returns:
        Baseline images of ``x``'s shape.
    """
    if isinstance(baseline, Tensor):
        return baseline.to(x).expand_as(x).clone()
    if isinstance(baseline, int | float):
        return torch.full_like(x, float(baseline))
    name, _, arg = baseline.partition(":")
    if name == "zeros":
        return torch.zeros_like(x)
    if name == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if name == "blur":
        from torchvision.transforms.functional import gaussian_blur

        try:
            sigma = float(arg) if arg else 5.0
        except ValueError:
            raise ValueError(f"bad blur sigma in baseline {baseline!r}") from None
        if sigma <= 0:
            raise ValueError("blur sigma must be positive")
        kernel = min(2 * int(round(3 * sigma)) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
        return gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    raise ValueError(f"unknown baseline {baseline!r}; choose zeros, mean, blur[:SIGMA], a number")


@torch.no_grad()
def _pixel_curve(
    model: nn.Module,
    x: Tensor,
    attribution: Tensor,
    *,
    insert: bool,
    target: Any,
    steps: int,
    baseline: str | float | Tensor,
    model_output: ModelOutput,
    batch_size: int | None,
) -> Curve:
    if x.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(x.shape)}")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    batch, _, height, width = x.shape
    attr = attribution.to(x)
    if attr.dim() == 3:
        attr = attr.unsqueeze(1)
    if attr.shape[0] != batch or attr.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"attribution of shape {tuple(attribution.shape)} for images {tuple(x.shape)}"
        )
    scores = attr.sum(dim=1).reshape(batch, -1)
    target_idx, _ = _target_index(model, x, target, model_output)
    base = make_baseline(x, baseline)
    order = rank_order(scores)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(height * width, device=x.device).expand(batch, -1))
    frac = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    counts = torch.round(frac * height * width).long().tolist()
    images = []
    for c in counts:
        chosen = (rank < c).view(batch, 1, height, width)
        images.append(torch.where(chosen, x, base) if insert else torch.where(chosen, base, x))
    stack = torch.stack(images, dim=1).flatten(0, 1)
    out = _outputs(model, stack, model_output, batch_size).view(batch, len(counts), -1)
    values = out.gather(2, target_idx.view(-1, 1, 1).expand(-1, len(counts), 1)).squeeze(2)
    return Curve(frac.float(), values.cpu(), "insertion" if insert else "deletion")


def deletion_curve(
    model: nn.Module,
    x: Tensor,
    attribution: Tensor,
    *,
    target: Any = None,
    steps: int = 32,
    baseline: str | float | Tensor = "zeros",
    model_output: ModelOutput = "softmax",
    batch_size: int | None = 64,
) -> Curve:
    """Target probability while the most relevant pixels are replaced by a baseline (RISE).

    Pixels are ranked by ``attribution`` (summed over channels; ties by position). At fraction
    ``t`` the top ``round(t * H * W)`` pixels (all channels) take the baseline's values; at ``t = 1``
    the image *is* the baseline. A faithful explanation makes the probability fall fast: lower
    area is better.

    Args:
        model: Classifier taking ``x``.
        x: Images ``(B, C, H, W)`` in ``[0, 1]``.
        attribution: Pixel relevance ``(B, 1, H, W)``, ``(B, C, H, W)`` or ``(B, H, W)``.
        target: Label per input (default: the prediction).
        steps: Number of deletion steps (``steps + 1`` points from 0 to 1).
        baseline: See :func:`make_baseline` (default zeros, as RISE's deletion).
        model_output: ``"softmax"`` (logits in, probabilities compared) or ``"identity"``.
        batch_size: Largest number of images sent through the model at once.

    Returns:
        A :class:`Curve` named ``"deletion"``.

    References:
        Petsiuk et al., "RISE", BMVC 2018, section 4.1.
    """
    return _pixel_curve(
        model, x, attribution, insert=False, target=target, steps=steps, baseline=baseline,
        model_output=model_output, batch_size=batch_size,
    )  # fmt: skip


def insertion_curve(
    model: nn.Module,
    x: Tensor,
    attribution: Tensor,
    *,
    target: Any = None,
    steps: int = 32,
    baseline: str | float | Tensor = "blur",
    model_output: ModelOutput = "softmax",
    batch_size: int | None = 64,
) -> Curve:
    """Target probability while the most relevant pixels are inserted into a baseline (RISE).

    The mirror of :func:`deletion_curve`: at fraction ``t`` the top ``round(t * H * W)`` pixels
    come from ``x``, the others from the baseline (default: a blurred copy, as in RISE). Higher area
    is better.

    References:
        Petsiuk et al., "RISE", BMVC 2018, section 4.1.
    """
    return _pixel_curve(
        model, x, attribution, insert=True, target=target, steps=steps, baseline=baseline,
        model_output=model_output, batch_size=batch_size,
    )  # fmt: skip
