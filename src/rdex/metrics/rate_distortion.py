"""The rate-distortion curve of an explanation: keep the top-``k`` fraction of its entries,
obfuscate the rest with an obfuscation strategy of the RDE core, measure the expected distortion.

References:
    Macdonald et al., "A Rate-Distortion Framework for Explaining Neural Network Decisions", 2019.
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, section 4.1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rdex.distortions import get_distortion
from rdex.metrics._model import _outputs, _target_index
from rdex.metrics.curves import Curve, _check_fractions, top_fraction_mask
from rdex.obfuscations import Obfuscation, make_obfuscation, obfuscate
from rdex.representations import Pixel, Representation, mask_shape
from rdex.types import Distortion, ModelOutput


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
    soft: bool = False,
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
        soft: Keep the top entries at their own value instead of 1: ``scores`` must be an RDE
            mask (values in ``[0, 1]``), and the curve is the distortion of that mask cut down to
            its top entries. It ends at the mask's own distortion, and an entry the mask deleted
            (value 0) stays deleted, so two nearly equal masks get nearly equal curves. The
            binary curve (the default, as Macdonald et al. and for attribution methods) keeps
            every ranked entry whole, so beyond a mask's support it adds entries in the
            tie-break's order, and near its edge entries the mask kept at 0.001 count fully.

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
    if soft and bool(((flat < 0) | (flat > 1) | flat.isnan()).any()):
        raise ValueError("soft=True keeps the scores as mask values: they must lie in [0, 1]")
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
        if soft:
            keep_flat = keep_flat * flat
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
    out = obfuscate(
        representation,
        bands,
        shape=tuple(x.shape[1:]),
        mask=[s.to(x) for s in mask],
        noise=obf.sample(state, draws, generators),
        clip=clip,
        model=lambda y: _outputs(model, y, model_output, batch_size),
    )
    return out.view(batch, draws, -1)
