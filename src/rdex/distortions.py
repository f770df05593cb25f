"""Distortion measures ``d(Phi(x), Phi(y))`` between model outputs.

Every distortion takes ``reference`` of shape ``(B, m)`` (the model output for the original input, or
any target output a user gives, as in the explanation-artifact experiment of appendix A.4),
``outputs`` of shape ``(B, L, m)`` for ``L`` obfuscations per image, and ``target`` of shape ``(B,)``
(the explained label), and returns ``(B, L)``. Outputs are post-softmax probabilities unless the
model output mode says otherwise.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, sections 4.1.3 and
    appendix A.3.3.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rdex.types import Distortion

__all__ = [
    "squared_label",
    "maximize_label",
    "l2",
    "kl_divergence",
    "DISTORTIONS",
    "get_distortion",
]

_EPS = 1e-12


def _label(values: Tensor, target: Tensor) -> Tensor:
    index = target.view(-1, *([1] * (values.dim() - 1)))
    return values.gather(-1, index.expand(*values.shape[:-1], 1)).squeeze(-1)


def squared_label(reference: Tensor, outputs: Tensor, target: Tensor) -> Tensor:
    """``(Phi_j(x) - Phi_j(y))^2`` for the explained label ``j`` (the paper's default)."""
    return (_label(reference, target).unsqueeze(1) - _label(outputs, target)) ** 2


def maximize_label(reference: Tensor, outputs: Tensor, target: Tensor) -> Tensor:
    """``(1 - Phi_j(y))^2``: push the label's probability towards one (A.3.3, "maximize label")."""
    return (1.0 - _label(outputs, target)) ** 2


def l2(reference: Tensor, outputs: Tensor, target: Tensor) -> Tensor:
    """``||Phi(x) - Phi(y)||_2`` over all outputs (A.3.3, "l2 probabilities")."""
    return torch.linalg.vector_norm(reference.unsqueeze(1) - outputs, dim=-1)


def kl_divergence(reference: Tensor, outputs: Tensor, target: Tensor) -> Tensor:
    """``KL(Phi(y) || Phi(x)) = sum_i Phi_i(y) log(Phi_i(y) / Phi_i(x))`` (A.3.3).

    The gradient is taken as ``sum_i (log Phi_i(y) - log Phi_i(x)) dPhi_i(y)``: the other part,
    ``sum_i Phi_i(y) dlog Phi_i(y) = d sum_i Phi_i(y)``, is zero for probabilities and would
    only carry round-off (``sum_i Phi_i(y)`` is 1 up to float rounding), which Adam turns into
    full-size steps. So, as for the other distortions, the value and the gradient are exactly
    zero where ``Phi(y) == Phi(x)``.
    """
    p = outputs.clamp_min(_EPS)
    q = reference.unsqueeze(1).clamp_min(_EPS)
    return (p * (p.log().detach() - q.log())).sum(dim=-1)


DISTORTIONS: dict[str, Distortion] = {
    "label": squared_label,
    "max-label": maximize_label,
    "l2": l2,
    "kl": kl_divergence,
}


def get_distortion(spec: str | Distortion) -> Distortion:
    """A distortion from its name in :data:`DISTORTIONS` or a callable with the same signature."""
    if callable(spec):
        return spec
    try:
        return DISTORTIONS[spec]
    except KeyError:
        raise ValueError(
            f"unknown distortion {spec!r}; choose from {', '.join(DISTORTIONS)}"
        ) from None
