"""Explanation methods as presets over the RDE core (:mod:`rdex.rde`)."""

from typing import Any, Protocol

from torch import nn

from rdex.methods._preset import MethodPreset
from rdex.methods.cartoonx import CartoonX
from rdex.methods.pixel_rde import PixelRDE
from rdex.methods.shearletx import ShearletX
from rdex.methods.waveletx import WaveletX


class MethodClass(Protocol):
    """What the RDE method classes share: a name, a default sparsity and their constructor."""

    method: str
    default_lambda_k: float

    def __call__(self, model: nn.Module, **kwargs: Any) -> MethodPreset: ...


#: CLI names of the RDE methods.
METHODS: dict[str, MethodClass] = {
    "cartoonx": CartoonX,
    "pixel-rde": PixelRDE,
    "shearletx": ShearletX,
    "waveletx": WaveletX,
}

__all__ = [
    "CartoonX",
    "PixelRDE",
    "ShearletX",
    "WaveletX",
    "METHODS",
    "MethodClass",
    "MethodPreset",
]
