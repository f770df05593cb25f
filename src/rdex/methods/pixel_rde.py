"""Pixel RDE: RDE on pixels (Macdonald et al., 2019), the paper's main point of comparison."""

from __future__ import annotations

from typing import Any

from torch import nn

from rdex.methods._preset import MethodPreset
from rdex.methods.registry import register_method
from rdex.obfuscations import Obfuscation
from rdex.rde import RDEConfig
from rdex.representations import Pixel
from rdex.types import Distortion


@register_method("pixel-rde", title="Pixel RDE", aliases=("pixel",), cmap="viridis", paper=True)
class PixelRDE(MethodPreset):
    """Pixel RDE: pixel representation, one adaptive Gaussian over all pixels, mask ``(B, 1, H, W)``
    shared by the colour channels. ``explanation`` is the mask itself.

    Args:
        model: Classifier taking images in ``[0, 1]``.
        preset: Named schedule (``"paper"``, ``"fast"``, ``"preview"``, ``"thorough"``).
        lambda_k: Sparsity ``lambda * k``; the paper uses [3, 20]. Default 4, as in the authors'
            configuration file.
        obfuscation, distortion, config, **overrides: As for :class:`~rdex.methods.CartoonX`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        >>> x = torch.rand(2, 3, 64, 64)  # two images in [0, 1]
        >>> from rdex import PixelRDE
        >>> result = PixelRDE(model, preset="preview", steps=3, samples=2).explain(x, target=1)
        >>> result.mask[0].shape  # one entry per pixel, shared by the colour channels
        torch.Size([2, 1, 64, 64])
        >>> result.target.tolist()
        [1, 1]

    References:
        Macdonald et al., "A Rate-Distortion Framework for Explaining Neural Network Decisions",
        2019; Kolek et al., ECCV 2022, section 3 and appendix A.2.
    """

    default_lambda_k = 4.0

    def __init__(
        self,
        model: nn.Module,
        *,
        preset: str = "paper",
        lambda_k: float | None = None,
        obfuscation: Obfuscation | str = "gaussian",
        distortion: str | Distortion | None = None,
        config: RDEConfig | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(
            model,
            Pixel(),
            obfuscation,
            preset_name=preset,
            lambda_k=lambda_k,
            distortion=distortion,
            explanation="mask",
            config=config,
            **overrides,
        )
