"""The RDE optimiser and the CartoonX / Pixel RDE presets: the paper's properties."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rdex.bench import cartoon_picture
from rdex.distortions import get_distortion
from rdex.methods import METHODS, CartoonX, PixelRDE
from rdex.metrics import obfuscated_outputs
from rdex.obfuscations import GaussianAdaptive, obfuscate
from rdex.rde import PRESETS, RDE, RDEConfig, preset
from rdex.representations import Pixel, Wavelet, mask_shape
from tiny_models import LeftHalf, model_untouched, sensitive_net, tiny_net


def images(n: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def quick(**changes: object) -> RDEConfig:
    base = RDEConfig(lambda_k=10.0, steps=30, samples=4, lr=0.05)
    return base.replace(**changes)


def test_presets_paper_is_appendix_a2() -> None:
    paper = preset("paper")
    assert (paper.lr, paper.steps, paper.samples, paper.schedule) == (1e-3, 2000, 64, "constant")
    assert CartoonX(tiny_net()).config.steps == 2000  # the library default is the paper's
    assert set(PRESETS) >= {"paper", "fast", "preview"}
    with pytest.raises(ValueError, match="unknown preset"):
        preset("turbo")


def test_thorough_goes_as_far_as_fast_with_under_a_quarter_of_its_noise() -> None:
    fast, thorough, paper = preset("fast"), preset("thorough"), preset("paper")
    assert thorough.path == pytest.approx(fast.path, rel=0.01)
    assert thorough.noise < 0.25 * fast.noise
    assert thorough.evaluations < paper.evaluations


@pytest.mark.parametrize(
    "config",
    [
        RDEConfig(steps=300, samples=16, lr=0.02),
        RDEConfig(steps=400, samples=16, lr=0.03, schedule="cosine"),
        RDEConfig(steps=400, samples=16, lr=0.03, schedule="cosine", hold=0.3),
        RDEConfig(steps=280, samples=16, lr=0.03, early_steps=40, early_samples=64),
    ],
)
def test_noise_is_at_least_path_over_the_root_of_the_evaluations(config: RDEConfig) -> None:
    """Cauchy-Schwarz: no schedule travels further on a budget with less noise; a constant
    learning rate and sample count meet the bound."""
    bound = config.path / math.sqrt(config.evaluations)
    assert config.noise >= bound * (1 - 1e-12)
    flat = config.schedule == "constant" and config.early_steps == 0
    assert (config.noise == pytest.approx(bound)) == flat


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        RDEConfig(lambda_k=-1)
    with pytest.raises(ValueError):
        RDEConfig(samples=0)
    with pytest.raises(ValueError):
        RDEConfig(distortion="hinge")
    with pytest.raises(ValueError):
        RDEConfig(schedule="linear")  # type: ignore[arg-type]


def test_cosine_schedule_endpoints() -> None:
    cfg = RDEConfig(lr=0.03, lr_final=1e-4, schedule="cosine", steps=11)
    assert cfg.lr_at(0) == pytest.approx(0.03)
    assert cfg.lr_at(10) == pytest.approx(1e-4)
    assert cfg.lr_at(5) == pytest.approx((0.03 + 1e-4) / 2)


@pytest.mark.parametrize("method", list(METHODS.values()))
def test_mask_stays_in_unit_interval_and_seed_reproduces(method: type) -> None:
    x = images(1)
    net = sensitive_net()
    flat = method(net, config=quick(lambda_k=50.0, lr=0.3)).explain(x).mask_flat
    assert float(flat.min()) >= 0.0 and float(flat.max()) <= 1.0
    assert (
        float(flat.min()) == 0.0
    )  # a large lambda and lr switch entries off: projection was active
    a = method(net, config=quick(lambda_k=1.0))
    r1, r2 = a.explain(x), a.explain(x)
    assert float(r1.mask_flat.min()) >= 0.0 and float(r1.mask_flat.max()) <= 1.0
    torch.testing.assert_close(r1.mask_flat, r2.mask_flat, rtol=0, atol=0)
    assert 0.0 < float(r1.mask_flat.mean()) < 1.0
    r3 = method(net, config=quick(lambda_k=1.0, seed=1)).explain(x)
    assert not torch.equal(r1.mask_flat, r3.mask_flat)


@pytest.mark.parametrize("method", list(METHODS.values()))
def test_batched_run_equals_per_image_runs(method: type) -> None:
    x = images(3, seed=2)
    explainer = method(sensitive_net(), config=quick(lambda_k=1.0))
    batched = explainer.explain(x)
    for i in range(3):
        alone = explainer.explain(x[i : i + 1])
        torch.testing.assert_close(batched.mask_flat[i : i + 1], alone.mask_flat, atol=1e-5, rtol=0)
        assert int(batched.target[i]) == int(alone.target[0])


def test_a_batch_draws_the_noise_of_one_image_at_a_time() -> None:
    """Each image's L noise draws are made just before its own passes, so a batch holds one
    image's noise at a time (measured: peak memory no longer grows with the batch)."""

    class Recording(GaussianAdaptive):
        def __init__(self) -> None:
            self.images: list[int] = []

        def sample(self, state, num_samples, generators):  # type: ignore[no-untyped-def]
            noise = super().sample(state, num_samples, generators)
            self.images.append(noise[0].shape[0])
            return noise

    obfuscation = Recording()
    x = images(3, seed=2)
    explainer = CartoonX(sensitive_net(), obfuscation=obfuscation, config=quick(steps=4))
    batched = explainer.explain(x)
    # Per step one draw per image, of one image; then the final check of the objective against
    # the empty mask's (rdex.objective) draws twice per image, one image at a time too.
    assert obfuscation.images == [1] * (4 * 3 + 2 * 3)
    alone = explainer.explain(x[1:2])  # and the batch is still the single runs
    assert torch.equal(batched.mask_flat[1:2], alone.mask_flat)


def test_every_forward_pass_of_a_batch_holds_one_image() -> None:
    """The model sees one image's obfuscations (or the image itself) per pass, never the batch:
    the memory of a pass does not grow with the batch, and a batch gives the single runs."""

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = sensitive_net()
            self.rows: list[int] = []

        def forward(self, y: torch.Tensor) -> torch.Tensor:
            self.rows.append(y.shape[0])
            return self.net(y)

    model = Recorder()
    x = images(3, seed=2)
    CartoonX(model, config=quick(steps=2, samples=4, sample_chunk=2)).explain(x)
    assert model.rows and max(model.rows) == 2  # chunks of two obfuscations of one image


def test_lambda_zero_cartoonx_is_the_greyscale_image() -> None:
    # Figure 7 caption: with lambda = 0 CartoonX is simply the greyscale image.
    x = images(2, size=64)
    result = CartoonX(tiny_net(), config=quick(lambda_k=0.0, steps=20)).explain(x)
    grey = x.mean(dim=1, keepdim=True)
    torch.testing.assert_close(result.explanation, grey, atol=1e-5, rtol=0)
    assert float(result.mask_flat.min()) == 1.0


def test_gradients_reach_the_mask_only() -> None:
    net = tiny_net()
    net.train()
    with model_untouched(net):  # no gradients, flags and mode restored, weights unchanged
        CartoonX(net, config=quick(steps=3)).explain(images(1))


def test_target_by_index_name_and_default() -> None:
    x = images(2)
    net = tiny_net()
    r = PixelRDE(net, config=quick(steps=1)).explain(x)
    torch.testing.assert_close(r.target, r.probs.argmax(dim=1))
    r = PixelRDE(net, config=quick(steps=1)).explain(x, target=3)
    assert r.target.tolist() == [3, 3]
    r = PixelRDE(net, config=quick(steps=1)).explain(x, target=[1, 2])
    assert r.target.tolist() == [1, 2]
    with pytest.raises(ValueError, match="out of range"):
        PixelRDE(net, config=quick(steps=1)).explain(x, target=7)
    with pytest.raises(ValueError, match="no label names"):
        PixelRDE(net, config=quick(steps=1)).explain(x, target="tabby")
    with pytest.raises(ValueError, match="3 targets for 2 inputs"):
        PixelRDE(net, config=quick(steps=1)).explain(x, target=[1, 2, 3])


def test_inputs_outside_unit_range_are_rejected() -> None:
    with pytest.raises(ValueError, match="normalisation belongs inside the model"):
        CartoonX(tiny_net(), config=quick(steps=1)).explain(images(1) * 2 - 1)


def planted_left_half(size: int = 32) -> tuple[nn.Module, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    pattern = torch.randn(1, 3, size, size, generator=gen)
    x = (0.5 + 0.25 * pattern.sign() * torch.rand(1, 3, size, size, generator=gen)).clamp(0, 1)
    return LeftHalf(pattern), x


PLANTED = RDEConfig(lambda_k=0.2, steps=150, samples=8, lr=0.05, schedule="cosine", lr_final=1e-3)


def test_planted_left_half_classifier_pixel_rde_keeps_only_the_left() -> None:
    model, x = planted_left_half()
    mask = PixelRDE(model, config=PLANTED).explain(x).mask[0][0, 0]
    assert float(mask.sum()) > 1.0
    assert float(mask[:, 16:].sum()) / float(mask.sum()) < 0.01


def test_planted_left_half_classifier_cartoonx_keeps_only_the_left() -> None:
    # Three scales keep the test fast; positions of the coarsest zero-padded coefficients are
    # smeared over the image, so the spatial check uses the two finest scales, which carry the mass.
    model, x = planted_left_half()
    result = CartoonX(model, config=PLANTED, levels=3).explain(x)
    fine = result.mask[-2:]
    fine_mass = sum(float(m.sum()) for m in fine)
    assert fine_mass > 0.8 * float(result.mask_flat.sum())
    left = sum(float(m[..., : m.shape[-1] // 2].sum()) for m in fine)
    assert left / fine_mass > 0.95


def reference_algorithm_1(
    model: nn.Module,
    x: torch.Tensor,
    *,
    lambda_k: float,
    steps: int,
    samples: int,
    lr: float,
    seed: int,
) -> list[torch.Tensor]:
    """Algorithm 1 written plainly: per sample, per band, per step, with the library's noise stream."""
    rep = Wavelet("db3", levels=5, mode="zero")
    h = rep.encode(x)
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)[0]
    j = int(p.argmax())
    groups = rep.groups(h)
    stats = []
    for g in groups:
        pooled = torch.cat([b.flatten() for b, gb in zip(h, groups, strict=True) if gb == g])
        stats.append((pooled.mean(), pooled.std(correction=0)))
    s = [torch.ones(1, 1, *b.shape[2:], requires_grad=True) for b in h]
    opt = torch.optim.Adam(s, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    sizes = [b[0].numel() for b in h]
    for _ in range(steps):
        z = torch.randn(samples * sum(sizes), generator=gen).view(samples, -1).split(sizes, dim=1)
        distortion = torch.zeros(())
        for i in range(samples):
            coeffs = []
            for band, mask, (mu, sigma), zi in zip(h, s, stats, z, strict=True):
                v = mu + sigma * zi[i].view(band.shape)
                coeffs.append(band * mask + (1 - mask) * v)
            y = rep.decode(coeffs, shape=x.shape[1:]).clamp(0, 1)
            q = torch.softmax(model(y), dim=1)[0, j]
            distortion = distortion + (p[j] - q) ** 2 / samples
        k = sum(m.numel() for m in s)
        loss = distortion + lambda_k / k * sum(m.sum() for m in s)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for m in s:
                m.clamp_(0, 1)
    return [m.detach() for m in s]


def test_plain_algorithm_1_agrees_with_the_library() -> None:
    net = tiny_net(1)
    for p in net.parameters():
        p.requires_grad_(False)
    x = images(1, size=32, seed=5)
    settings = {"lambda_k": 20.0, "steps": 15, "samples": 3, "lr": 0.05, "seed": 11}
    expected = reference_algorithm_1(net, x, **settings)
    cfg = RDEConfig(**settings)  # type: ignore[arg-type]
    got = CartoonX(net, config=cfg).explain(x)
    assert len(got.mask) == len(expected)
    for a, b in zip(got.mask, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_sample_chunking_gives_the_same_mask() -> None:
    x = images(2)
    net = tiny_net()
    whole = CartoonX(net, config=quick(samples=6)).explain(x)
    chunked = CartoonX(net, config=quick(samples=6, sample_chunk=4)).explain(x)
    torch.testing.assert_close(whole.mask_flat, chunked.mask_flat, atol=1e-5, rtol=0)


def test_history_and_result_fields() -> None:
    r = CartoonX(tiny_net(), config=quick(steps=12)).explain(images(2))
    assert r.history["loss"].shape == (12, 2)
    torch.testing.assert_close(r.history["loss"], r.history["distortion"] + 10.0 * r.history["l1"])
    assert float(r.history["l1"][0, 0]) == pytest.approx(1.0, abs=0.06)
    assert r.explanation.shape == (2, 1, 32, 32) and r.explanation_rgb.shape == (2, 3, 32, 32)
    assert r.mask_flat.shape[1] == sum(m[0].numel() for m in r.mask)
    one = r[1]
    assert len(one) == 1 and torch.equal(one.mask_flat, r.mask_flat[1:2])
    assert r.band_names[0] == "approximation"


def test_deterministic_obfuscation_uses_one_sample() -> None:
    calls = []

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape[0])
            return self.net(x)

    # (BatchNorm folding would probe a copy of the model first: off here, to count the steps)
    config = quick(steps=2, samples=16, fold_batchnorm=False)
    RDE(Counting(), Pixel(), "zeros", config=config).explain(images(2))
    # A pass on each input, then per image (each in its own passes, as when explained alone):
    # its reference pass, then one obfuscation per step; last the check against the empty mask
    # (rdex.objective): one obfuscation per image for the mask and one for the empty mask.
    assert calls == [1, 1] + [1, 1, 1] * 2 + [1] * 4


def test_reference_output_replaces_the_models_output() -> None:
    # Appendix A.4: distort towards another image's output with the l2 distortion.
    net = tiny_net()
    x, other = images(1, seed=1), images(1, seed=2)
    with torch.no_grad():
        ref = torch.softmax(net(other), dim=1)
    r = RDE(net, Pixel(), "gaussian", config=quick(steps=1, distortion="l2")).explain(
        x, reference_output=ref
    )
    assert float(r.history["distortion"][0, 0]) > 0


def test_obfuscate_keeps_what_the_mask_keeps_and_replaces_the_rest() -> None:
    rep, x = Wavelet(levels=3), images(2, seed=5)
    bands, shape = rep.encode(x), tuple(x.shape[1:])
    obf = GaussianAdaptive()
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    noise = obf.sample(obf.prepare(x, bands, rep), 3, gens)
    ones = [torch.ones(mask_shape(b, rep.shared_dims)) for b in bands]
    zeros = [torch.zeros_like(m) for m in ones]
    # s = 1: every draw is the unmasked input bit for bit, computed in a pass of the same shape
    # (the optimiser's reference output relies on it: the distortion is exactly zero there).
    repeated = [b.repeat_interleave(3, dim=0) for b in bands]
    kept = obfuscate(rep, bands, shape=shape, mask=ones, noise=noise, clip=(0.0, 1.0))
    assert torch.equal(kept, obfuscate(rep, repeated, shape=shape, clip=(0.0, 1.0)))
    # s = 0: the draws alone, row b * L + l for draw l of image b.
    deleted = obfuscate(rep, bands, shape=shape, mask=zeros, noise=noise)
    assert torch.equal(deleted, rep.decode([v.flatten(0, 1) for v in noise], shape=shape))
    # Without noise the deleted coefficients are zero: the retained image f(s * h).
    half = obfuscate(rep, bands, shape=shape, mask=[m / 2 for m in ones])
    torch.testing.assert_close(half, rep.decode(bands, shape=shape) / 2)
    with pytest.raises(ValueError, match="mask"):
        obfuscate(rep, bands, shape=shape, noise=noise)


def test_the_optimiser_and_the_metrics_obfuscate_alike() -> None:
    # The optimiser's first-step distortion at a warm-start mask is the mean distortion the
    # metrics measure for that mask with the same seed: the same draws, mixed the same way.
    net, x, rep = sensitive_net(), images(2, seed=4), Wavelet(levels=3)
    gen = torch.Generator().manual_seed(7)
    mask = [torch.rand(mask_shape(b, rep.shared_dims), generator=gen) for b in rep.encode(x)]
    cfg = quick(steps=1, samples=5, lambda_k=0.0)
    result = RDE(net, rep, config=cfg).explain(x, init_mask=mask)
    out = obfuscated_outputs(net, x, mask, representation=rep, samples=5, seed=cfg.seed)
    with torch.no_grad():
        probs = torch.softmax(net(x), dim=1)
    want = get_distortion("label")(probs, out, result.target).mean(dim=1)
    assert float(want.min()) > 1e-4  # the mask changes the output
    torch.testing.assert_close(result.history["distortion"][0], want, rtol=1e-4, atol=1e-7)


def test_the_benchmark_scores_the_picture_the_user_sees() -> None:
    explainer = CartoonX(tiny_net(), config=quick(steps=5))
    x = images(1, seed=6)
    result = explainer.explain(x)
    picture = cartoon_picture(x, result.mask, explainer.representation)
    assert torch.equal(torch.from_numpy(picture), result.explanation[0, 0])


class _CountingGaussian(GaussianAdaptive):
    """The paper's noise, recording how many draws each step asks for."""

    def __init__(self) -> None:
        self.draws: list[int] = []

    def sample(self, state, num_samples, generators):  # type: ignore[no-untyped-def]
        self.draws.append(num_samples)
        return super().sample(state, num_samples, generators)


def test_early_samples_draw_more_noise_in_the_first_steps() -> None:
    cfg = quick(steps=6, samples=2, early_steps=3, early_samples=5)
    assert cfg.evaluations == 3 * 5 + 3 * 2
    assert [cfg.samples_at(i) for i in range(6)] == [5, 5, 5, 2, 2, 2]
    noise = _CountingGaussian()
    x = images(2)
    batch = RDE(sensitive_net(), Wavelet(), noise, config=cfg).explain(x)
    # Per step, per image; then the check against the empty mask (rdex.objective), 64 draws per
    # image for the mask and 64 for the empty mask.
    assert noise.draws == [5, 5] * 3 + [2, 2] * 3 + [64] * 4
    # Still one image's run whatever the batch, and the early samples change the result.
    single = RDE(sensitive_net(), Wavelet(), "gaussian", config=cfg).explain(x[1:])
    for a, b in zip(batch.mask, single.mask, strict=True):
        assert torch.equal(a[1:], b)
    plain = RDE(sensitive_net(), Wavelet(), "gaussian", config=cfg.replace(early_steps=0))
    assert not torch.equal(plain.explain(x[1:]).mask_flat, single.mask_flat)
    with pytest.raises(ValueError, match="early_samples"):
        quick(early_steps=2, early_samples=0)
    with pytest.raises(ValueError, match="early_steps"):
        quick(early_steps=-1)


def test_hold_keeps_the_learning_rate_then_anneals() -> None:
    cfg = quick(steps=10, lr=0.1, lr_final=0.001, schedule="cosine", hold=0.5)
    lrs = [cfg.lr_at(i) for i in range(10)]
    assert lrs[:6] == [0.1] * 6  # steps 0-4 held, step 5 starts the anneal at lr
    assert lrs[-1] == pytest.approx(0.001) and all(
        a > b for a, b in zip(lrs[5:], lrs[6:], strict=False)
    )
    assert quick(schedule="constant", hold=0.5).lr_at(29) == 0.05  # ignored when constant
    assert [quick(schedule="cosine", hold=0.0).lr_at(i) for i in range(30)] == [
        quick(schedule="cosine").lr_at(i) for i in range(30)
    ]
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="hold"):
            quick(hold=bad)


def test_cpu_passes_at_256_px_for_the_optimiser_and_for_the_check() -> None:
    """At 256x256 on CPU the optimiser sends its 16 obfuscations of an image in one pass (a
    quarter faster with one thread than two of 8: docs/performance.md, "How cost grows"), and the
    check against the empty mask draws in pieces of 8 by a rule of its own, so that its estimate
    of a mask does not change with the optimiser's pass size."""

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = sensitive_net(256)
            self.rows: list[tuple[int, bool]] = []

        def forward(self, y: torch.Tensor) -> torch.Tensor:
            self.rows.append((y.shape[0], torch.is_grad_enabled() and y.requires_grad))
            return self.net(y)

    model = Recorder()
    CartoonX(model, config=quick(steps=2, samples=16)).explain(images(1, size=256))
    with_grad = [n for n, grad in model.rows if grad]
    assert with_grad == [16, 16]  # one pass per step
    # Without gradients: the reference outputs (at s = 1, in the optimiser's pass shape), then the
    # check's 2 x 64 draws in pieces of 8.
    assert [n for n, grad in model.rows if not grad and n > 1] == [16] + [8] * 16
