"""Explanation methods as presets over the RDE core (:mod:`rdex.rde`), and the one registry of
every method (:mod:`rdex.methods.registry`)."""

from typing import Any, Protocol, cast

from torch import nn

from rdex.methods._preset import MethodPreset
from rdex.methods.cartoonx import CartoonX
from rdex.methods.pixel_rde import PixelRDE
from rdex.methods.registry import (
    MethodInfo,
    RegistryView,
    get_method,
    list_methods,
    method_choices,
    method_title,
    paper_methods,
    register_method,
    resolve_methods,
)
from rdex.methods.shearletx import ShearletX
from rdex.methods.waveletx import WaveletX


class MethodClass(Protocol):
    """What the RDE method classes share: a name, a default sparsity and their constructor."""

    method: str
    default_lambda_k: float

    def __call__(self, model: nn.Module, **kwargs: Any) -> MethodPreset: ...


#: The RDE method classes by name: a live view of the registry (``kind="rde"``).
METHODS: RegistryView[MethodClass] = RegistryView(
    lambda info: cast(MethodClass, info.factory), kind="rde"
)

__all__ = [
    "CartoonX",
    "PixelRDE",
    "ShearletX",
    "WaveletX",
    "METHODS",
    "MethodClass",
    "MethodInfo",
    "MethodPreset",
    "get_method",
    "list_methods",
    "method_choices",
    "method_title",
    "paper_methods",
    "register_method",
    "resolve_methods",
]
