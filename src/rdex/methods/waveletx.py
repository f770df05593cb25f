"""WaveletX: CartoonX's wavelet mask with ShearletX's objective (Kolek et al., CVPR 2023)."""

from __future__ import annotations

from typing import Any

from torch import nn

from rdex.methods._preset import MethodPreset
from rdex.methods.registry import register_method
from rdex.methods.shearletx import spatial_config
from rdex.obfuscations import Obfuscation
from rdex.rde import RDEConfig
from rdex.representations import Wavelet
from rdex.types import Distortion

__all__ = ["WaveletX"]


@register_method("waveletx", title="WaveletX")
class WaveletX(MethodPreset):
    """WaveletX: DWT (db3, 5 scales, zero padding, as CartoonX), adaptive uniform noise per scale,
    the ``max-label`` distortion, mask sparsity ``lambda_k`` and the spatial penalty
    ``spatial_l1`` on the masked greyscale image (see :mod:`rdex.methods.shearletx` for the
    objective).

    Args:
        model: Classifier taking images in ``[0, 1]``.
        preset: ``"paper"`` (the ShearletX paper: lr 0.1, 300 steps, 16 samples) or a named
            schedule of :data:`rdex.rde.PRESETS`.
        lambda_k: Mask sparsity ``lambda_1`` (default 2, the paper's).
        spatial_l1: Weight ``lambda_2`` of the spatial penalty (default 10, the paper's; 0: off).
        wavelet, levels, mode: The DWT.
        obfuscation, distortion, config, **overrides: As for :class:`~rdex.methods.ShearletX`.

    References:
        Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image
        Representation", CVPR 2023, sections 3 and 4.
    """

    default_lambda_k = 2.0
    default_distortion = "max-label"
    default_spatial_l1 = 10.0

    def __init__(
        self,
        model: nn.Module,
        *,
        preset: str = "paper",
        lambda_k: float | None = None,
        spatial_l1: float | None = None,
        wavelet: str = "db3",
        levels: int = 5,
        mode: str = "zero",
        obfuscation: Obfuscation | str = "uniform",
        distortion: str | Distortion | None = None,
        config: RDEConfig | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(
            model,
            Wavelet(wavelet, levels=levels, mode=mode),
            obfuscation,
            preset_name=preset,
            lambda_k=None,
            distortion=distortion,
            explanation="greyscale",
            config=spatial_config(self, preset, config, lambda_k, spatial_l1),
            **overrides,
        )
