"""CartoonX: RDE in the wavelet domain, visualised as a piece-wise smooth image."""

from __future__ import annotations

from typing import Any

from torch import nn

from rdex.methods._preset import MethodPreset
from rdex.methods.registry import register_method
from rdex.obfuscations import Obfuscation
from rdex.rde import RDEConfig
from rdex.representations import Wavelet
from rdex.types import Distortion


@register_method("cartoonx", title="CartoonX", paper=True)
class CartoonX(MethodPreset):
    """CartoonX (Algorithm 1): DWT (db3, 5 scales, zero padding), adaptive Gaussian noise per
    scale, squared difference of the label's probability.

    ``CartoonX(model).explain(x)`` returns an :class:`~rdex.rde.RDEResult` whose ``explanation`` is
    the mask applied to the DWT of the greyscale image, inverted and clipped to ``[0, 1]`` (the last
    three lines of Algorithm 1), and whose ``explanation_rgb`` applies the mask to every colour
    channel instead.

    Args:
        model: Classifier taking images in ``[0, 1]`` (see :func:`rdex.models.load_classifier`).
        preset: ``"paper"`` (lr 0.001, N 2000, L 64: appendix A.2), ``"fast"``, ``"preview"``
            or ``"thorough"`` (see :data:`rdex.rde.PRESETS`).
        lambda_k: Sparsity ``lambda * k``; the paper uses values in [20, 80]. Default 20, as in the
            authors' configuration file.
        wavelet, levels, mode: The DWT.
        obfuscation: Obfuscation strategy (default adaptive Gaussian per scale).
        distortion: Distortion name or callable (default: the config's, ``"label"``).
        config: A full :class:`~rdex.rde.RDEConfig` instead of a preset.
        **overrides: Any other config field (``steps``, ``samples``, ``lr``, ``seed``, ...).

    Examples:
        Explain two images with a tiny classifier and a very short schedule (use
        ``rdex.load_classifier()`` and ``preset="fast"`` or ``"paper"`` for real explanations):

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        >>> x = torch.rand(2, 3, 64, 64)  # two images in [0, 1]
        >>> from rdex import CartoonX
        >>> result = CartoonX(model, preset="preview", steps=3, samples=2).explain(x)
        >>> result.explanation.shape  # the piece-wise smooth picture, one per image
        torch.Size([2, 1, 64, 64])
        >>> len(result.mask)  # one mask per DWT band: approximation + 5 detail scales
        6
        >>> bool(((result.mask_flat >= 0) & (result.mask_flat <= 1)).all())
        True

    References:
        Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, section 5 and A.1-A.2.
    """

    default_lambda_k = 20.0

    def __init__(
        self,
        model: nn.Module,
        *,
        preset: str = "paper",
        lambda_k: float | None = None,
        wavelet: str = "db3",
        levels: int = 5,
        mode: str = "zero",
        obfuscation: Obfuscation | str = "gaussian",
        distortion: str | Distortion | None = None,
        config: RDEConfig | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(
            model,
            Wavelet(wavelet, levels=levels, mode=mode),
            obfuscation,
            preset_name=preset,
            lambda_k=lambda_k,
            distortion=distortion,
            explanation="greyscale",
            config=config,
            **overrides,
        )
