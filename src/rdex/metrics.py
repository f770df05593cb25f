"""Metrics for explanations: faithfulness curves, sparsity and smoothness, CP and hallucination.

Every metric works on plain tensors, so it applies to any method: an RDE result (mask per band of
a representation) or a pixel attribution ``(B, 1, H, W)`` from a gradient or propagation method.

* :func:`rate_distortion_curve`: keep the top-``k`` fraction of mask entries (or attribution
  values), obfuscate the rest with an obfuscation strategy of the RDE core and measure the
  expected distortion (Macdonald et al., 2019; Kolek et al., 2022, section 4.1). Pixel
  attributions use the :class:`~rdex.representations.Pixel` representation, so curves of all
  methods share the distortion axis.
* :func:`deletion_curve`, :func:`insertion_curve`: the target probability while the most relevant
  pixels are deleted from the image (replaced by a baseline) or inserted into the baseline
  (Petsiuk et al., "RISE", BMVC 2018).
* :func:`mask_sparsity`, :func:`total_variation`, :func:`wavelet_sparsity`, :func:`wavelet_l1`:
  how sparse and how smooth an explanation is.
* :func:`cp_scores`: conciseness-preciseness scores and :func:`hallucination_score`, both as
  defined by Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image
  Representation" (ShearletX), CVPR 2023, section 5 (our own implementation of their definitions).

:class:`Explanation` bundles what the metrics need of one method's output and
:func:`evaluate` computes all metrics for it; :func:`manifest_metrics` returns plain floats for one
image (what the batch runner writes into its manifest).

Conventions: curves are sampled at fractions ``0 .. 1`` of the ranked entries and their area is the
trapezoid rule over ``[0, 1]``. Lower is better for the rate-distortion and deletion areas, higher
for the insertion area and the CP scores, lower for the hallucination score.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022. Petsiuk et al., "RISE:
    Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018. Kolek et al.,
    "Explaining Image Classifiers with Multiscale Directional Image Representation", CVPR 2023.
    Hurley & Rickard, "Comparing Measures of Sparsity", IEEE Trans. Inf. Theory 2009 (Gini index).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import ptwt
import torch
from torch import Tensor, nn

from rdex.distortions import get_distortion
from rdex.obfuscations import Obfuscation, make_obfuscation
from rdex.representations import Pixel, Representation, Wavelet, mask_shape
from rdex.types import Distortion, ModelOutput

__all__ = [
    "Curve",
    "Explanation",
    "Evaluation",
    "area_under_curve",
    "top_fraction_mask",
    "rank_order",
    "rate_distortion_curve",
    "obfuscated_outputs",
    "deletion_curve",
    "insertion_curve",
    "make_baseline",
    "mask_sparsity",
    "total_variation",
    "gini_index",
    "wavelet_sparsity",
    "wavelet_l1",
    "complexity",
    "cp_scores",
    "edge_map",
    "hallucination_score",
    "pixel_relevance",
    "attribution_picture",
    "evaluate",
    "manifest_metrics",
    "METRIC_DIRECTIONS",
]

#: Default fractions of kept / deleted entries at which curves are sampled.
DEFAULT_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)

#: For every scalar metric :func:`evaluate` returns: +1 when higher is better, -1 when lower is
#: better, 0 when it describes the explanation without a preferred direction.
METRIC_DIRECTIONS: dict[str, int] = {
    "rd_auc": -1,
    "deletion_auc": -1,
    "insertion_auc": 1,
    "retained_fraction": -1,
    "mask_l1": -1,
    "tv": -1,
    "tv_retained": -1,
    "wavelet_gini": 1,
    "wavelet_l1": -1,
    "cp_pixel_l1": 1,
    "cp_coeff_l1": 1,
    "cp_entropy": 1,
    "retained_prob_ratio": 1,
    "hallucination": -1,
    "hallucinated_edge_fraction": -1,
}


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


def _model_output(model: nn.Module, y: Tensor, mode: ModelOutput) -> Tensor:
    out = model(y).float()
    return torch.softmax(out, dim=-1) if mode == "softmax" else out


def _outputs(
    model: nn.Module, y: Tensor, mode: ModelOutput, batch_size: int | None = None
) -> Tensor:
    """Model outputs for a stack of inputs, in chunks of ``batch_size``."""
    if batch_size is None or y.shape[0] <= batch_size:
        return _model_output(model, y, mode)
    return torch.cat(
        [
            _model_output(model, y[i : i + batch_size], mode)
            for i in range(0, y.shape[0], batch_size)
        ]
    )


def _target_index(
    model: nn.Module, x: Tensor, target: Any, mode: ModelOutput, probs: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    from rdex.rde import resolve_target

    if probs is None:
        probs = _model_output(model, x, mode)
    return resolve_target(model, probs, target), probs


def _flatten_scores(
    scores: Tensor | Sequence[Tensor], bands: Sequence[Tensor], representation: Representation
) -> tuple[Tensor, list[tuple[int, ...]]]:
    """Scores as ``(B, k)`` plus the mask shape of every band."""
    shapes = [mask_shape(b, representation.shared_dims) for b in bands]
    batch = bands[0].shape[0]
    if isinstance(scores, Tensor):
        # A pixel attribution with several channels: rank by the channel sum.
        if (
            len(bands) == 1
            and tuple(scores.shape) != shapes[0]
            and scores.shape[0] == batch
            and scores.dim() == 4
            and scores.shape[2:] == bands[0].shape[2:]
        ):
            scores = scores.sum(dim=1, keepdim=True)
        flat = scores.reshape(batch, -1)
    else:
        if len(scores) != len(bands):
            raise ValueError(f"{len(scores)} mask bands for a representation with {len(bands)}")
        for s, shape in zip(scores, shapes, strict=True):
            if tuple(s.shape) != shape:
                raise ValueError(f"mask band of shape {tuple(s.shape)}, expected {shape}")
        flat = torch.cat([s.reshape(batch, -1) for s in scores], dim=1)
    k = sum(math.prod(s[1:]) for s in shapes)
    if flat.shape[1] != k:
        raise ValueError(
            f"scores have {flat.shape[1]} entries per input, the representation's mask has {k}"
        )
    return flat, shapes


@torch.no_grad()
def rate_distortion_curve(
    model: nn.Module,
    x: Tensor,
    scores: Tensor | Sequence[Tensor],
    *,
    representation: Representation | None = None,
    obfuscation: Obfuscation | str = "gaussian",
    distortion: str | Distortion = "label",
    target: Any = None,
    reference_output: Tensor | None = None,
    fractions: Sequence[float] | Tensor | None = None,
    samples: int = 16,
    seed: int = 0,
    clip: tuple[float, float] | None = (0.0, 1.0),
    model_output: ModelOutput = "softmax",
    batch_size: int | None = 64,
) -> Curve:
    """Expected distortion when only the top-``k`` fraction of the entries is kept.

    For every fraction the highest-scoring ``round(fraction * k)`` entries of the representation's
    coefficients are kept and all others replaced by the obfuscation ``v`` (``samples`` draws; the
    same draws for every fraction, so the curve is not noisier than the method), i.e. the binary
    mask ``s`` gives ``y = f(s * h + (1 - s) * v)``, clipped, and the curve value is the mean of
    ``d(Phi(x), Phi(y))`` over the draws. This is the rate-distortion function of an explanation
    (Macdonald et al., 2019): a good explanation reaches low distortion at a small rate.

    Args:
        model: Classifier taking ``x``.
        x: Inputs ``(B, C, H, W)`` in ``[0, 1]``.
        scores: Relevance of every mask entry: per band a tensor of the band's mask shape (an
            :attr:`rdex.rde.RDEResult.mask`), a flat ``(B, k)`` tensor, or for the pixel
            representation a pixel attribution ``(B, 1, H, W)`` (``(B, C, H, W)`` is summed over
            channels). Higher means more relevant; pass ``attribution.abs()`` to rank by magnitude.
        representation: Representation the scores live in (default :class:`Pixel`).
        obfuscation: Obfuscation of the deleted entries (default adaptive Gaussian, as RDE).
        distortion: Distortion name or callable (default squared difference of the label's
            probability).
        target: Label per input (default: the prediction).
        reference_output: Output ``(B, m)`` the distortion compares against instead of ``Phi(x)``.
        fractions: Increasing fractions in ``[0, 1]`` (default :data:`DEFAULT_FRACTIONS`).
        samples: Obfuscation draws per fraction (one for deterministic obfuscations).
        seed: Seed of the draws.
        clip: Range obfuscations are clipped to (``None``: no clipping).
        model_output: ``"softmax"`` for classifiers returning logits, else ``"identity"``.
        batch_size: Largest number of obfuscations sent through the model at once.

    Returns:
        A :class:`Curve` named ``"rate-distortion"`` with values ``(B, n)``.
    """
    rep = representation or Pixel()
    obf = make_obfuscation(obfuscation)
    dist = get_distortion(distortion)
    frac = _check_fractions(fractions)
    if samples < 1:
        raise ValueError("samples must be at least 1")
    batch = x.shape[0]
    bands = rep.encode(x)
    flat, shapes = _flatten_scores(scores, bands, rep)
    flat = flat.to(x)
    target_idx, probs = _target_index(model, x, target, model_output)
    reference = (
        probs
        if reference_output is None
        else reference_output.to(probs).reshape(-1, probs.shape[1])
    )
    if reference.shape[0] == 1:
        reference = reference.expand(batch, -1)
    sizes = [math.prod(s[1:]) for s in shapes]
    values = torch.zeros(batch, len(frac))
    for j, f in enumerate(frac.tolist()):
        keep_flat = top_fraction_mask(flat, f)
        keep = [k.reshape(s) for k, s in zip(keep_flat.split(sizes, dim=1), shapes, strict=True)]
        out = obfuscated_outputs(
            model, x, keep, representation=rep, obfuscation=obf, samples=samples, seed=seed,
            clip=clip, model_output=model_output, batch_size=batch_size, bands=bands,
        )  # fmt: skip
        values[:, j] = dist(reference, out, target_idx).mean(dim=1).cpu()
    return Curve(frac.float(), values, "rate-distortion")


@torch.no_grad()
def obfuscated_outputs(
    model: nn.Module,
    x: Tensor,
    mask: Sequence[Tensor],
    *,
    representation: Representation,
    obfuscation: Obfuscation | str = "gaussian",
    samples: int = 16,
    seed: int = 0,
    clip: tuple[float, float] | None = (0.0, 1.0),
    model_output: ModelOutput = "softmax",
    batch_size: int | None = 64,
    bands: Sequence[Tensor] | None = None,
) -> Tensor:
    """Model outputs for obfuscations ``y = f(s * h + (1 - s) * v)`` of ``x`` under a mask.

    Args:
        model: Classifier taking ``x``.
        x: Inputs ``(B, C, H, W)``.
        mask: Mask per band (shapes as :attr:`rdex.rde.RDEResult.mask`), values in ``[0, 1]``.
        representation: The representation ``f``.
        obfuscation: Strategy drawing ``v`` (prepared on ``x``, as in the optimiser).
        samples: Draws ``L`` (one for deterministic strategies).
        seed: Seed of every image's generator.
        clip: Range obfuscations are clipped to.
        model_output: ``"softmax"`` or ``"identity"``.
        batch_size: Largest number of obfuscations sent through the model at once.
        bands: The coefficients of ``x`` if already computed.

    Returns:
        Outputs ``(B, L, m)``.
    """
    obf = make_obfuscation(obfuscation)
    if bands is None:
        bands = representation.encode(x)
    batch = x.shape[0]
    state = obf.prepare(x, bands, representation)
    draws = 1 if obf.deterministic else samples
    generators = [torch.Generator(device=x.device).manual_seed(seed) for _ in range(batch)]
    noise = obf.sample(state, draws, generators)
    mixed = []
    for s, h, v in zip(mask, bands, noise, strict=True):
        s1 = s.to(x).unsqueeze(1)
        mixed.append((s1 * h.unsqueeze(1) + (1.0 - s1) * v).flatten(0, 1))
    y = representation.decode(mixed, shape=tuple(x.shape[1:]))
    if clip is not None:
        y = y.clamp(*clip)
    return _outputs(model, y, model_output, batch_size).view(batch, draws, -1)


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


@torch.no_grad()
def cp_scores(
    model: nn.Module,
    x: Tensor,
    masked: Tensor,
    *,
    target: Any = None,
    representation: Representation | None = None,
    model_output: ModelOutput = "softmax",
    eps: float = 1e-12,
) -> dict[str, Tensor]:
    """Conciseness-preciseness scores of a masked image (ShearletX, CVPR 2023).

    ``CP = (p(masked) / p(x)) / (I(masked) / I(x))`` with ``p`` the probability of the target
    (default: the predicted label of ``x``) and ``I`` one of three measures of information
    (:func:`complexity`): pixel l1 (``cp_pixel_l1``), l1 of the representation's coefficients
    (``cp_coeff_l1``) and the entropy of the normalised squared coefficients (``cp_entropy``). A
    concise and precise explanation keeps the class probability with little of the image's
    information: higher is better.

    Args:
        model: Classifier taking ``x``.
        x: Images ``(B, C, H, W)``.
        masked: The explanation's masked image ``(B, C, H, W)`` (for RDE: the mask applied to the
            input's coefficients, :attr:`rdex.rde.RDEResult.explanation_rgb`).
        target: Label per input (default: the prediction).
        representation: Representation of the coefficient measures (default DWT db3, 5 scales).
        model_output: ``"softmax"`` or ``"identity"``.
        eps: Guards divisions (an empty masked image has information 0: its CP is ``ratio / eps``).

    Returns:
        ``cp_pixel_l1``, ``cp_coeff_l1``, ``cp_entropy`` and ``retained_prob_ratio``, each ``(B,)``.

    References:
        Kolek, Windesheim, Andrade-Loarca, Kutyniok, Levie, "Explaining Image Classifiers with
        Multiscale Directional Image Representation", CVPR 2023, section 5.
    """
    if masked.shape != x.shape:
        raise ValueError(f"masked images {tuple(masked.shape)} differ from inputs {tuple(x.shape)}")
    target_idx, probs = _target_index(model, x, target, model_output)
    p_masked = _model_output(model, masked.to(x), model_output)
    ratio_p = p_masked.gather(1, target_idx.view(-1, 1)).squeeze(1) / probs.gather(
        1, target_idx.view(-1, 1)
    ).squeeze(1).clamp_min(eps)
    out = {"retained_prob_ratio": ratio_p.cpu()}
    for kind, key in (
        ("pixel-l1", "cp_pixel_l1"),
        ("coeff-l1", "cp_coeff_l1"),
        ("entropy", "cp_entropy"),
    ):
        info_x = complexity(x, kind, representation=representation)  # type: ignore[arg-type]
        info_m = complexity(masked.to(x), kind, representation=representation)  # type: ignore[arg-type]
        ratio_i = info_m / info_x.clamp_min(eps)
        out[key] = (ratio_p / ratio_i.clamp_min(eps)).cpu()
    return out


def _grey_numpy(image: Tensor) -> np.ndarray:
    """``(C, H, W)`` or ``(H, W)`` tensor to a float64 greyscale ``(H, W)`` array."""
    arr = image.detach().double().cpu()
    if arr.dim() == 3:
        arr = arr.mean(dim=0)
    return arr.numpy()


def edge_map(
    image: Tensor,
    *,
    sigma: float = 1.0,
    low_threshold: float | None = 0.05,
    high_threshold: float | None = 0.15,
) -> np.ndarray:
    """Canny edges (scikit-image) of one image ``(C, H, W)`` or ``(H, W)`` (channels averaged).

    Thresholds are absolute gradient magnitudes of the smoothed ``[0, 1]`` image, the same for the
    input and the explanation, so weak noise does not count as an edge in either.
    """
    from skimage.feature import canny

    return canny(
        _grey_numpy(image), sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold
    )


def hallucination_score(
    x: Tensor,
    explanation: Tensor,
    *,
    tolerance: int = 3,
    sigma: float = 1.0,
    low_threshold: float | None = 0.05,
    high_threshold: float | None = 0.15,
) -> dict[str, Tensor]:
    """Edges in the explanation that the input does not have (ShearletX, CVPR 2023).

    Edges are Canny edges (:func:`edge_map`) of the greyscale input and of the explanation image;
    the input's edge map is dilated by ``tolerance`` pixels (a disk), and an explanation edge pixel
    outside it is *hallucinated*. The score is the number of hallucinated edge pixels divided by
    the number of the input's edge pixels (at least one, so an edge-free input such as a clear sky
    gives the raw count). Lower is better; 0 means every edge of the explanation is near an edge
    of the input.

    Args:
        x: Images ``(B, C, H, W)``.
        explanation: Explanation images ``(B, C', H, W)`` in ``[0, 1]`` (for RDE: the masked
            image :attr:`~rdex.rde.RDEResult.explanation_rgb`).
        tolerance: Dilation radius of the input's edges in pixels.
        sigma, low_threshold, high_threshold: Canny parameters (see :func:`edge_map`).

    Returns:
        ``hallucination`` (the score), ``hallucinated_edge_fraction`` (hallucinated edge pixels
        per image pixel), ``input_edges`` and ``explanation_edges`` (counts), each ``(B,)``.

    References:
        Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image
        Representation", CVPR 2023, section 5 (hallucination score).
    """
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk

    if explanation.shape[0] != x.shape[0] or explanation.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"explanations {tuple(explanation.shape)} do not match images {tuple(x.shape)}"
        )
    scores, fractions, n_in, n_ex = [], [], [], []
    for xi, ei in zip(x, explanation, strict=True):
        edges_x = edge_map(
            xi, sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold
        )
        edges_e = edge_map(
            ei, sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold
        )
        near = binary_dilation(edges_x, structure=disk(tolerance)) if tolerance > 0 else edges_x
        hallucinated = int(np.count_nonzero(edges_e & ~near))
        count_x = int(np.count_nonzero(edges_x))
        scores.append(hallucinated / max(count_x, 1))
        fractions.append(hallucinated / edges_x.size)
        n_in.append(count_x)
        n_ex.append(int(np.count_nonzero(edges_e)))
    return {
        "hallucination": torch.tensor(scores),
        "hallucinated_edge_fraction": torch.tensor(fractions),
        "input_edges": torch.tensor(n_in, dtype=torch.float32),
        "explanation_edges": torch.tensor(n_ex, dtype=torch.float32),
    }


def pixel_relevance(mask: Sequence[Tensor], x: Tensor, representation: Representation) -> Tensor:
    """A mask over a representation pulled back to pixels, for pixel-space metrics ``(B, 1, H, W)``.

    Every band's mask is resized to the image (nearest neighbour) and weighted by the energy of the
    input's coefficients there (summed over channels and orientations); the relevance of a pixel is
    the energy-weighted mean mask value, i.e. the share of the local coefficient energy the mask
    keeps. For :class:`Pixel` it is the mask itself. Where all coefficients vanish the plain mean
    is used.
    """
    import torch.nn.functional as F

    height, width = x.shape[-2:]
    bands = representation.encode(x)
    if isinstance(representation, Pixel):
        (m,) = mask
        return m.to(x).expand(x.shape[0], 1, height, width).clone()
    num = x.new_zeros(x.shape[0], 1, height, width)
    den = x.new_zeros(x.shape[0], 1, height, width)
    for m, h in zip(mask, bands, strict=True):
        if h.dim() < 4:
            raise ValueError("pixel_relevance needs spatial bands (B, C, ..., h, w)")
        energy = (h.double() ** 2).sum(dim=tuple(range(1, h.dim() - 2)))
        m2 = m.to(x).expand_as(h).mean(dim=tuple(range(1, h.dim() - 2)))
        weight = energy.float().unsqueeze(1) + 1e-12
        weight = F.interpolate(weight, size=(height, width), mode="nearest")
        num += weight * F.interpolate(m2.unsqueeze(1), size=(height, width), mode="nearest")
        den += weight
    return num / den


def attribution_picture(attribution: Tensor) -> Tensor:
    """An attribution ``(B, C, H, W)`` as a picture in ``[0, 1]`` ``(B, 1, H, W)``: the channel sum's
    positive part divided by its per-image maximum (zero images stay zero)."""
    attr = attribution if attribution.dim() == 4 else attribution.unsqueeze(1)
    a = attr.sum(dim=1, keepdim=True).clamp_min(0.0)
    top = a.flatten(1).max(dim=1).values.clamp_min(1e-12).view(-1, 1, 1, 1)
    return a / top


@dataclass
class Explanation:
    """What the metrics need of one method's explanation of a batch.

    Attributes:
        method: Name of the method.
        relevance: Pixel relevance ``(B, 1, H, W)`` ranking pixels for deletion/insertion.
        picture: The picture shown to users ``(B, 1, H, W)`` in ``[0, 1]`` (TV, wavelet sparsity).
        retained: The masked image ``(B, C, H, W)`` (CP, hallucination, TV of what is kept).
        scores: Scores of the entries ranked by the rate-distortion curve (mask bands, or the
            pixel relevance for attributions).
        representation: Representation of ``scores``.
        obfuscation: Obfuscation the rate-distortion curve uses (the method's own).
        mask: The mask bands for sparsity (``None`` for attributions: the normalised picture is
            used).
        target: Explained label per input ``(B,)`` (``None``: the prediction).
        reference_output: Output the method's distortion compared against (A.4), or ``None``.
        distortion: The method's distortion name (used by the rate-distortion curve).
    """

    method: str
    relevance: Tensor
    picture: Tensor
    retained: Tensor
    scores: Tensor | list[Tensor]
    representation: Representation
    obfuscation: Obfuscation | str = "gaussian"
    mask: list[Tensor] | None = None
    target: Tensor | None = None
    reference_output: Tensor | None = None
    distortion: str | Distortion = "label"

    @classmethod
    def from_rde(cls, explainer: Any, x: Tensor, result: Any) -> Explanation:
        """From an :class:`~rdex.rde.RDE` (or method preset) and its :class:`~rdex.rde.RDEResult`."""
        rep: Representation = explainer.representation
        # The distortion the method optimised (a callable given to RDE overrides the config's name).
        distortion = getattr(explainer, "_distortion", None) or explainer.config.distortion
        return cls(
            method=result.method,
            relevance=pixel_relevance(result.mask, x, rep),
            picture=result.explanation,
            retained=result.explanation_rgb,
            scores=list(result.mask),
            representation=rep,
            obfuscation=explainer.obfuscation,
            mask=list(result.mask),
            target=result.target,
            distortion=distortion,
        )

    @classmethod
    def from_mask(
        cls,
        method: str,
        x: Tensor,
        mask: Sequence[Tensor],
        representation: Representation,
        *,
        obfuscation: Obfuscation | str = "gaussian",
        target: Tensor | None = None,
        picture: Tensor | None = None,
        distortion: str | Distortion = "label",
    ) -> Explanation:
        """From mask bands over ``representation`` (e.g. loaded from an ``.npz`` file).

        The retained image is ``f(s * h)`` clipped to ``[0, 1]``; the picture defaults to its
        channel mean.
        """
        bands = representation.encode(x)
        masks = [m.to(x) for m in mask]
        retained = representation.decode(
            [m * b for m, b in zip(masks, bands, strict=True)], shape=tuple(x.shape[1:])
        ).clamp(0.0, 1.0)
        return cls(
            method=method,
            relevance=pixel_relevance(masks, x, representation),
            picture=retained.mean(dim=1, keepdim=True) if picture is None else picture.to(x),
            retained=retained,
            scores=masks,
            representation=representation,
            obfuscation=obfuscation,
            mask=masks,
            target=target,
            distortion=distortion,
        )

    @classmethod
    def from_attribution(
        cls,
        method: str,
        x: Tensor,
        attribution: Tensor,
        *,
        target: Tensor | None = None,
        obfuscation: Obfuscation | str = "gaussian",
    ) -> Explanation:
        """From a pixel attribution ``(B, 1 or C, H, W)`` (gradient or propagation methods).

        Pixels are ranked by the channel sum of the attribution. Its picture is the positive part
        normalised to ``[0, 1]`` (:func:`attribution_picture`), used as a soft mask on the input for
        the retained image; the rate-distortion curve ranks pixels in the Pixel representation
        with adaptive Gaussian noise, as Pixel RDE.
        """
        attr = attribution.to(x)
        if attr.dim() == 3:
            attr = attr.unsqueeze(1)
        relevance = attr.sum(dim=1, keepdim=True)
        picture = attribution_picture(attr)
        return cls(
            method=method,
            relevance=relevance,
            picture=picture,
            retained=x * picture,
            scores=relevance,
            representation=Pixel(),
            obfuscation=obfuscation,
            mask=None,
            target=target,
        )


@dataclass
class Evaluation:
    """All metrics of one method's explanations of a batch.

    Attributes:
        method: Name of the method.
        scores: Scalar metrics per input, each ``(B,)`` (see :data:`METRIC_DIRECTIONS`).
        curves: ``rate-distortion``, ``deletion`` and ``insertion`` curves.
    """

    method: str
    scores: dict[str, Tensor]
    curves: dict[str, Curve] = field(default_factory=dict)

    def rows(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One dict per input: ``method``, ``image`` (name or index) and every scalar metric."""
        batch = len(next(iter(self.scores.values())))
        out = []
        for i in range(batch):
            row: dict[str, Any] = {"method": self.method, "image": names[i] if names else i}
            row.update({k: float(v[i]) for k, v in self.scores.items()})
            out.append(row)
        return out

    def __getitem__(self, i: int) -> Evaluation:
        return dataclasses.replace(
            self,
            scores={k: v[i : i + 1] for k, v in self.scores.items()},
            curves={k: c[i] for k, c in self.curves.items()},
        )


def evaluate(
    model: nn.Module,
    x: Tensor,
    explanation: Explanation,
    *,
    target: Any = None,
    fractions: Sequence[float] | Tensor | None = None,
    samples: int = 16,
    steps: int = 32,
    deletion_baseline: str | float | Tensor = "zeros",
    insertion_baseline: str | float | Tensor = "blur",
    rd_obfuscation: Obfuscation | str | None = None,
    seed: int = 0,
    model_output: ModelOutput = "softmax",
    batch_size: int | None = 64,
    curves: bool = True,
) -> Evaluation:
    """Every metric of this module for one method's explanations of ``x``.

    Args:
        model: Classifier taking ``x``.
        x: Images ``(B, C, H, W)`` in ``[0, 1]``.
        explanation: See :class:`Explanation`.
        target: Label per input; default the explanation's target, else the prediction.
        fractions: Fractions of the rate-distortion curve.
        samples: Obfuscation draws per point of the rate-distortion curve.
        steps: Steps of the deletion and insertion curves.
        deletion_baseline, insertion_baseline: See :func:`make_baseline`.
        rd_obfuscation: Obfuscation of the rate-distortion curve; default the method's own (give
            one fixed strategy to compare methods that differ in obfuscation).
        seed: Seed of the obfuscation draws.
        model_output: ``"softmax"`` or ``"identity"``.
        batch_size: Largest number of images sent through the model at once.
        curves: Compute the three curves (the costly part); ``False`` gives the cheap scores only.

    Returns:
        An :class:`Evaluation` with scores ``rd_auc``, ``deletion_auc``, ``insertion_auc``,
        ``retained_fraction``, ``mask_l1``, ``tv``, ``tv_retained``, ``wavelet_gini``,
        ``wavelet_l1``, ``cp_pixel_l1``, ``cp_coeff_l1``, ``cp_entropy``, ``retained_prob_ratio``,
        ``hallucination``, ``hallucinated_edge_fraction``.
    """
    ex = explanation
    if target is None:
        target = ex.target
    with _eval_mode(model):
        target_idx, _ = _target_index(model, x, target, model_output)
        scores: dict[str, Tensor] = {}
        out_curves: dict[str, Curve] = {}
        if curves:
            rd = rate_distortion_curve(
                model, x, ex.scores, representation=ex.representation,
                obfuscation=rd_obfuscation if rd_obfuscation is not None else ex.obfuscation,
                distortion=ex.distortion, target=target_idx, reference_output=ex.reference_output,
                fractions=fractions, samples=samples, seed=seed, model_output=model_output,
                batch_size=batch_size,
            )  # fmt: skip
            dele = deletion_curve(
                model, x, ex.relevance, target=target_idx, steps=steps, baseline=deletion_baseline,
                model_output=model_output, batch_size=batch_size,
            )  # fmt: skip
            ins = insertion_curve(
                model, x, ex.relevance, target=target_idx, steps=steps, baseline=insertion_baseline,
                model_output=model_output, batch_size=batch_size,
            )  # fmt: skip
            out_curves = {"rate-distortion": rd, "deletion": dele, "insertion": ins}
            scores["rd_auc"] = rd.area
            scores["deletion_auc"] = dele.area
            scores["insertion_auc"] = ins.area
        sparsity = mask_sparsity(ex.mask if ex.mask is not None else ex.picture)
        scores.update({k: v.cpu() for k, v in sparsity.items()})
        scores["tv"] = total_variation(ex.picture).cpu()
        scores["tv_retained"] = total_variation(ex.retained).cpu()
        scores["wavelet_gini"] = wavelet_sparsity(ex.picture).cpu()
        scores["wavelet_l1"] = wavelet_l1(ex.picture).cpu()
        scores.update(
            cp_scores(model, x, ex.retained, target=target_idx, model_output=model_output)
        )
        scores.update(
            {k: v for k, v in hallucination_score(x, ex.retained).items() if k in METRIC_DIRECTIONS}
        )
    return Evaluation(ex.method, scores, out_curves)


class _eval_mode:
    """Run a model in eval mode and restore the caller's flags afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.modes = [(m, m.training) for m in model.modules()]
        self.model = model

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        for m, mode in self.modes:
            m.training = mode


def manifest_metrics(
    model: nn.Module,
    x: Tensor,
    explanation: Explanation | Any,
    index: int = 0,
    *,
    explainer: Any = None,
    curves: bool = True,
    **kwargs: Any,
) -> dict[str, float]:
    """Metric values of input ``index`` as plain floats, for a batch manifest line.

    Args:
        model: The classifier.
        x: The explained images ``(B, C, H, W)``.
        explanation: An :class:`Explanation`, or an :class:`~rdex.rde.RDEResult` (then pass
            ``explainer``, the RDE object that produced it).
        index: Which input of the batch.
        explainer: The RDE method that produced an ``RDEResult``.
        curves: Include the curve areas (``False``: cheap scores only).
        **kwargs: Passed on to :func:`evaluate`.

    Returns:
        ``{"metric": value}``, keys as :data:`METRIC_DIRECTIONS` (prefixed ``metric_`` is left to the
        caller).
    """
    if not isinstance(explanation, Explanation):
        if explainer is None:
            raise ValueError("pass the explainer that produced an RDEResult")
        explanation = Explanation.from_rde(explainer, x, explanation)
    one = _select(explanation, index)
    ev = evaluate(model, x[index : index + 1], one, curves=curves, **kwargs)
    return {k: float(v[0]) for k, v in ev.scores.items()}


def _select(ex: Explanation, i: int) -> Explanation:
    """The explanation of input ``i`` alone (batch dimension kept)."""

    def pick(t: Any) -> Any:
        if t is None:
            return None
        if isinstance(t, Tensor):
            return t[i : i + 1] if t.dim() and t.shape[0] > 1 else t
        return [pick(b) for b in t]

    return dataclasses.replace(
        ex,
        relevance=pick(ex.relevance),
        picture=pick(ex.picture),
        retained=pick(ex.retained),
        scores=pick(ex.scores),
        mask=pick(ex.mask),
        target=pick(ex.target),
        reference_output=pick(ex.reference_output),
    )


#: Signature of a pixel attribution method: ``(model, x, *, target) -> (B, 1, H, W)``.
AttributionFn = Callable[..., Tensor]
