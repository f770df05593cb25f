"""How sparse and how smooth an explanation is: mask sparsity, total variation, the Gini index and
wavelet sparsity, and the information measures of the CP scores.

References:
    Hurley & Rickard, "Comparing Measures of Sparsity", IEEE Trans. Inf. Theory 2009 (Gini index).
    Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image Representation",
    CVPR 2023, section 5 (information measures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import ptwt
import torch
from torch import Tensor

from rdex.representations import Representation, Wavelet


def mask_sparsity(mask: Tensor | Sequence[Tensor], *, threshold: float = 0.5) -> dict[str, Tensor]:
    """Share of mask entries above ``threshold`` and the normalised l1 norm of the mask.

    Args:
        mask: Flat masks ``(B, k)``, masks of any shape ``(B, ...)``, or a list of bands.
        threshold: Entries above it count as retained.

    Returns:
        ``retained_fraction`` (share of entries ``> threshold``) and ``mask_l1`` (``||s||_1 / k``,
        the quantity RDE penalises), each ``(B,)``.
    """
    flat = (
        mask.flatten(1) if isinstance(mask, Tensor) else torch.cat([m.flatten(1) for m in mask], 1)
    )
    return {
        "retained_fraction": (flat > threshold).float().mean(dim=1),
        "mask_l1": flat.abs().float().mean(dim=1),
    }


def total_variation(images: Tensor) -> Tensor:
    """Anisotropic total variation per pixel: ``mean |dx| + mean |dy|`` over channels and positions.

    Args:
        images: ``(B, C, H, W)`` (or ``(B, H, W)``).

    Returns:
        ``(B,)``. A constant image has 0; a one-pixel checkerboard in ``{0, 1}`` has 2.
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(dim=1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(dim=1)
    return dx + dy


def gini_index(values: Tensor) -> Tensor:
    """Gini index of ``|values|`` per row ``(B, n) -> (B,)``: 0 for a constant, ``1 - 1/n`` for one
    non-zero entry (Hurley & Rickard, 2009). Scale-invariant; rows of zeros give 0."""
    c = values.abs().flatten(1).double().sort(dim=1).values
    n = c.shape[1]
    total = c.sum(dim=1)
    k = torch.arange(1, n + 1, dtype=torch.float64, device=c.device)
    weights = (n - k + 0.5) / n
    g = 1.0 - 2.0 * (c * weights).sum(dim=1) / total.clamp_min(1e-300)
    return torch.where(total > 0, g, torch.zeros_like(g)).float()


def _wavelet_coefficients(images: Tensor, wavelet: str, levels: int, details_only: bool) -> Tensor:
    if images.dim() == 3:
        images = images.unsqueeze(1)
    levels = max(1, min(levels, int(math.log2(min(images.shape[-2:])))))
    coeffs = ptwt.wavedec2(images.float(), wavelet, level=levels, mode="zero")  # type: ignore[arg-type]
    parts = [] if details_only else [coeffs[0].flatten(1)]
    for detail in coeffs[1:]:
        parts.extend(d.flatten(1) for d in detail)
    return torch.cat(parts, dim=1)


def wavelet_sparsity(
    images: Tensor, *, wavelet: str = "db3", levels: int = 5, details_only: bool = True
) -> Tensor:
    """Sparsity of an explanation image in the wavelet domain: Gini index of its DWT coefficients.

    Piece-wise smooth images have few large detail coefficients (near edges), so their Gini index
    is high (close to 1); noise-like images have a low one.

    Args:
        images: ``(B, C, H, W)`` or ``(B, H, W)``.
        wavelet: pywt wavelet name (default the paper's db3).
        levels: DWT scales (capped at ``log2(min(H, W))``).
        details_only: Ignore the approximation band (its coefficients measure brightness, not
            structure).

    Returns:
        ``(B,)`` in ``[0, 1)``.
    """
    return gini_index(_wavelet_coefficients(images, wavelet, levels, details_only))


def wavelet_l1(
    images: Tensor, *, wavelet: str = "db3", levels: int = 5, details_only: bool = True
) -> Tensor:
    """l1 norm of the DWT detail coefficients per pixel, ``(B,)`` (lower: smoother)."""
    coeffs = _wavelet_coefficients(images, wavelet, levels, details_only)
    pixels = images.shape[-1] * images.shape[-2] * (images.shape[1] if images.dim() == 4 else 1)
    return (coeffs.abs().sum(dim=1) / pixels).float()


ComplexityKind = Literal["pixel-l1", "coeff-l1", "entropy"]


def complexity(
    images: Tensor, kind: ComplexityKind, *, representation: Representation | None = None
) -> Tensor:
    """The information measures ``I`` of the CP scores, per image ``(B,)``.

    Args:
        images: ``(B, C, H, W)``.
        kind: ``"pixel-l1"`` (sum of absolute pixel values), ``"coeff-l1"`` (sum of absolute
            coefficients of ``representation``) or ``"entropy"`` (Shannon entropy, in nats, of the
            normalised squared coefficients ``c_i^2 / sum_j c_j^2`` of ``representation``; 0 for an
            all-zero image).
        representation: For the coefficient measures (default: DWT db3, 5 scales, as CartoonX).

    References:
        Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image
        Representation", CVPR 2023, section 5 (CP scores).
    """
    if kind == "pixel-l1":
        return images.abs().flatten(1).sum(dim=1).float()
    if kind not in ("coeff-l1", "entropy"):
        raise ValueError(f"unknown complexity {kind!r}; choose pixel-l1, coeff-l1 or entropy")
    rep = representation or Wavelet()
    coeffs = torch.cat([b.flatten(1) for b in rep.encode(images.float())], dim=1).double()
    if kind == "coeff-l1":
        return coeffs.abs().sum(dim=1).float()
    energy = coeffs**2
    total = energy.sum(dim=1, keepdim=True)
    p = energy / total.clamp_min(1e-300)
    terms = torch.where(p > 0, -p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))
    return torch.where(
        total.squeeze(1) > 0, terms.sum(dim=1), torch.zeros_like(total.squeeze(1))
    ).float()
