"""Obfuscation strategies ``V_s``: what replaces the coefficients a mask deletes.

An obfuscation is prepared once per explanation from the input and its coefficients
(:meth:`Obfuscation.prepare`), then sampled at every optimisation step
(:meth:`Obfuscation.sample`), returning one tensor of shape ``(B, L, ...)`` per band. Random
strategies draw all the noise of one image and step in a single call on that image's
``torch.Generator``, so a batch of images gives exactly the masks of per-image runs with the same seed.

:func:`obfuscate` mixes the draws into the coefficients, ``y = f(s * h + (1 - s) * v)`` clipped, and
runs a model on them: the optimiser (its reference output too), the rate-distortion metrics and the
benchmark's scorer all obfuscate through this one function.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, section 4.1.2 and
    appendix A.3.2. Fong & Vedaldi, "Interpretable Explanations of Black Boxes by Meaningful
    Perturbation", ICCV 2017 (blur and constant perturbations).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rdex.representations import Representation
from rdex.types import Bands, InputShape, ObfuscationName

__all__ = [
    "Obfuscation",
    "GaussianAdaptive",
    "UniformAdaptive",
    "Constant",
    "Zeros",
    "Blur",
    "make_obfuscation",
    "OBFUSCATIONS",
    "partition_stats",
    "obfuscate",
]


def partition_stats(bands: Sequence[Tensor], groups: Sequence[int]) -> tuple[Bands, Bands]:
    """Empirical mean and standard deviation of every partition, per image (section 4.1.2).

    Statistics are taken over all coefficients of all bands in a group (channels and positions
    included) with the population formula (divide by the count), as the paper defines them.

    Args:
        bands: Coefficients, each of shape ``(B, ...)``.
        groups: Group index of each band.

    Returns:
        ``(means, stds)``: per band, a tensor of shape ``(B,)`` holding its group's statistics.
    """
    if len(groups) != len(bands):
        raise ValueError(f"{len(groups)} group indices for {len(bands)} bands")
    stats: dict[int, tuple[Tensor, Tensor]] = {}
    for g in sorted(set(groups)):
        values = torch.cat(
            [b.flatten(1) for b, gb in zip(bands, groups, strict=True) if gb == g], 1
        )
        mean = values.mean(dim=1)
        std = values.std(dim=1, correction=0)
        stats[g] = (mean, std)
    return [stats[g][0] for g in groups], [stats[g][1] for g in groups]


@dataclass
class ObfuscationState:
    """What an obfuscation keeps between steps for one batch."""

    shapes: list[torch.Size]
    params: list[tuple[Tensor, Tensor]]


class Obfuscation(ABC):
    """Base class of obfuscation strategies.

    Attributes:
        deterministic: True when every sample is the same (constants, blur); the optimiser then
            evaluates one obfuscation per step instead of ``L`` identical ones.
    """

    deterministic: bool = False
    name: str = "obfuscation"

    @abstractmethod
    def prepare(
        self, x: Tensor, bands: Sequence[Tensor], representation: Representation
    ) -> ObfuscationState:
        """Precompute what sampling needs (for example the per-partition statistics)."""

    @abstractmethod
    def sample(
        self, state: ObfuscationState, num_samples: int, generators: Sequence[torch.Generator]
    ) -> Bands:
        """Draw ``num_samples`` perturbations per image: per band a tensor ``(B, L, ...)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _Adaptive(Obfuscation):
    """Noise with the per-partition mean and standard deviation of the coefficients."""

    def prepare(
        self, x: Tensor, bands: Sequence[Tensor], representation: Representation
    ) -> ObfuscationState:
        means, stds = partition_stats(bands, representation.groups(bands))
        return ObfuscationState(
            shapes=[b.shape for b in bands], params=list(zip(means, stds, strict=True))
        )

    @abstractmethod
    def _standard(self, n: int, generator: torch.Generator, like: Tensor) -> Tensor:
        """``n`` draws of the unit distribution (mean 0, scale 1) on ``like``'s device and dtype."""

    def sample(
        self, state: ObfuscationState, num_samples: int, generators: Sequence[torch.Generator]
    ) -> Bands:
        like = state.params[0][0]
        per_image = [s[1:].numel() for s in state.shapes]
        total = num_samples * sum(per_image)
        # One draw per image and step, split across bands: fewer kernel launches, and the same
        # stream of numbers for an image whether it is explained alone or in a batch.
        z = torch.stack([self._standard(total, g, like) for g in generators])
        z = z.view(len(generators), num_samples, -1)
        out = []
        for chunk, shape, (mean, std) in zip(
            z.split(per_image, dim=2), state.shapes, state.params, strict=True
        ):
            scale = (-1,) + (1,) * len(shape)
            noise = chunk.reshape(shape[0], num_samples, *shape[1:])
            out.append(mean.view(scale) + std.view(scale) * noise)
        return out


class GaussianAdaptive(_Adaptive):
    """Adaptive Gaussian noise ``N(mu_i, sigma_i^2)`` per partition ``A_i`` (the paper's default)."""

    name = "gaussian"

    def _standard(self, n: int, generator: torch.Generator, like: Tensor) -> Tensor:
        return torch.randn(n, generator=generator, device=like.device, dtype=like.dtype)


class UniformAdaptive(_Adaptive):
    """Adaptive uniform noise ``U(mu_i - sigma_i, mu_i + sigma_i)`` per partition."""

    name = "uniform"

    def _standard(self, n: int, generator: torch.Generator, like: Tensor) -> Tensor:
        u = torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)
        return 2.0 * u - 1.0


class _Deterministic(Obfuscation):
    deterministic = True

    @abstractmethod
    def _values(self, x: Tensor, bands: Sequence[Tensor], representation: Representation) -> Bands:
        """The perturbation ``v`` per band, shape ``(B, ...)``."""

    def prepare(
        self, x: Tensor, bands: Sequence[Tensor], representation: Representation
    ) -> ObfuscationState:
        values = self._values(x, bands, representation)
        return ObfuscationState(shapes=[b.shape for b in bands], params=[(v, v) for v in values])

    def sample(
        self, state: ObfuscationState, num_samples: int, generators: Sequence[torch.Generator]
    ) -> Bands:
        return [v.unsqueeze(1).expand(-1, num_samples, *v.shape[1:]) for v, _ in state.params]


class Constant(_Deterministic):
    """A constant perturbation ``v = value`` in coefficient space (``value=0``: the zero baseline)."""

    name = "constant"

    def __init__(self, value: float = 0.0) -> None:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"constant obfuscation value must be finite, got {value}")
        self.value = value

    def _values(self, x: Tensor, bands: Sequence[Tensor], representation: Representation) -> Bands:
        return [torch.full_like(b, self.value) for b in bands]

    def __repr__(self) -> str:
        return f"Constant({self.value})"


class Zeros(Constant):
    """The zero baseline ``v = 0`` (appendix A.3.2, Figure 8)."""

    name = "zeros"

    def __init__(self) -> None:
        super().__init__(0.0)

    def __repr__(self) -> str:
        return "Zeros()"


class Blur(_Deterministic):
    """Coefficients of a Gaussian-blurred copy of the input (Fong & Vedaldi, 2017).

    Args:
        sigma: Standard deviation of the blur in pixels.
    """

    name = "blur"

    def __init__(self, sigma: float = 10.0) -> None:
        if not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"blur sigma must be positive and finite, got {sigma}")
        self.sigma = float(sigma)

    def _values(self, x: Tensor, bands: Sequence[Tensor], representation: Representation) -> Bands:
        from torchvision.transforms.functional import gaussian_blur

        if x.dim() != 4:
            raise ValueError("Blur needs images of shape (B, C, H, W)")
        kernel = 2 * int(round(3 * self.sigma)) + 1
        kernel = min(kernel, 2 * (min(x.shape[-2:]) // 2) - 1)
        blurred = gaussian_blur(x, [kernel, kernel], [self.sigma, self.sigma])
        return representation.encode(blurred)

    def __repr__(self) -> str:
        return f"Blur(sigma={self.sigma})"


OBFUSCATIONS: dict[str, Callable[..., Obfuscation]] = {
    "gaussian": GaussianAdaptive,
    "uniform": UniformAdaptive,
    "zeros": Zeros,
    "constant": Constant,
    "blur": Blur,
}


def make_obfuscation(spec: ObfuscationName | str | Obfuscation) -> Obfuscation:
    """An obfuscation from a name, ``"constant:VALUE"``, ``"blur:SIGMA"``, or an instance."""
    if isinstance(spec, Obfuscation):
        return spec
    name, _, arg = str(spec).partition(":")
    if name not in OBFUSCATIONS:
        raise ValueError(f"unknown obfuscation {spec!r}; choose from {', '.join(OBFUSCATIONS)}")
    if arg:
        if name not in ("constant", "blur"):
            raise ValueError(f"obfuscation {name!r} takes no argument (got {spec!r})")
        try:
            return OBFUSCATIONS[name](float(arg))
        except ValueError as exc:
            raise ValueError(f"bad argument in obfuscation {spec!r}: {exc}") from None
    return OBFUSCATIONS[name]()


def obfuscate(
    representation: Representation,
    bands: Sequence[Tensor],
    *,
    shape: InputShape,
    mask: Sequence[Tensor] | None = None,
    noise: Sequence[Tensor] | None = None,
    clip: tuple[float, float] | None = None,
    model: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """The obfuscated inputs ``y = f(s * h + (1 - s) * v)``, clipped, or the model's outputs on them.

    Args:
        representation: The representation ``f``.
        bands: Coefficients ``h`` per band, ``(B, ...)``.
        shape: Shape of one input, e.g. ``(C, H, W)``.
        mask: Mask ``s`` per band, ``(B, ...)`` with the shared dimensions of size one. ``None``:
            the coefficients as they are (``s = 1``, the unobfuscated input after
            ``f(encode(x))``, with the same round-off as the obfuscations).
        noise: Perturbations ``v`` per band, ``(B, L, ...)`` as :meth:`Obfuscation.sample`
            draws them. ``None``: the deleted coefficients are zero, ``y = f(s * h)`` (the
            retained image, the explanations' picture).
        clip: Range ``y`` is clipped to (``None``: no clipping).
        model: If given, ``model(y)`` is returned (e.g. probabilities ``(N, m)``). The optimiser
            computes its reference output this way too, with ``mask=None``, so that at ``s = 1``
            the reference and the obfuscations are bit-identical and the distortion and its
            gradient are exactly zero there.

    Returns:
        ``y``: ``(B * L, ...)`` with noise (row ``b * L + l`` is draw ``l`` of input ``b``), else
        ``(B, ...)``; or ``model(y)``.

    References:
        Kolek et al., ECCV 2022, section 4.1 and Algorithm 1.
    """
    if mask is None:
        if noise is not None:
            raise ValueError("noise replaces what a mask deletes: pass a mask with it")
        coefficients = list(bands)
    elif noise is None:
        coefficients = [s * h for s, h in zip(mask, bands, strict=True)]
    else:
        coefficients = []
        for s, h, v in zip(mask, bands, noise, strict=True):
            s1 = s.unsqueeze(1)
            coefficients.append((s1 * h.unsqueeze(1) + (1.0 - s1) * v).flatten(0, 1))
    y = representation.decode(coefficients, shape=shape)
    if clip is not None:
        y = y.clamp(*clip)
    return y if model is None else model(y)
