"""Representations ``x = f(h)`` in which RDE masks are optimised.

A representation turns an input batch ``x`` of shape ``(B, ...)`` into a list of *bands* (tensors of
shape ``(B, ...)``) and back. Three facts about it drive the optimiser:

* :meth:`Representation.encode` / :meth:`Representation.decode` (``f^{-1}`` and ``f``; ``f`` need not
  be linear),
* :attr:`Representation.shared_dims`: band dimensions over which one mask entry is shared (the colour
  channels, as in the paper: the mask has shape ``(B, 1, ...)`` per band),
* :meth:`Representation.groups`: the partition ``A_1, ..., A_j`` used by adaptive noise, one group
  index per band (section 4.1.2).

To plug in your own representation, subclass :class:`Representation` and implement ``encode``,
``decode`` and, if the default of one group per band does not suit, ``groups``. ``decode`` must be
differentiable in the bands. See ``tests/test_representations.py`` for the paper's polar-coordinates
example (Figure 2), a non-linear ``f``.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, sections 4.1 and 5.1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import ptwt
import pywt
import torch
from torch import Tensor

from rdex.types import Bands, InputShape

__all__ = ["Representation", "Pixel", "Wavelet", "Fourier", "mask_shape"]


class Representation(ABC):
    """Base class of representations ``x = f(h)``.

    Attributes:
        shared_dims: Dimensions of every band (counted with the batch dimension at 0) over which a
            mask entry is shared. ``(1,)`` shares the mask across colour channels.
        name: Short name used in file names and figures.
    """

    shared_dims: tuple[int, ...] = (1,)
    name: str = "representation"

    @abstractmethod
    def encode(self, x: Tensor) -> Bands:
        """Coefficients ``h`` of ``x``.

        Args:
            x: Inputs of shape ``(B, ...)``; images are ``(B, C, H, W)``.

        Returns:
            Bands, each of shape ``(B, ...)``.
        """

    @abstractmethod
    def decode(self, bands: Sequence[Tensor], *, shape: InputShape) -> Tensor:
        """Inverse of :meth:`encode`: ``x = f(h)``, differentiable in ``bands``.

        Args:
            bands: Bands as returned by :meth:`encode`, possibly with a different batch size.
            shape: Shape of one input without the batch dimension (used to crop padding).

        Returns:
            Inputs of shape ``(N, *shape)``, ``N`` the batch size of the bands.
        """

    def groups(self, bands: Sequence[Tensor]) -> list[int]:
        """Partition of the coefficients for adaptive noise: one group index per band."""
        return list(range(len(bands)))

    def band_names(self, bands: Sequence[Tensor]) -> list[str]:
        """Human-readable name of each band (figures, saved masks)."""
        return [f"band{i}" for i in range(len(bands))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def mask_shape(band: Tensor, shared_dims: Sequence[int]) -> tuple[int, ...]:
    """Shape of the mask of one band: the band's shape with the shared dimensions set to 1."""
    return tuple(1 if d in shared_dims else n for d, n in enumerate(band.shape))


class Pixel(Representation):
    """The canonical representation ``f = id``: one band, the image itself.

    The mask has shape ``(B, 1, H, W)`` (shared by the colour channels) and all pixels form one
    partition, as in Pixel RDE (Macdonald et al., 2019).
    """

    name = "pixel"

    def encode(self, x: Tensor) -> Bands:
        return [x]

    def decode(self, bands: Sequence[Tensor], *, shape: InputShape) -> Tensor:
        (band,) = bands
        return band

    def band_names(self, bands: Sequence[Tensor]) -> list[str]:
        return ["pixels"]


class Wavelet(Representation):
    """Discrete wavelet transform of images (ptwt), the representation of CartoonX.

    Bands follow pywt's ``wavedec2`` order: the approximation at the coarsest scale first (shape
    ``(B, C, h_J, w_J)``), then one band per scale from coarse to fine holding the horizontal,
    vertical and diagonal details stacked on dimension 2 (shape ``(B, C, 3, h_j, w_j)``). The mask
    is shared by the colour channels and has one entry per position and orientation. Adaptive noise
    uses one group per scale (the approximation is its own group), as in section 5.1.

    Args:
        wavelet: A pywt wavelet name (default ``"db3"``, the paper's Daubechies wavelet).
        levels: Number of scales ``J`` (default 5, as in appendix A.2).
        mode: Padding mode (default ``"zero"``, as in appendix A.2); any mode ptwt's ``wavedec2``
            accepts (``"zero"``, ``"reflect"``, ``"periodic"``, ``"constant"``, ``"symmetric"``).

    Examples:
        >>> import torch
        >>> from rdex import Wavelet
        >>> x = torch.rand(1, 3, 64, 64)
        >>> dwt = Wavelet(levels=2)
        >>> bands = dwt.encode(x)
        >>> [tuple(b.shape) for b in bands]  # approximation, then details from coarse to fine
        [(1, 3, 19, 19), (1, 3, 3, 19, 19), (1, 3, 3, 34, 34)]
        >>> torch.allclose(dwt.decode(bands, shape=x.shape[1:]), x, atol=1e-5)
        True
    """

    name = "wavelet"

    def __init__(self, wavelet: str = "db3", *, levels: int = 5, mode: str = "zero") -> None:
        if wavelet not in pywt.wavelist(kind="discrete"):
            raise ValueError(
                f"unknown discrete wavelet {wavelet!r}; see pywt.wavelist(kind='discrete')"
            )
        if levels < 1:
            raise ValueError(f"levels must be at least 1, got {levels}")
        self.wavelet = wavelet
        self.levels = levels
        self.mode = mode

    def encode(self, x: Tensor) -> Bands:
        if x.dim() != 4:
            raise ValueError(f"Wavelet expects images of shape (B, C, H, W), got {tuple(x.shape)}")
        coeffs = ptwt.wavedec2(x, self.wavelet, level=self.levels, mode=self.mode)  # type: ignore[arg-type]
        return [coeffs[0], *(torch.stack(tuple(d), dim=2) for d in coeffs[1:])]

    def decode(self, bands: Sequence[Tensor], *, shape: InputShape) -> Tensor:
        details = [ptwt.WaveletDetailTuple2d(b[:, :, 0], b[:, :, 1], b[:, :, 2]) for b in bands[1:]]
        x = ptwt.waverec2((bands[0], *details), self.wavelet)
        height, width = shape[-2], shape[-1]
        return x[..., :height, :width]

    def groups(self, bands: Sequence[Tensor]) -> list[int]:
        return list(range(len(bands)))

    def band_names(self, bands: Sequence[Tensor]) -> list[str]:
        n = len(bands) - 1
        return ["approximation"] + [f"details scale {n - i}" for i in range(n)]

    def __repr__(self) -> str:
        return f"Wavelet({self.wavelet!r}, levels={self.levels}, mode={self.mode!r})"


class Fourier(Representation):
    """Real 2D Fourier transform (orthonormal ``rfft2``), masked per frequency.

    Section 4 of the paper motivates RDE in the Fourier basis as the query "which *smooth* part of the
    signal matters?". Coefficients are split into bands of radial frequency: the DC term, then one
    octave per band. Each band holds the real and imaginary parts (dimension 3) of its frequencies
    (dimension 2), shape ``(B, C, n_band, 2)``; the mask is shared by colour channels and by the
    real and imaginary parts, and adaptive noise uses one group per octave.
    """

    name = "fourier"
    shared_dims = (1, 3)

    def _rings(self, height: int, width: int, device: torch.device) -> list[Tensor]:
        fy = torch.fft.fftfreq(height, device=device).abs() * height
        fx = torch.fft.rfftfreq(width, device=device) * width
        radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).flatten()
        ring = torch.where(radius < 1, 0, torch.floor(torch.log2(radius.clamp_min(1))).long() + 1)
        count = int(ring.max()) + 1
        return [torch.nonzero(ring == r).squeeze(1) for r in range(count)]

    def encode(self, x: Tensor) -> Bands:
        if x.dim() != 4:
            raise ValueError(f"Fourier expects images of shape (B, C, H, W), got {tuple(x.shape)}")
        spec = torch.view_as_real(torch.fft.rfft2(x, norm="ortho")).flatten(2, 3)
        return [spec[:, :, idx] for idx in self._rings(x.shape[-2], x.shape[-1], x.device)]

    def decode(self, bands: Sequence[Tensor], *, shape: InputShape) -> Tensor:
        height, width = shape[-2], shape[-1]
        first = bands[0]
        rings = self._rings(height, width, first.device)
        freq_w = width // 2 + 1
        flat = first.new_zeros(first.shape[0], first.shape[1], height * freq_w, 2)
        for idx, band in zip(rings, bands, strict=True):
            flat = flat.index_copy(2, idx, band)
        spec = torch.view_as_complex(flat.view(first.shape[0], first.shape[1], height, freq_w, 2))
        return torch.fft.irfft2(spec, s=(height, width), norm="ortho")

    def band_names(self, bands: Sequence[Tensor]) -> list[str]:
        return ["DC"] + [f"octave {i}" for i in range(1, len(bands))]
