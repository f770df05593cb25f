"""A digital shearlet transform in PyTorch: band-limited, a Parseval frame, computed by FFT.

Shearlets split the frequency plane by scale (one octave per scale, square rings as in ShearLab)
and, within each scale, by direction (shears of two cones), so that a few coefficients represent an
edge of any orientation (Kutyniok and Labate, 2012). ShearletX (Kolek et al., CVPR 2023) masks
these coefficients.

The system here is written from that mathematics, with the layout of the ShearLab system
(``SLgetShearletSystem2D``): ``J`` scales from coarse to fine with shear levels
``ceil((j + 1) / 2)``, at shear level ``l`` a first cone (frequencies near the horizontal
frequency axis) with shears ``k = -2^l..2^l`` and a second cone with ``k = -(2^l - 1)..2^l - 1``,
so ``2^(l + 2)`` directions per scale (49 filters for 4 scales). Its filters differ from
ShearLab's: ShearLab builds compactly supported shearlets from 1D wavelet and 2D fan filters and
reconstructs with a dual frame; these are smooth frequency windows (Meyer-type), divided by the
square root of their summed squares, so that

* the system is a Parseval frame: ``sum_i |psi_i^(w)|^2 = 1`` at every frequency ``w``, hence
  ``||coefficients||^2 = ||x||^2`` and the inverse is the adjoint, exact to float rounding;
* every filter is real and point-symmetric in frequency, so coefficients of a real image are real;
* every filter is smooth in frequency, hence well localised in space.

The transform is periodic (the image is treated as one period, as in ShearLab); the filters are
computed once per size, device and dtype and cached.

References:
    Kutyniok, Lim, Reisenhofer, "ShearLab 3D: Faithful Digital Shearlet Transforms based on
    Compactly Supported Shearlets", ACM TOMS 2016 (the layout). Haeuser, Steidl, "Fast Finite
    Shearlet Transform", 2012 (band-limited Parseval shearlets). Kolek et al., "Explaining Image
    Classifiers with Multiscale Directional Image Representation", CVPR 2023.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rdex.representations import Representation
from rdex.types import Bands, InputShape

__all__ = ["ShearletSystem", "shearlet_system", "Shearlet", "default_shear_levels"]

_CACHE: dict[tuple[object, ...], ShearletSystem] = {}
_CACHE_LIMIT = 16


def default_shear_levels(scales: int) -> tuple[int, ...]:
    """ShearLab's default shear level per scale: ``ceil((j + 1) / 2)`` for ``j = 0..scales-1``."""
    return tuple(math.ceil((j + 1) / 2) for j in range(scales))


@dataclass(frozen=True)
class ShearletSystem:
    """The filters of a digital shearlet system for one image size.

    Attributes:
        filters: Frequency responses on the ``rfft2`` grid, ``(N, H, W // 2 + 1)``, real: the
            low-pass first, then scale by scale (coarse to fine) the directions of cone 1 then
            cone 2.
        index: ``(cone, scale, shear)`` of every filter as ShearLab numbers them (cones 1 and 2,
            scales from 1; the low-pass is ``(0, 0, 0)``).
        scale_sizes: Number of directions of each scale.
        size: ``(H, W)``.
    """

    filters: Tensor
    index: tuple[tuple[int, int, int], ...]
    scale_sizes: tuple[int, ...]
    size: tuple[int, int]

    @property
    def count(self) -> int:
        """Number of filters ``N`` (the redundancy of the frame)."""
        return len(self.index)


def _smoothstep(t: Tensor) -> Tensor:
    """Meyer's auxiliary function: 0 for t <= 0, 1 for t >= 1, and nu(t) + nu(1 - t) = 1."""
    t = t.clamp(0.0, 1.0)
    return t**4 * (35.0 - 84.0 * t + 70.0 * t**2 - 20.0 * t**3)


def _bump(u: Tensor) -> Tensor:
    """Angular window ``v(u)`` on ``[-1, 1]`` with ``sum_k v(u - k)^2 = 1`` for every ``u``."""
    return torch.cos(0.5 * math.pi * _smoothstep(u.abs())).clamp_min(0.0) * (u.abs() < 1)


def _lowpass(log_r: Tensor, edge: float) -> Tensor:
    """Radial low-pass ``L(r)``: 1 below ``edge / sqrt 2``, 0 above ``edge * sqrt 2`` (octave wide)."""
    return torch.cos(0.5 * math.pi * _smoothstep(log_r - math.log2(edge) + 0.5)).clamp_min(0.0)


def _build(height: int, width: int, levels: tuple[int, ...]) -> ShearletSystem:
    dtype = torch.float64
    wy = torch.fft.fftfreq(height, dtype=dtype)[:, None].expand(height, width)
    wx = torch.fft.fftfreq(width, dtype=dtype)[None, :].expand(height, width)
    radius = torch.maximum(wy.abs(), wx.abs())
    log_r = torch.log2(radius.clamp_min(1e-12))
    scales = len(levels)
    # Band j (0 = coarsest) lies between the edges 2^-(scales - j + 1) and 2^-(scales - j) cycles
    # per pixel; the finest band reaches the Nyquist corners. Squared windows telescope to one.
    edges = [2.0 ** -(scales - j + 1) for j in range(scales)]
    lows = [_lowpass(log_r, e) for e in edges] + [torch.ones_like(radius)]
    # Slopes of the two cones (ShearLab's orientation: cone 1 holds the horizontal frequency
    # axis, shear k has slope w_y / w_x = k / 2^l; cone 2 has -w_x / w_y = k / 2^l).
    big = torch.full_like(radius, 1e6)
    slope1 = torch.where(wx != 0, wy / torch.where(wx != 0, wx, 1.0), big)
    slope2 = torch.where(wy != 0, -wx / torch.where(wy != 0, wy, 1.0), big)

    raw = [lows[0]]
    index: list[tuple[int, int, int]] = [(0, 0, 0)]
    sizes = []
    for j, level in enumerate(levels):
        radial = torch.sqrt((lows[j + 1] ** 2 - lows[j] ** 2).clamp_min(0.0))
        n = 2**level
        count = 0
        for cone, slope, top in ((1, slope1, n), (2, slope2, n - 1)):
            for k in range(-top, top + 1):
                raw.append(radial * _bump(n * slope - k))
                index.append((cone, j + 1, k))
                count += 1
        sizes.append(count)
    stack = torch.stack(raw)
    # Point symmetry w -> -w, exact on the grid (the Nyquist row/column maps onto itself), so that
    # real images have real coefficients; then normalise to a Parseval frame.
    mirrored = torch.roll(torch.flip(stack, dims=(1, 2)), shifts=(1, 1), dims=(1, 2))
    stack = 0.5 * (stack + mirrored)
    total = (stack**2).sum(dim=0)
    if float(total.min()) < 1e-6:
        raise RuntimeError("shearlet filters do not cover the frequency plane")  # pragma: no cover
    stack = stack / total.sqrt()
    half = width // 2 + 1
    return ShearletSystem(
        filters=stack[:, :, :half].contiguous(),
        index=tuple(index),
        scale_sizes=tuple(sizes),
        size=(height, width),
    )


def shearlet_system(
    height: int,
    width: int,
    *,
    scales: int = 4,
    shear_levels: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> ShearletSystem:
    """The digital shearlet system for ``height x width`` images (cached).

    Args:
        height, width: Image size in pixels.
        scales: Number of scales ``J`` (ShearletX uses 4).
        shear_levels: Shear level per scale (default ShearLab's ``ceil((j + 1) / 2)``).
        device, dtype: Where the filters live (computed in float64, then cast).

    Returns:
        A :class:`ShearletSystem`.

    Examples:
        >>> system = shearlet_system(64, 64, scales=4)
        >>> system.count, system.scale_sizes
        (49, (8, 8, 16, 16))
    """
    if scales < 1:
        raise ValueError(f"scales must be at least 1, got {scales}")
    levels = tuple(shear_levels) if shear_levels is not None else default_shear_levels(scales)
    if len(levels) != scales or any(level < 0 for level in levels):
        raise ValueError(f"need {scales} non-negative shear levels, got {levels}")
    if height < 2 or width < 2:
        raise ValueError(f"images must be at least 2x2 pixels, got {height}x{width}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (height, width, levels, device, dtype)
    system = _CACHE.get(key)
    if system is None:
        base = _CACHE.get((height, width, levels, torch.device("cpu"), torch.float64))
        if base is None:
            base = _build(height, width, levels)
        system = ShearletSystem(
            filters=base.filters.to(device=device, dtype=dtype),
            index=base.index,
            scale_sizes=base.scale_sizes,
            size=base.size,
        )
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = system
    return system


class _Synthesis(torch.autograd.Function):
    """``x = sum_i psi_i * c_i`` with its adjoint, the analysis, as the backward pass.

    The frame is Parseval with real, point-symmetric filters, so the adjoint of the synthesis is
    the analysis: the gradient of the coefficients is ``encode(grad_x)``. That costs one real FFT
    per image and one inverse real FFT per coefficient image, where autograd through ``rfft2``
    would take a full complex FFT per coefficient image (about half of a ShearletX step on CPU).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, size: tuple[int, int], filters: tuple[Tensor, ...], low: Tensor, *rest: Tensor
    ) -> Tensor:
        ctx.size, ctx.filters = size, filters
        parts = []
        for rows in _row_chunks(low):
            spectrum = torch.fft.rfft2(low[rows]) * filters[0][0]
            for band, bank in zip(rest, filters[1:], strict=True):
                spectrum = spectrum + (torch.fft.rfft2(band[rows]) * bank).sum(dim=2)
            parts.append(torch.fft.irfft2(spectrum, s=size))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        rows, channels = grad.shape[:2]
        grads = [
            grad.new_empty(rows, channels, bank.shape[0], *ctx.size) if need else None
            for bank, need in zip(ctx.filters, ctx.needs_input_grad[2:], strict=True)
        ]
        for chunk in _row_chunks(grad):
            spectrum = torch.fft.rfft2(grad[chunk]).unsqueeze(2)
            for out, bank in zip(grads, ctx.filters, strict=True):
                if out is not None:
                    torch.fft.irfft2(spectrum * bank, s=ctx.size, out=out[chunk])
        if grads[0] is not None:
            grads[0] = grads[0].squeeze(2)
        return (None, None, *grads)


def _row_chunks(x: Tensor) -> list[slice]:
    """Batch slices the synthesis works through: one image at a time on CPU, where the
    intermediate spectra of a whole batch (49 per channel) overflow the caches and the allocator
    (decode+backward of 16 images at 256 px: 10 s in one piece, 2.8 s image by image, one
    thread), all at once elsewhere."""
    rows = x.shape[0]
    step = 1 if x.device.type == "cpu" else max(rows, 1)
    return [slice(i, i + step) for i in range(0, rows, step)] or [slice(0, 0)]


class Shearlet(Representation):
    """Digital shearlet transform of images, the representation of ShearletX.

    Bands: the low-pass coefficients first (shape ``(B, C, H, W)``), then one band per scale from
    coarse to fine holding its directions on dimension 2 (shape ``(B, C, D_j, H, W)``, ``D_j =
    2^(l_j + 2)``). Every coefficient has its own mask entry (shared by the colour channels), and
    adaptive noise uses one group per scale, the low-pass being its own group, as CartoonX does
    with wavelet scales. The transform is a Parseval frame, so ``decode(encode(x)) == x`` to float
    rounding, and ``decode`` is the adjoint of ``encode``.

    Args:
        scales: Number of scales (default 4, as ShearletX's code calls ShearLab).
        shear_levels: Shear level per scale (default ShearLab's ``ceil((j + 1) / 2)``).

    References:
        Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image
        Representation", CVPR 2023, section 3.
    """

    name = "shearlet"

    def __init__(self, scales: int = 4, *, shear_levels: Sequence[int] | None = None) -> None:
        if scales < 1:
            raise ValueError(f"scales must be at least 1, got {scales}")
        levels = tuple(shear_levels) if shear_levels is not None else default_shear_levels(scales)
        if len(levels) != scales:
            raise ValueError(f"need {scales} shear levels, got {levels}")
        self.scales = scales
        self.shear_levels = levels

    def system(self, height: int, width: int, like: Tensor) -> ShearletSystem:
        """The cached filters for ``height x width`` on ``like``'s device and real dtype."""
        dtype = like.dtype if like.is_floating_point() else torch.float32
        return shearlet_system(
            height,
            width,
            scales=self.scales,
            shear_levels=self.shear_levels,
            device=like.device,
            dtype=dtype,
        )

    def encode(self, x: Tensor) -> Bands:
        if x.dim() != 4:
            raise ValueError(f"Shearlet expects images of shape (B, C, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"Shearlet expects floating-point images, got {x.dtype}")
        height, width = x.shape[-2:]
        system = self.system(height, width, x)
        spectrum = torch.fft.rfft2(x)
        coeffs = torch.fft.irfft2(spectrum.unsqueeze(2) * system.filters, s=(height, width))
        low, rest = coeffs[:, :, 0], coeffs[:, :, 1:]
        return [low, *rest.split(list(system.scale_sizes), dim=2)]

    def decode(self, bands: Sequence[Tensor], *, shape: InputShape) -> Tensor:
        height, width = shape[-2], shape[-1]
        low = bands[0]
        system = self.system(height, width, low)
        sizes = [b.shape[2] for b in bands[1:]]
        if len(bands) != len(system.scale_sizes) + 1 or tuple(sizes) != system.scale_sizes:
            raise ValueError(
                f"bands with {sizes} directions for a system with {system.scale_sizes}"
            )
        filters = system.filters.split([1, *system.scale_sizes])
        return _Synthesis.apply((height, width), filters, low, *bands[1:])

    def band_names(self, bands: Sequence[Tensor]) -> list[str]:
        return ["low-pass"] + [f"shearlets scale {j + 1}" for j in range(len(bands) - 1)]

    def __repr__(self) -> str:
        return f"Shearlet(scales={self.scales}, shear_levels={self.shear_levels})"
