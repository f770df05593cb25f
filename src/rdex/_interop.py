"""What the captum and Quantus adapters share: their users' input spaces and target conventions.

rdex explains images in ``[0, 1]`` with the normalisation inside the model (see
:mod:`rdex.models`). captum and Quantus users usually hold a network that takes *normalised*
batches and pass those batches. :class:`InputSpace` maps such a batch back to ``[0, 1]`` and wraps
the network so that it takes ``[0, 1]`` images again; :func:`captum_target` turns captum's target
conventions into rdex's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["InputSpace", "UnitModel", "captum_target"]


class UnitModel(nn.Module):
    """A network on normalised inputs as a classifier on ``[0, 1]`` images.

    ``forward(x) = model(scale * x + shift)``; outputs with a ``.logits`` attribute (transformers)
    are unwrapped. The network is held, not copied: rdex's explainers run it through
    :func:`rdex.rde.frozen`, which restores its training and gradient flags afterwards. The label
    lookup of an rdex :class:`~rdex.models.Classifier` passes through, so targets can be names.
    """

    scale: Tensor
    shift: Tensor

    def __init__(self, model: Callable[[Tensor], Any], scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        self.inner = model  # a Module is registered (frozen() reaches it); a function is kept
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        lookup = getattr(model, "label_index", None)
        if lookup is not None:
            self.label_index = lookup

    def forward(self, x: Tensor) -> Tensor:
        out = self.inner(x * self.scale.to(x) + self.shift.to(x))
        logits = getattr(out, "logits", out)
        if not isinstance(logits, Tensor):
            raise TypeError(f"the model returned {type(out).__name__}, not a tensor of logits")
        return logits


@dataclass(frozen=True)
class InputSpace:
    """The per-channel affine map ``normalised = scale * x + shift`` from ``[0, 1]`` images.

    Attributes:
        scale: ``(1, C, 1, 1)``; ``1 / std`` for mean/std normalisation.
        shift: ``(1, C, 1, 1)``; ``-mean / std``.
    """

    scale: Tensor
    shift: Tensor

    @classmethod
    def identity(cls, channels: int) -> InputSpace:
        """Inputs already in ``[0, 1]``."""
        return cls(torch.ones(1, channels, 1, 1), torch.zeros(1, channels, 1, 1))

    @classmethod
    def from_mean_std(cls, mean: Sequence[float], std: Sequence[float]) -> InputSpace:
        """``(x - mean) / std`` per channel (torchvision's ``Normalize``)."""
        m = torch.as_tensor(mean, dtype=torch.float64).flatten()
        s = torch.as_tensor(std, dtype=torch.float64).flatten()
        if m.shape != s.shape or not len(m):
            raise ValueError(f"mean {m.tolist()} and std {s.tolist()} must have the same length")
        if bool((s <= 0).any()):
            raise ValueError(f"std must be positive, got {s.tolist()}")
        return cls((1.0 / s).view(1, -1, 1, 1), (-m / s).view(1, -1, 1, 1))

    @classmethod
    def from_callable(
        cls, normalise: Callable[[Tensor], Tensor], channels: int, *, seed: int = 0
    ) -> InputSpace:
        """The map of a normalisation function, read off by probing it.

        ``normalise`` is evaluated on black, white and a random image; it must be a per-channel
        affine map (like ``torchvision.transforms.Normalize``), since only such a map can be
        undone exactly.

        Raises:
            ValueError: ``normalise`` is not per-channel affine.
        """
        gen = torch.Generator().manual_seed(seed)
        probe = torch.rand(1, channels, 4, 4, generator=gen, dtype=torch.float64)
        zeros, ones = torch.zeros_like(probe), torch.ones_like(probe)
        with torch.no_grad():
            n0, n1, nr = (
                torch.as_tensor(normalise(t.float())).double() for t in (zeros, ones, probe)
            )
        if n0.shape != probe.shape:
            raise ValueError(
                f"normalise changed the shape {tuple(probe.shape)} -> {tuple(n0.shape)}"
            )
        shift = n0[:, :, :1, :1]
        scale = n1[:, :, :1, :1] - shift
        predicted = scale * probe + shift
        affine = bool(((n0 - shift).abs() < 1e-5).all()) and bool(
            ((nr - predicted).abs() <= 1e-4 * (1 + predicted.abs())).all()
        )
        if not affine or bool((scale == 0).any()):
            raise ValueError(
                "normalise must be a per-channel affine map such as (x - mean) / std; "
                "pass mean= and std= instead"
            )
        return cls(scale, shift)

    @classmethod
    def of(
        cls,
        channels: int,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        normalise: Callable[[Tensor], Tensor] | None = None,
    ) -> InputSpace:
        """The input space described by ``mean``/``std``, ``normalise``, or neither (``[0, 1]``)."""
        cls.check(mean=mean, std=std, normalise=normalise)
        if normalise is not None:
            space = cls.from_callable(normalise, channels)
        elif mean is not None and std is not None:
            space = cls.from_mean_std(mean, std)
        else:
            return cls.identity(channels)
        if space.scale.shape[1] != channels:
            raise ValueError(
                f"the normalisation has {space.scale.shape[1]} channels, the inputs {channels}"
            )
        return space

    @classmethod
    def check(
        cls,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        normalise: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        """Raise ``ValueError`` for a contradictory or invalid description (before any work)."""
        if normalise is not None and (mean is not None or std is not None):
            raise ValueError("give mean/std or normalise, not both")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std")
        if normalise is not None and not callable(normalise):
            raise ValueError(f"normalise must be callable, got {type(normalise).__name__}")
        if mean is not None and std is not None:
            cls.from_mean_std(mean, std)

    @property
    def is_identity(self) -> bool:
        return bool((self.scale == 1).all()) and bool((self.shift == 0).all())

    def to_unit(self, inputs: Tensor) -> Tensor:
        """The ``[0, 1]`` images behind normalised ``inputs``, clipped to ``[0, 1]``.

        Clipping matters only for inputs that were never images in ``[0, 1]``, e.g. the noisy
        copies robustness metrics make; RDE clips its obfuscations to the same range.
        """
        shift = self.shift.to(inputs)
        scale = self.scale.to(inputs)
        return ((inputs - shift) / scale).clamp(0.0, 1.0)

    def from_unit(self, x: Tensor) -> Tensor:
        """Normalise ``[0, 1]`` images."""
        return x * self.scale.to(x) + self.shift.to(x)

    def wrap(self, model: Callable[[Tensor], Any]) -> UnitModel:
        """``model`` (on normalised inputs) as a model on ``[0, 1]`` images."""
        return UnitModel(model, self.scale.float(), self.shift.float())


def captum_target(target: Any) -> Any:
    """captum's ``target`` (int, 1-tuple, list of ints or 1-tuples, tensor, None) as rdex's.

    captum indexes the output with a tuple for outputs of more than two dimensions; a classifier's
    output ``(B, K)`` takes a tuple of one index. Names (``"tabby cat"``) pass through for rdex.

    Raises:
        ValueError: For a tuple of more than one index (rdex explains ``(B, K)`` outputs).
    """

    def one(item: Any) -> Any:
        if isinstance(item, tuple):
            if len(item) != 1:
                raise ValueError(
                    f"target {item!r}: rdex explains classifier outputs (B, K); give one index"
                )
            return one(item[0])
        if isinstance(item, Tensor):
            return int(item.item())
        return item

    if target is None or isinstance(target, Tensor):
        return target
    if isinstance(target, list):
        return [one(t) for t in target]
    if hasattr(target, "__array__") and not isinstance(target, str | int):  # numpy
        return torch.as_tensor(target).long()
    return one(target)
