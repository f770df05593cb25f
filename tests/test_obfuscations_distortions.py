"""Obfuscation strategies and distortion measures."""

from __future__ import annotations

import pytest
import torch

from rdex.distortions import DISTORTIONS, get_distortion, kl_divergence, maximize_label
from rdex.obfuscations import (
    Blur,
    Constant,
    GaussianAdaptive,
    UniformAdaptive,
    Zeros,
    make_obfuscation,
    partition_stats,
)
from rdex.representations import Pixel, Wavelet


def _generators(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for _ in range(n)]


def test_gaussian_adaptive_matches_partition_mean_and_std() -> None:
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    x[1] = x[1] * 0.2 + 0.7  # a second image with other statistics
    rep = Wavelet("db3", levels=3)
    bands = rep.encode(x)
    obf = GaussianAdaptive()
    state = obf.prepare(x, bands, rep)
    noise = obf.sample(state, 400, _generators(2))
    for band, v in zip(bands, noise, strict=True):
        assert v.shape == (2, 400, *band.shape[1:])
        for i in range(2):
            values = band[i].flatten()
            mean, std = values.mean(), values.std(correction=0)
            assert abs(v[i].mean() - mean) < 0.02 * std + 1e-3
            assert abs(v[i].std() / std - 1) < 0.02


def test_partition_stats_pool_bands_of_a_group() -> None:
    a = torch.tensor([[0.0, 2.0]])
    b = torch.tensor([[4.0, 6.0]])
    c = torch.tensor([[10.0, 10.0]])
    means, stds = partition_stats([a, b, c], [0, 0, 1])
    assert [float(m) for m in means] == [3.0, 3.0, 10.0]
    assert float(stds[0]) == pytest.approx(5**0.5)  # population std of 0, 2, 4, 6
    assert float(stds[2]) == 0.0


def test_uniform_adaptive_lies_in_mean_plus_minus_std() -> None:
    x = torch.rand(1, 3, 32, 32)
    rep = Pixel()
    bands = rep.encode(x)
    obf = UniformAdaptive()
    (v,) = obf.sample(obf.prepare(x, bands, rep), 50, _generators(1))
    mean, std = x.mean(), x.std(correction=0)
    assert v.min() >= mean - std - 1e-6 and v.max() <= mean + std + 1e-6
    assert v.std() == pytest.approx(float(std) / 3**0.5, rel=0.05)


def test_noise_depends_only_on_seed_not_on_batch_position() -> None:
    x = torch.rand(3, 3, 32, 32)
    rep = Wavelet(levels=2)
    obf = GaussianAdaptive()
    alone = obf.sample(obf.prepare(x[1:2], rep.encode(x[1:2]), rep), 4, _generators(1, 7))
    batch = obf.sample(obf.prepare(x, rep.encode(x), rep), 4, _generators(3, 7))
    for a, b in zip(alone, batch, strict=True):
        torch.testing.assert_close(a[0], b[1])


def test_deterministic_obfuscations() -> None:
    x = torch.rand(2, 3, 32, 32)
    rep = Pixel()
    bands = rep.encode(x)
    (zeros,) = Zeros().sample(Zeros().prepare(x, bands, rep), 3, _generators(2))
    assert Zeros.deterministic and float(zeros.abs().max()) == 0.0
    const = Constant(0.25)
    (c,) = const.sample(const.prepare(x, bands, rep), 3, _generators(2))
    assert torch.all(c == 0.25)
    blur = Blur(2.0)
    (b,) = blur.sample(blur.prepare(x, bands, rep), 2, _generators(2))
    # blurring keeps the mean and removes variation
    torch.testing.assert_close(
        b[:, 0].mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.02, rtol=0
    )
    assert float(b[:, 0].std()) < 0.5 * float(x.std())


def test_make_obfuscation_parses_names_and_rejects_unknown() -> None:
    assert isinstance(make_obfuscation("gaussian"), GaussianAdaptive)
    assert make_obfuscation("constant:0.5").value == 0.5  # type: ignore[attr-defined]
    assert make_obfuscation("blur:3").sigma == 3.0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown obfuscation"):
        make_obfuscation("inpaint")
    with pytest.raises(ValueError, match="takes no argument"):
        make_obfuscation("zeros:1")
    with pytest.raises(ValueError, match="bad argument"):
        make_obfuscation("blur:x")


@pytest.mark.parametrize("name", list(DISTORTIONS))
def test_distortion_of_identical_outputs_is_zero(name: str) -> None:
    target = torch.tensor([0, 5, 9])
    probs = torch.softmax(torch.randn(3, 10), dim=1)
    others = torch.softmax(torch.randn(3, 4, 10), dim=1)
    d = DISTORTIONS[name](probs, others, target)
    assert d.shape == (3, 4) and bool((d >= 0).all()) and bool(torch.isfinite(d).all())
    # Kept output that is sure of the label: zero for every distortion.
    sure = torch.nn.functional.one_hot(target, 10).float()
    zero = DISTORTIONS[name](sure, sure.unsqueeze(1).expand(3, 4, 10), target)
    torch.testing.assert_close(zero, torch.zeros(3, 4), atol=1e-7, rtol=0)
    if name != "max-label":  # it asks for probability one, not for the same output
        d = DISTORTIONS[name](probs, probs.unsqueeze(1).expand(3, 4, 10), target)
        torch.testing.assert_close(d, torch.zeros(3, 4), atol=1e-7, rtol=0)


def test_distortions_against_hand_computed_values() -> None:
    ref = torch.tensor([[0.7, 0.2, 0.1]])
    out = torch.tensor([[[0.4, 0.5, 0.1]]])
    target = torch.tensor([0])
    assert float(DISTORTIONS["label"](ref, out, target)) == pytest.approx(0.09)
    assert float(maximize_label(ref, out, target)) == pytest.approx(0.36)
    assert float(DISTORTIONS["l2"](ref, out, target)) == pytest.approx((0.09 + 0.09) ** 0.5)
    expected_kl = 0.4 * torch.log(torch.tensor(0.4 / 0.7)) + 0.5 * torch.log(
        torch.tensor(0.5 / 0.2)
    )
    assert float(kl_divergence(ref, out, target)) == pytest.approx(float(expected_kl))
    assert float(maximize_label(ref, torch.tensor([[[1.0, 0.0, 0.0]]]), target)) == 0.0


def test_get_distortion_errors_and_callables() -> None:
    with pytest.raises(ValueError, match="unknown distortion"):
        get_distortion("hinge")
    fn = DISTORTIONS["l2"]
    assert get_distortion(fn) is fn
