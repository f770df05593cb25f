"""The RDE objective of any mask, and whether deleting everything would score as well.

RDE's explanation minimises ``E_v[d(Phi(x), Phi(y))] + lambda_k * mean(s)`` (plus a spatial
term for ShearletX and WaveletX). An empty mask pays no sparsity penalty, only the distortion of
an input that is all noise. When the model is unsure of the label (probability ``p``), that
distortion is small: for the ``label`` distortion about ``p**2``. An explanation can then score
no better than deleting everything. The seeds of a short schedule land on either answer (an
empty picture or a sparse one at the same objective), and a picture shown without that
knowledge claims more than the objective supports. :func:`mask_objective` estimates the
objective of any mask on seeded noise draws. RDE compares every explanation with the empty mask
on the same draws and warns when the empty mask is as good
(:func:`rdex.checks.explanation_warnings`).

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, equation (2) (the
    objective) and appendix A.8 (explanations that are all black for a too large lambda).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rdex.checks import integer
from rdex.config import RDEConfig
from rdex.distortions import get_distortion
from rdex.inference import frozen
from rdex.representations import Representation
from rdex.results import greyscale_picture

if TYPE_CHECKING:
    from rdex.rde import RDE

__all__ = [
    "Objective",
    "OBJECTIVE_DRAWS",
    "OBJECTIVE_PIECE_ELEMENTS",
    "EMPTY_TIE",
    "penalty",
    "mask_objective",
    "against_empty",
    "empty_warning",
]

#: Noise draws of the objective estimate that every explanation is checked with.
OBJECTIVE_DRAWS = 64

#: On CPU the draws come in pieces of at most this many values (8 obfuscations of 3x256x256):
#: a rule of its own, so that an estimate does not change with the optimiser's pass size.
OBJECTIVE_PIECE_ELEMENTS = 8 * 3 * 256 * 256

#: A mask whose mean entry is above this has hardly left ones (Algorithm 1 starts from ones): if
#: it scores no better than the empty mask, the run stopped early rather than the label is weak.
DENSE_MASK = 0.25

#: The empty mask "scores as well" as an explanation when its objective is at most this factor
#: above the explanation's (a tie within the estimate's precision counts).
EMPTY_TIE = 1.02


def penalty(
    config: RDEConfig,
    mask: Sequence[Tensor],
    x: Tensor,
    representation: Representation,
    *,
    grey_bands: Sequence[Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean mask value ``(B,)`` and the objective's penalty ``(B,)``: ``lambda_k * l1``, plus
    ``spatial_l1`` times the mean of the masked greyscale image when that is on.

    Args:
        config: The settings (``lambda_k``, ``spatial_l1``, ``clip``).
        mask: Mask per band, ``(B, ...)``.
        x: The inputs ``(B, C, H, W)`` (read only for the spatial term).
        representation: The representation the mask lives in.
        grey_bands: The coefficients of the greyscale inputs, if already computed.
    """
    k = sum(m[0].numel() for m in mask)
    l1: Tensor = torch.stack([m.flatten(1).sum(dim=1) for m in mask]).sum(dim=0) / k
    total = config.lambda_k * l1
    if config.spatial_l1 > 0:
        picture = greyscale_picture(
            x, mask, representation, clip=config.clip, grey_bands=grey_bands
        )
        total = total + config.spatial_l1 * picture.abs().flatten(1).mean(dim=1)
    return l1, total


@dataclass(frozen=True)
class Objective:
    """The objective of a mask per input, estimated on seeded noise draws.

    Attributes:
        distortion: Mean distortion over the draws (times ``distortion_scale``), ``(B,)``.
        penalty: The sparsity (and spatial) penalty, ``(B,)``.
        l1: The mean mask value, ``(B,)``.
        draws: Noise draws per input (one for a deterministic obfuscation).
    """

    distortion: Tensor
    penalty: Tensor
    l1: Tensor
    draws: int

    @property
    def value(self) -> Tensor:
        """Distortion plus penalty, ``(B,)``: what RDE minimises."""
        return self.distortion + self.penalty


def mask_objective(
    explainer: RDE,
    x: Tensor,
    mask: Sequence[Tensor],
    *,
    probs: Tensor,
    target: Tensor,
    reference_output: Tensor | None = None,
    draws: int = OBJECTIVE_DRAWS,
    seed: int = 0,
    batch_size: int | None = None,
) -> Objective:
    """The RDE objective of ``mask`` for ``explainer``'s settings, estimated on ``draws`` noise
    draws of its own obfuscation.

    Every input's draws are seeded with ``seed`` (in pieces of ``batch_size``, each from a seed
    derived from it), so two masks evaluated with the same seed are compared on the same noise
    (their difference is not blurred by the draws).

    Args:
        explainer: The RDE method (representation, obfuscation, distortion and settings).
        x: The inputs ``(B, C, H, W)``.
        mask: Mask per band, ``(B, ...)``, values in ``[0, 1]``.
        probs: The model's output for ``x``, ``(B, m)``.
        target: The explained label per input, ``(B,)``.
        reference_output: The output the distortion compares with instead of ``probs``.
        draws: Noise draws per input.
        seed: Seed of every input's generator.
        batch_size: Obfuscations sent through the model at once, and the draws of one piece
            (default: :data:`OBJECTIVE_PIECE_ELEMENTS` values per piece on CPU, e.g. 8 at
            256x256 and all 64 at 32x32, or ``sample_chunk`` when the method sets it; all 64 on
            GPU).
    """
    from rdex.metrics.rate_distortion import obfuscated_outputs

    if integer("draws", draws) < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    if batch_size is None:
        batch_size = explainer._chunk_size(x, draws, elements=OBJECTIVE_PIECE_ELEMENTS)
    elif integer("batch_size", batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    cfg = explainer.config
    reference = probs if reference_output is None else reference_output.expand_as(probs)
    draws = 1 if explainer.obfuscation.deterministic else draws
    # The draws come in pieces of batch_size, each from its own seed derived from ``seed``: the
    # noise of one piece is in memory at a time, as in an optimisation step.
    pieces = [min(batch_size, draws - lo) for lo in range(0, draws, batch_size)]
    gen = torch.Generator().manual_seed(seed)
    seeds = [seed] if len(pieces) == 1 else torch.randint(2**62, (len(pieces),), generator=gen)
    distortion = []
    with frozen(explainer.model), torch.no_grad():
        # One input at a time, as the optimiser goes: the memory does not grow with the batch.
        for i in range(x.shape[0]):
            total = torch.zeros((), dtype=torch.float64)
            for n, piece_seed in zip(pieces, seeds, strict=True):
                out = obfuscated_outputs(
                    explainer.model, x[i : i + 1], [m[i : i + 1] for m in mask],
                    representation=explainer.representation, obfuscation=explainer.obfuscation,
                    samples=n, seed=int(piece_seed), clip=cfg.clip, model_output=cfg.model_output,
                    batch_size=batch_size,
                )  # fmt: skip
                d = get_distortion(cfg.distortion)(
                    reference[i : i + 1].to(out), out, target[i : i + 1].to(out.device)
                )
                total += d.sum().double().cpu()
            distortion.append(cfg.distortion_scale * total / draws)
        l1, pen = penalty(cfg, mask, x, explainer.representation)
    return Objective(
        distortion=torch.stack(distortion).float(),
        penalty=pen.detach().float().cpu(),
        l1=l1.detach().float().cpu(),
        draws=draws,
    )


def against_empty(
    explainer: RDE,
    x: Tensor,
    mask: Sequence[Tensor],
    *,
    probs: Tensor,
    target: Tensor,
    reference_output: Tensor | None = None,
    seed: int = 0,
) -> tuple[Objective, Objective]:
    """The objective of ``mask`` and of the empty mask, on the same draws (:func:`mask_objective`
    with one ``seed``): what every explanation is checked with (:func:`empty_warning`)."""
    found, empty = (
        mask_objective(
            explainer,
            x,
            m,
            probs=probs,
            target=target,
            reference_output=reference_output,
            seed=seed,
        )  # fmt: skip
        for m in (mask, [torch.zeros_like(b) for b in mask])
    )
    return found, empty


def empty_warning(
    found: Objective,
    empty: Objective,
    index: int = 0,
    *,
    lambda_k: float,
    label: str,
    prob: float | None,
) -> str | None:
    """The warning for input ``index`` when the empty mask scores as well as the explanation
    (within :data:`EMPTY_TIE`), with the ``lambda_k`` below which the explanation would win;
    ``None`` otherwise.

    Args:
        found: The explanation's objective.
        empty: The empty mask's, on the same draws.
        index: Which input.
        lambda_k: The sparsity level used.
        label: Name of the explained label.
        prob: The model's probability of the label for the input (``None`` for raw outputs).
    """
    ours, nothing = float(found.value[index]), float(empty.value[index])
    if not nothing <= EMPTY_TIE * ours:
        return None
    l1 = float(found.l1[index])
    spatial = float(found.penalty[index]) - lambda_k * l1
    # With lambda_k' the explanation scores distortion + lambda_k' * l1 + spatial.
    saved = nothing - float(found.distortion[index]) - spatial
    if l1 > DENSE_MASK:
        # The mask has hardly left ones: the run stopped before it became sparse.
        why = (
            f"the mask is still dense (mean entry {l1:.2f}): the run probably stopped before it "
            "became sparse; try more --steps"
        )
    else:
        # Not "little distortion" as such (p = 0.97 costs 0.94), only no more than what the
        # explanation pays in all: a weak label for this lambda_k, or a run not yet converged.
        given = f"the model gives {label} probability {prob:.2g}; " if prob is not None else ""
        why = (
            f"{given}removing the whole image costs {float(empty.distortion[index]):.3g} in "
            "distortion, no more than this explanation costs in all: either the label is weakly "
            "supported at this lambda_k (a run can as well end empty, the paper's appendix A.8) "
            "or the run stopped before it converged (try more --steps)"
        )
    hint = (
        f"this mask would beat it with lambda_k below {saved / l1:.3g}, and a rerun at a lower "
        "lambda_k keeps more: try --lambda-k well below that, or --keep-probability"
        if saved > 0 and l1 > 0
        else "the kept parts do not lower the distortion: check the target (--target)"
    )
    return (
        f"deleting everything scores as well or better by the RDE objective (an empty mask "
        f"{nothing:.3g}, this explanation {ours:.3g}; {found.draws} noise draws): {why}. The "
        f"objective does not prefer this picture to an empty one; {hint}"
    )
