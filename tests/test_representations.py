"""Representations: exact inversion, agreement with pywt, and a user-defined non-linear f."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import torch
from torch import nn

from rdex.obfuscations import Obfuscation, ObfuscationState
from rdex.rde import RDE, RDEConfig
from rdex.representations import Fourier, Pixel, Representation, Wavelet, mask_shape


@pytest.mark.parametrize(
    "rep",
    [
        Pixel(),
        Wavelet(),
        Wavelet("haar", levels=3),
        Wavelet("db2", levels=2, mode="reflect"),
        Wavelet("sym4", levels=3, mode="periodic"),
        Fourier(),
    ],
    ids=repr,
)
@pytest.mark.parametrize("size", [(32, 32), (37, 50)])
def test_decode_inverts_encode(rep: Representation, size: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    bands = rep.encode(x)
    assert all(b.shape[0] == 2 for b in bands)
    y = rep.decode(bands, shape=x.shape[1:])
    torch.testing.assert_close(y, x, rtol=0, atol=1e-10)


@pytest.mark.filterwarnings("ignore:Level value")
@pytest.mark.parametrize("wavelet", ["haar", "db3", "sym5", "coif1"])
@pytest.mark.parametrize("mode", ["zero", "reflect", "periodic", "symmetric"])
@pytest.mark.parametrize("levels", [1, 3, 5])
def test_wavelet_coefficients_equal_pywt(wavelet: str, mode: str, levels: int) -> None:
    rng = np.random.default_rng(levels)
    image = rng.random((64, 48))
    ours = Wavelet(wavelet, levels=levels, mode=mode).encode(torch.from_numpy(image)[None, None])
    ref = pywt.wavedec2(image, wavelet, mode=mode, level=levels)
    assert len(ours) == len(ref) == levels + 1
    np.testing.assert_allclose(ours[0][0, 0].numpy(), ref[0], atol=1e-10)
    for band, details in zip(ours[1:], ref[1:], strict=True):
        for orientation in range(3):
            np.testing.assert_allclose(
                band[0, 0, orientation].numpy(), details[orientation], atol=1e-10
            )


def test_wavelet_mask_is_shared_by_channels_and_groups_are_scales() -> None:
    rep = Wavelet(levels=3)
    bands = rep.encode(torch.rand(2, 3, 32, 32))
    assert [mask_shape(b, rep.shared_dims)[:3] for b in bands] == [(2, 1, bands[0].shape[2])] + [
        (2, 1, 3)
    ] * 3
    assert rep.groups(bands) == [0, 1, 2, 3]
    assert rep.band_names(bands)[0] == "approximation"


def test_wavelet_rejects_unknown_wavelet_and_non_images() -> None:
    with pytest.raises(ValueError, match="unknown discrete wavelet"):
        Wavelet("nope")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        Wavelet().encode(torch.rand(3, 32, 32))


def test_fourier_bands_are_radial_octaves_and_parseval_holds() -> None:
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    rep = Fourier()
    bands = rep.encode(x)
    assert bands[0].shape[2] == 1  # the DC term alone
    torch.testing.assert_close(bands[0][0, 0, 0, 0], x.sum() / 16, rtol=1e-12, atol=1e-12)
    # every rfft2 coefficient lands in exactly one band
    assert sum(b.shape[2] for b in bands) == 16 * 9


class Polar(Representation):
    """The paper's Figure 2: x = (r cos phi, r sin phi), a non-linear representation of R^2."""

    shared_dims = ()
    name = "polar"

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.stack([torch.atan2(x[:, 1], x[:, 0]), torch.linalg.vector_norm(x, dim=1)], 1)]

    def decode(self, bands, *, shape):  # type: ignore[no-untyped-def]
        (h,) = bands
        return torch.stack([h[:, 1] * torch.cos(h[:, 0]), h[:, 1] * torch.sin(h[:, 0])], 1)

    def groups(self, bands):  # type: ignore[no-untyped-def]
        return [0]


class AngleClassifier(nn.Module):
    """Decides by the angle of a 2D point only: class 0 inside a narrow cone around phi = pi/4."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angle = torch.atan2(x[:, 1], x[:, 0])
        score = 20.0 * (0.3 - (angle - math.pi / 4).abs())
        return torch.stack([score, -score], dim=1)


def test_polar_representation_finds_the_angle_not_the_magnitude() -> None:
    # Figure 2: in polar coordinates RDE keeps the angle and drops the magnitude.
    x = torch.tensor([[0.5, 0.5]])
    rep = Polar()
    torch.testing.assert_close(rep.decode(rep.encode(x), shape=(2,)), x)
    uniform = _PolarUniform()
    config = RDEConfig(lambda_k=0.2, steps=300, samples=64, lr=0.05, clip=None, channels_last=False)
    result = RDE(AngleClassifier(), rep, uniform, config=config).explain(x)
    angle, radius = result.mask[0][0].tolist()
    assert angle > 0.9 and radius < 0.1


class _PolarUniform(Obfuscation):
    """Uniform on [-pi, pi] x [0, 1], as in the paper's Figure 2."""

    def prepare(self, x, bands, representation):  # type: ignore[no-untyped-def]
        return ObfuscationState(shapes=[b.shape for b in bands], params=[])

    def sample(self, state, num_samples, generators):  # type: ignore[no-untyped-def]
        out = []
        for g in generators:
            u = torch.rand(num_samples, 2, generator=g)
            out.append(torch.stack([(2 * u[:, 0] - 1) * math.pi, u[:, 1]], 1))
        return [torch.stack(out)]
