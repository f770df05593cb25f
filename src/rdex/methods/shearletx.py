"""ShearletX: RDE over shearlet coefficients with a spatial penalty (Kolek et al., CVPR 2023).

ShearletX and WaveletX share one objective (section 3 of the paper): for a mask ``s`` on the
coefficients ``h = T(x)`` of a representation ``T`` (shearlets, or the DWT for WaveletX),

    min_s  E_v[ d(x, T^-1(s * h + (1 - s) * v)) ] + lambda_1 * mean(s)
           + lambda_2 * mean |T^-1(s * h_grey)|,

where ``d`` is the distortion (``max-label``: ``(1 - p_c(y))^2``, the label's probability pushed
towards one), ``v`` adaptive uniform noise and the last term the spatial penalty on the masked
greyscale image (clipped to ``[0, 1]``), which keeps explanations from holding large smooth
areas. In rdex's terms ``lambda_1`` is ``lambda_k`` and ``lambda_2`` is
:attr:`rdex.rde.RDEConfig.spatial_l1`. The weights are those of the authors' experiments
(ShearletX: 1 and 2; WaveletX: 2 and 10), as is the schedule (Adam, learning rate 0.1, 300 steps,
16 noise samples, the mask initialised to ones).

References:
    Kolek, Windesheim, Andrade-Loarca, Kutyniok, Levie, "Explaining Image Classifiers with
    Multiscale Directional Image Representation", CVPR 2023, sections 3 and 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from rdex.methods._preset import MethodPreset
from rdex.methods.registry import register_method
from rdex.obfuscations import Obfuscation
from rdex.rde import RDEConfig, preset
from rdex.shearlets import Shearlet
from rdex.types import Distortion

__all__ = ["ShearletX", "PAPER_SCHEDULE", "spatial_config"]

#: The optimiser settings of the ShearletX paper's experiments (what ``preset="paper"`` means for
#: ShearletX and WaveletX; for CartoonX ``"paper"`` is the ECCV paper's appendix A.2).
PAPER_SCHEDULE: dict[str, Any] = {"steps": 300, "samples": 16, "lr": 0.1, "schedule": "constant"}


def spatial_config(
    method: Any,
    preset_name: str,
    config: RDEConfig | None,
    lambda_k: float | None,
    spatial_l1: float | None,
) -> RDEConfig:
    """The config of a method with a spatial penalty (ShearletX, WaveletX).

    ``preset_name="paper"`` is :data:`PAPER_SCHEDULE`, other names are :data:`rdex.rde.PRESETS`.
    ``lambda_k`` and ``spatial_l1`` given here win; otherwise a full ``config`` keeps its own
    ``lambda_k``, its distortion and, when it sets one, its ``spatial_l1``; otherwise the method's
    defaults apply (``max-label``, the weights of :attr:`default_lambda_k` and
    :attr:`default_spatial_l1`).
    """
    if config is None:
        base = RDEConfig(**PAPER_SCHEDULE) if preset_name == "paper" else preset(preset_name)
        base = base.replace(lambda_k=method.default_lambda_k, distortion=method.default_distortion)
    else:
        base = config
    if spatial_l1 is None:
        spatial_l1 = base.spatial_l1 if config is not None and base.spatial_l1 > 0 else None
    if spatial_l1 is None:
        spatial_l1 = method.default_spatial_l1
    return base.replace(lambda_k=lambda_k, spatial_l1=spatial_l1)


@register_method("shearletx", title="ShearletX")
class ShearletX(MethodPreset):
    """ShearletX: a mask on every digital shearlet coefficient (:class:`rdex.shearlets.Shearlet`,
    4 scales), adaptive uniform noise per scale, the ``max-label`` distortion, mask sparsity
    ``lambda_k`` and the spatial penalty ``spatial_l1`` on the masked greyscale image.

    ``explanation`` is the mask applied to the shearlet coefficients of the greyscale image,
    inverted and clipped to ``[0, 1]``; ``explanation_rgb`` applies it to every colour channel
    (the paper's figures).

    Args:
        model: Classifier taking images in ``[0, 1]``.
        preset: ``"paper"`` (the ShearletX paper: lr 0.1, 300 steps, 16 samples) or a named
            schedule of :data:`rdex.rde.PRESETS` (``"fast"``, ``"preview"``).
        lambda_k: Mask sparsity ``lambda_1`` (default 1, the paper's).
        spatial_l1: Weight ``lambda_2`` of the spatial penalty (default 2, the paper's; 0: off).
        scales, shear_levels: The shearlet system (see :class:`~rdex.shearlets.Shearlet`).
        obfuscation: Obfuscation strategy (default adaptive uniform noise, the paper's).
        distortion: Distortion name or callable. ``None`` (default): ``"max-label"``, or the
            distortion of ``config`` when one is given (a default argument never replaces what
            the caller configured, as for every method).
        config: A full :class:`~rdex.rde.RDEConfig` instead of a preset.
        **overrides: Any other config field (``steps``, ``samples``, ``lr``, ``seed``, ...).

    References:
        Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image
        Representation", CVPR 2023, section 3.
    """

    default_lambda_k = 1.0
    default_distortion = "max-label"
    default_spatial_l1 = 2.0

    def __init__(
        self,
        model: nn.Module,
        *,
        preset: str = "paper",
        lambda_k: float | None = None,
        spatial_l1: float | None = None,
        scales: int = 4,
        shear_levels: Sequence[int] | None = None,
        obfuscation: Obfuscation | str = "uniform",
        distortion: str | Distortion | None = None,
        config: RDEConfig | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(
            model,
            Shearlet(scales, shear_levels=shear_levels),
            obfuscation,
            preset_name=preset,
            lambda_k=None,
            distortion=distortion,
            explanation="greyscale",
            config=spatial_config(self, preset, config, lambda_k, spatial_l1),
            **overrides,
        )
