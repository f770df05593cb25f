"""Model calls shared by the metrics: outputs in chunks, the explained label."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rdex.types import ModelOutput


def _model_output(model: nn.Module, y: Tensor, mode: ModelOutput) -> Tensor:
    out = model(y).float()
    return torch.softmax(out, dim=-1) if mode == "softmax" else out


def _outputs(
    model: nn.Module, y: Tensor, mode: ModelOutput, batch_size: int | None = None
) -> Tensor:
    """Model outputs for a stack of inputs, in chunks of ``batch_size``."""
    if batch_size is None or y.shape[0] <= batch_size:
        return _model_output(model, y, mode)
    return torch.cat(
        [
            _model_output(model, y[i : i + batch_size], mode)
            for i in range(0, y.shape[0], batch_size)
        ]
    )


def _target_index(
    model: nn.Module, x: Tensor, target: Any, mode: ModelOutput, probs: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    from rdex.rde import resolve_target

    if probs is None:
        probs = _model_output(model, x, mode)
    return resolve_target(model, probs, target), probs
