"""Shared type aliases and protocols of the RDE framework.

An explanation is a mask ``s`` in ``[0, 1]^k`` over the coefficients ``h`` of a representation
``x = f(h)``. The three exchangeable parts of every method are a :class:`Representation`
(``rdex.representations``), an obfuscation strategy (``rdex.obfuscations``) and a distortion
measure (``rdex.distortions``).

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, section 4.1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeAlias

from torch import Tensor

#: Coefficients of a representation: a list of bands, each of shape ``(B, ...)``.
Bands: TypeAlias = list[Tensor]

#: A distortion measure ``d(reference, outputs, target) -> (B, L)``; ``reference`` has shape
#: ``(B, m)`` (the model output for the original input, or a user-given target output), ``outputs``
#: has shape ``(B, L, m)`` (the outputs for ``L`` obfuscations per image) and ``target`` has shape
#: ``(B,)`` (the explained label per image).
Distortion: TypeAlias = Callable[[Tensor, Tensor, Tensor], Tensor]

#: Names of the built-in obfuscation strategies (``rdex.obfuscations.make_obfuscation``).
ObfuscationName: TypeAlias = Literal["gaussian", "uniform", "zeros", "constant", "blur"]

#: Learning-rate schedules of the optimiser.
Schedule: TypeAlias = Literal["constant", "cosine"]

#: How the model output is turned into the vector the distortion compares.
ModelOutput: TypeAlias = Literal["softmax", "identity"]

#: What :attr:`rdex.rde.RDEResult.explanation` shows.
ExplanationKind: TypeAlias = Literal["greyscale", "mask", "retained"]

#: Shape of one input without its batch dimension, e.g. ``(C, H, W)``.
InputShape: TypeAlias = Sequence[int]
