"""What an RDE optimisation returns: :class:`RDEResult`, and the pictures made from a mask.

:func:`greyscale_picture` is CartoonX's explanation image (the mask applied to the greyscale
image's coefficients); :func:`pictures` makes every kind of explanation image the optimiser
returns. The benchmark's scorer and the spatial penalty of ShearletX and WaveletX use the same
function, so what is scored and penalised is the picture a user sees.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, section 4.2 and Figure 7.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rdex.config import RDEConfig
from rdex.obfuscations import obfuscate
from rdex.representations import Representation
from rdex.types import ExplanationKind

__all__ = ["PER_INPUT_EXTRA", "RDEResult", "environment", "greyscale_picture", "pictures"]

#: Entries of :attr:`RDEResult.extra` that hold one item per input, in batch order: indexing a
#: result (``result[i]``) keeps input ``i``'s item of each; every other entry is the batch's.
PER_INPUT_EXTRA = ("objective", "empty_objective", "seeds", "seed_mask_flat")


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What decides an explanation's rounding besides its settings and seed: rdex and torch
    versions, the device, the CPU threads torch uses, the processor and the vector instructions
    torch's CPU kernels use.

    The optimisation turns a difference in the last bit of one model output into a different
    mask after some steps (docs/performance.md, "The same seed on another machine"), so the same
    settings and seed give the same explanation bit for bit only where all of these agree.
    """
    from rdex import __version__

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "rdex": __version__,
        "torch": torch.__version__,
        "device": str(device) if name is None else f"{device} ({name})",
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


@dataclass
class RDEResult:
    """Everything an RDE optimisation produced, for a batch of ``B`` inputs.

    Attributes:
        mask: Per band, the mask of shape ``(B, ...)`` (shared dimensions of size 1), in the
            representation's band order (for wavelets: pywt's ``wavedec2`` order).
        explanation: The picture of the explanation, ``(B, 1, H, W)`` in ``[0, 1]``: for CartoonX
            the masked greyscale image, for Pixel RDE the mask.
        explanation_rgb: The mask applied to every colour channel, inverted and clipped,
            ``(B, C, H, W)``.
        target: Explained label per input, ``(B,)``.
        probs: Model output for the inputs (post-softmax probabilities for classifiers), ``(B, m)``.
        history: Per-step ``distortion``, ``l1`` (mean mask value), ``loss`` and ``lr``, each
            ``(steps, B)`` (``lr``: ``(steps,)``).
        config: The settings used.
        band_names: Name of every band of the representation.
        runtime_s: Wall-clock time of the optimisation in seconds.
        method: Name of the method that produced the result.
        extra: Free-form metadata: ``representation``, ``obfuscation``, and ``environment``
            (:func:`environment`: what besides settings and seed decides the rounding); the
            entries named in :data:`PER_INPUT_EXTRA` hold one item per input.
        warnings: Per input, what makes its explanation doubtful (an empty list when nothing
            does): a (nearly) empty mask (largest entry below
            :data:`~rdex.checks.EMPTY_MASK` or picture below :data:`~rdex.checks.EMPTY_PICTURE`)
            or a target probability below :data:`~rdex.checks.LOW_TARGET_PROB`, each with its
            likely cause and what to try.
    """

    mask: list[Tensor]
    explanation: Tensor
    explanation_rgb: Tensor
    target: Tensor
    probs: Tensor
    history: dict[str, Tensor]
    config: RDEConfig
    band_names: list[str]
    runtime_s: float
    method: str = "rde"
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[list[str]] = field(default_factory=list)

    @property
    def mask_flat(self) -> Tensor:
        """The mask as one vector per input, ``(B, k)``."""
        return torch.cat([m.flatten(1) for m in self.mask], dim=1)

    @property
    def target_prob(self) -> Tensor:
        """Probability (model output) of the explained label for the original input, ``(B,)``."""
        return self.probs.gather(1, self.target.view(-1, 1)).squeeze(1)

    @property
    def final_distortion(self) -> Tensor:
        """Monte-Carlo distortion at the last step, ``(B,)`` (NaN after zero steps)."""
        hist = self.history["distortion"]
        return hist[-1] if len(hist) else torch.full((len(self),), float("nan"))

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def to(self, device: torch.device | str) -> RDEResult:
        """A copy with all tensors on ``device``."""
        return dataclasses.replace(
            self,
            mask=[m.to(device) for m in self.mask],
            explanation=self.explanation.to(device),
            explanation_rgb=self.explanation_rgb.to(device),
            target=self.target.to(device),
            probs=self.probs.to(device),
        )

    def __getitem__(self, i: int) -> RDEResult:
        """The result of input ``i`` alone (batch dimension kept, of size one)."""
        sl = slice(i, i + 1) if i >= 0 else slice(i, i + 1 or None)
        return dataclasses.replace(
            self,
            mask=[m[sl] for m in self.mask],
            explanation=self.explanation[sl],
            explanation_rgb=self.explanation_rgb[sl],
            target=self.target[sl],
            probs=self.probs[sl],
            history={k: (v if v.dim() == 1 else v[:, sl]) for k, v in self.history.items()},
            warnings=self.warnings[sl],
            extra={k: (v[sl] if k in PER_INPUT_EXTRA else v) for k, v in self.extra.items()},
        )


def greyscale_picture(
    x: Tensor,
    mask: Sequence[Tensor],
    representation: Representation,
    *,
    clip: tuple[float, float] | None = (0.0, 1.0),
    grey_bands: Sequence[Tensor] | None = None,
) -> Tensor:
    """CartoonX's explanation image: the mask on the greyscale image's coefficients, decoded and
    clipped, ``f(s * h_grey)``.

    Differentiable in ``mask`` (the spatial penalty of ShearletX and WaveletX is its mean).

    Args:
        x: Images ``(B, C, H, W)``.
        mask: Mask per band, ``(B, ...)`` (as :attr:`RDEResult.mask`).
        representation: The representation the mask lives in.
        clip: Range of the picture (``None``: no clipping).
        grey_bands: The coefficients of ``x.mean(dim=1, keepdim=True)`` if already computed.

    Returns:
        ``(B, 1, H, W)``.
    """
    if grey_bands is None:
        grey_bands = representation.encode(x.mean(dim=1, keepdim=True))
    shape = (1, *x.shape[2:])
    return obfuscate(representation, grey_bands, shape=shape, mask=mask, clip=clip)


def pictures(
    x: Tensor,
    bands: Sequence[Tensor],
    mask: Sequence[Tensor],
    representation: Representation,
    *,
    kind: ExplanationKind,
    clip: tuple[float, float] | None,
) -> tuple[Tensor, Tensor]:
    """The explanation images of a mask: :attr:`RDEResult.explanation` and
    :attr:`RDEResult.explanation_rgb`.

    Args:
        x: Inputs ``(B, ...)``, images ``(B, C, H, W)``.
        bands: Coefficients of ``x``.
        mask: Mask per band, ``(B, ...)``.
        representation: The representation the mask lives in.
        kind: ``"greyscale"`` (:func:`greyscale_picture`), ``"mask"`` (a pixel mask as it is) or
            ``"retained"`` (the masked input, mean of the channels).
        clip: Range of the pictures (``None``: no clipping).

    Returns:
        ``(picture, rgb)``: ``(B, 1, H, W)`` and the masked input ``f(s * h)``, ``(B, C, H, W)``.
    """
    rgb = obfuscate(representation, bands, shape=tuple(x.shape[1:]), mask=mask, clip=clip)
    if kind == "greyscale" and x.dim() == 4:
        picture = greyscale_picture(x, mask, representation, clip=clip)
    elif kind == "mask" and len(mask) == 1 and mask[0].shape[1:] == (1, *x.shape[2:]):
        picture = mask[0].clone()
    else:
        picture = rgb.mean(dim=1, keepdim=True) if rgb.dim() == 4 else rgb
    return picture, rgb
