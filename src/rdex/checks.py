"""Checks of what goes into and comes out of an explanation: clear errors, honest warnings.

Inputs, options and target labels are checked once, here, with messages a user can act on (a
raw torch error names no cause); an explanation that is empty, of a label the model does not see,
or no better by the objective than deleting everything carries a warning with its likely cause
and what to try.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, appendix A.8 (a too
    high lambda deletes everything).
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from rdex.config import RDEConfig
    from rdex.objective import Objective

__all__ = [
    "ModelError",
    "NonFiniteError",
    "EMPTY_MASK",
    "EMPTY_PICTURE",
    "LOW_TARGET_PROB",
    "check_inputs",
    "check_images",
    "explanation_warnings",
    "mask_warnings",
    "resolve_target",
    "finite_number",
    "integer",
    "check_model_output",
    "check_reference_output",
]

#: An explanation whose largest mask entry is below this is reported as (nearly) empty.
EMPTY_MASK = 1e-2
#: An explanation whose picture's largest value is below this is reported as (nearly) empty.
EMPTY_PICTURE = 1e-3
#: A target label whose probability for the input is below this is reported as unsupported.
LOW_TARGET_PROB = 1e-3


class ModelError(ValueError):
    """The model cannot be explained on these inputs (it fails on them, or its output is not
    ``(B, m)``); the message says why."""


class NonFiniteError(ValueError):
    """A NaN or Inf appeared (in the model's output, the loss or its gradient); the message says
    where. rdex raises this instead of returning NaN masks."""


def finite_number(name: str, value: Any) -> float:
    """``value`` as a float; a ``ValueError`` naming ``name`` unless it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def integer(name: str, value: Any) -> int:
    """``value`` as an int; a ``ValueError`` naming ``name`` unless it is an integer."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def check_inputs(x: Any, *, clip: tuple[float, float] | None = (0.0, 1.0)) -> Tensor:
    """Check a batch of inputs ``(B, ...)`` once, with messages a user can act on.

    Args:
        x: The inputs: a floating-point tensor with a batch dimension, no NaN or Inf, values in
            ``clip``.
        clip: The range the values must lie in (``None``: any finite values).

    Returns:
        ``x`` itself.

    Raises:
        TypeError: Not a tensor, or not floating point (integer images: ``x.float() / 255``).
        ValueError: No batch dimension, no elements, NaN or Inf values, values outside ``clip``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"inputs must be a torch.Tensor of shape (B, ...), got {type(x).__name__} "
            "(convert with torch.as_tensor)"
        )
    if x.dim() < 2:
        raise ValueError(f"inputs need a batch dimension, shape (B, ...); got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"inputs are empty: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(
            f"inputs must be floating point with values in [0, 1], got {x.dtype} "
            "(8-bit images: x.float() / 255)"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError("inputs contain NaN or Inf values")
    if clip is not None and (x.min() < clip[0] or x.max() > clip[1]):
        raise ValueError(
            f"inputs must lie in [{clip[0]}, {clip[1]}] (got [{float(x.min()):.3g}, "
            f"{float(x.max()):.3g}]); normalisation belongs inside the model"
        )
    return x


def check_images(x: Any) -> Tensor:
    """Images ``(B, C, H, W)`` from images or one image ``(C, H, W)``; other shapes are refused.

    Raises:
        TypeError: Not a tensor.
        ValueError: Not 3 or 4 dimensions.
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"images must be a torch.Tensor of shape (B, C, H, W) or (C, H, W), got "
            f"{type(x).__name__}"
        )
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    return x


def explanation_warnings(
    *, mask_max: float, picture_max: float, target_prob: float, label: str, lambda_k: float
) -> list[str]:
    """What makes one explanation doubtful, with the likely cause and what to try.

    Args:
        mask_max: Largest mask entry.
        picture_max: Largest value of the explanation picture.
        target_prob: The model's probability (output) of the explained label for the input.
        label: Name of the explained label.
        lambda_k: The sparsity level used.

    References:
        Kolek et al., ECCV 2022, appendix A.8 (a too high lambda deletes everything).
    """
    notes = []
    unsupported = target_prob < LOW_TARGET_PROB
    if unsupported:
        notes.append(
            f"the model gives {label} probability {target_prob:.2g} for this image (below "
            f"{LOW_TARGET_PROB:g}): there is almost no support for that label to explain; check "
            "the target (--target) or explain the predicted label"
        )
    if mask_max < EMPTY_MASK or picture_max < EMPTY_PICTURE:
        cause = (
            "no support for the label in the image"
            if unsupported
            else f"lambda_k={lambda_k:g} is probably too high for this image (the paper's "
            "appendix A.8 failure mode): try a lower lambda_k (--lambda-k)"
        )
        notes.append(
            f"the explanation is (nearly) empty (largest mask entry {mask_max:.2g}, picture "
            f"maximum {picture_max:.2g}); likely cause: {cause}"
        )
    return notes


def mask_warnings(
    mask: Sequence[Tensor],
    explanation: Tensor,
    *,
    probs: Tensor,
    target: Tensor,
    config: RDEConfig,
    labels: Sequence[str] | None = None,
    objective: Objective | None = None,
    empty: Objective | None = None,
) -> list[list[str]]:
    """Per input, what makes its explanation doubtful: :func:`explanation_warnings`, and when
    none of those applies, :func:`rdex.objective.empty_warning` (deleting everything scores as
    well) if both objectives are given.

    Args:
        mask: Mask per band, ``(B, ...)``.
        explanation: Its pictures, ``(B, 1, H, W)``.
        probs: The model's output for the inputs, ``(B, m)``.
        target: The explained label per input, ``(B,)``.
        config: The settings (``lambda_k``, ``model_output``).
        labels: Class names.
        objective, empty: The mask's and the empty mask's objective on the same draws.
    """
    from rdex.objective import empty_warning

    softmax = config.model_output == "softmax"
    warnings = []
    for i, j in enumerate(target.tolist()):
        label = repr(labels[j]) if labels and j < len(labels) else f"label {j}"
        # Raw outputs ("identity") are no probabilities: only the mask is judged.
        prob = float(probs[i, j]) if softmax else 1.0
        notes = explanation_warnings(
            mask_max=max(float(m[i].max()) for m in mask),
            picture_max=float(explanation[i].max()),
            target_prob=prob,
            label=label,
            lambda_k=config.lambda_k,
        )
        if objective is not None and empty is not None and not notes:
            note = empty_warning(objective, empty, i, lambda_k=config.lambda_k, label=label,
                                 prob=prob if softmax else None)  # fmt: skip
            notes += [note] if note else []
        warnings.append(notes)
    return warnings


def resolve_target(
    model: nn.Module, probs: Tensor, target: int | str | Sequence[int | str] | Tensor | None
) -> Tensor:
    """Explained label per input: the prediction by default, or labels given by index or name.

    Labels are looked up with :func:`rdex.models.resolve_label`, the one label lookup of rdex
    (indices, class names, WordNet synonyms and ids such as ``"n02123045"`` for ImageNet models).

    Raises:
        TypeError: ``target`` is not an index, a name, a sequence of them or an integer tensor.
        ValueError: An unknown or ambiguous name, an index out of range, or a count that does
            not match the batch.
    """
    from rdex.models import resolve_label

    batch = probs.shape[0]
    if target is None:
        return probs.argmax(dim=1)
    if isinstance(target, Tensor):
        if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
            raise TypeError(f"a target tensor must hold integer class indices, got {target.dtype}")
        items: list[Any] = target.flatten().tolist()
    elif isinstance(target, str | numbers.Integral):
        items = [target]
    elif isinstance(target, Sequence) and not isinstance(target, bytes):
        items = list(target)
    else:
        raise TypeError(
            "target must be a class index, a label name, a sequence of them or an integer "
            f"tensor, got {target!r}"
        )
    values = torch.tensor(
        [resolve_label(model, item) for item in items], device=probs.device, dtype=torch.long
    )
    if values.numel() == 1:
        values = values.expand(batch).clone()
    if values.numel() != batch:
        raise ValueError(f"{values.numel()} targets for {batch} inputs")
    if bool(((values < 0) | (values >= probs.shape[1])).any()):
        raise ValueError(f"target out of range [0, {probs.shape[1]}): {values.tolist()}")
    return values


def check_model_output(probs: Tensor, batch: int) -> None:
    """A ``ModelError`` unless the model's output for ``batch`` inputs is ``(B, m)``, a
    ``NonFiniteError`` if it holds NaN or Inf."""
    if probs.dim() != 2 or probs.shape[0] != batch or probs.shape[1] < 1:
        raise ModelError(
            f"the model must return outputs of shape (B, m) = ({batch}, m), got "
            f"{tuple(probs.shape)}"
        )
    if not bool(torch.isfinite(probs).all()):
        raise NonFiniteError(
            "the model's output for the inputs contains NaN or Inf; nothing can be explained"
        )


def check_reference_output(reference_output: Tensor | None, probs: Tensor) -> Tensor | None:
    """The caller's reference output (``(B, m)``, ``(1, m)`` or ``(m,)``) as one row per input of
    ``probs`` (the model's outputs ``(B, m)``); a ``ValueError`` if it does not fit."""
    if reference_output is None:
        return None
    batch, m = probs.shape
    if reference_output.numel() % m:
        raise ValueError(
            f"reference_output of shape {tuple(reference_output.shape)} does not fit "
            f"the model's {m} outputs"
        )
    given = reference_output.to(probs).reshape(-1, m)
    given = given.expand(batch, -1) if given.shape[0] == 1 else given
    if given.shape[0] != batch:
        raise ValueError(f"reference_output has {given.shape[0]} rows for {batch} inputs")
    return given
