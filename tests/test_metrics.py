"""Metrics against cases with known answers: a planted classifier, hand-computable CP and edges."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rdex import metrics as M
from rdex.obfuscations import Zeros
from rdex.representations import Pixel, Wavelet
from tiny_models import model_untouched

SIZE = 32
REGION = (slice(0, 16), slice(0, 16))


class Planted(nn.Module):
    """Two classes; the logit of class 0 depends only on the mean brightness of the top-left
    quadrant, so the perfect explanation is that quadrant."""

    def __init__(self, scale: float = 30.0, offset: float = 0.6) -> None:
        super().__init__()
        self.scale = scale
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x[:, :, REGION[0], REGION[1]].mean(dim=(1, 2, 3))
        logit = self.scale * (r - self.offset)
        return torch.stack([logit, -logit], dim=1)


class Constant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[2.0, 0.0, -1.0]]).expand(x.shape[0], -1)


def planted_image() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = 0.25 + 0.1 * torch.rand(1, 3, SIZE, SIZE, generator=g)
    x[:, :, 2:14, 2:14] = 0.9
    return x


def perfect_and_random() -> tuple[torch.Tensor, torch.Tensor]:
    perfect = torch.zeros(1, 1, SIZE, SIZE)
    perfect[:, :, REGION[0], REGION[1]] = 1.0
    random = torch.rand(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return perfect, random


def test_perfect_explanation_beats_random_on_every_metric() -> None:
    model = Planted()
    x = planted_image()
    perfect, random = perfect_and_random()
    results = {}
    for name, mask in (("perfect", perfect), ("random", random)):
        ex = M.Explanation.from_mask(name, x, [mask], Pixel())
        results[name] = M.evaluate(model, x, ex, samples=8, steps=16).scores
    assert set(results["perfect"]) >= set(M.METRIC_DIRECTIONS)
    for key, direction in M.METRIC_DIRECTIONS.items():
        p, r = float(results["perfect"][key][0]), float(results["random"][key][0])
        if direction > 0:
            assert p > r, (key, p, r)
        else:
            assert p < r, (key, p, r)


def test_attribution_path_ranks_like_a_mask() -> None:
    model = Planted()
    x = planted_image()
    perfect, random = perfect_and_random()
    good = M.evaluate(model, x, M.Explanation.from_attribution("good", x, perfect * 3.0), steps=8)
    bad = M.evaluate(model, x, M.Explanation.from_attribution("bad", x, random - 0.5), steps=8)
    for key in ("rd_auc", "deletion_auc"):
        assert good.scores[key][0] < bad.scores[key][0]
    assert good.scores["insertion_auc"][0] > bad.scores["insertion_auc"][0]


def test_deletion_of_everything_reaches_the_baseline_output() -> None:
    model = Planted()
    x = torch.cat([planted_image(), torch.rand(1, 3, SIZE, SIZE)])
    attr = torch.randn(2, 1, SIZE, SIZE)
    for baseline in ("zeros", "mean", "blur:2", 0.5):
        base = M.make_baseline(x, baseline)
        p_base = torch.softmax(model(base), 1)
        p_x = torch.softmax(model(x), 1)
        target = p_x.argmax(1)
        dele = M.deletion_curve(model, x, attr, steps=8, baseline=baseline)
        ins = M.insertion_curve(model, x, attr, steps=8, baseline=baseline)
        idx = torch.arange(2)
        torch.testing.assert_close(dele.values[:, -1], p_base[idx, target])
        torch.testing.assert_close(dele.values[:, 0], p_x[idx, target])
        torch.testing.assert_close(ins.values[:, 0], p_base[idx, target])
        torch.testing.assert_close(ins.values[:, -1], p_x[idx, target])


def test_deletion_counts_pixels_in_rank_order() -> None:
    # Class 0's logit is the sum of pixel values; deleting k of 16 unit pixels leaves 16 - k.
    class Sum(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = x.sum(dim=(1, 2, 3))
            return torch.stack([s, torch.zeros_like(s)], 1)

    x = torch.ones(1, 1, 4, 4)
    curve = M.deletion_curve(
        Sum(), x, torch.arange(16.0).view(1, 1, 4, 4), steps=4, model_output="identity"
    )
    torch.testing.assert_close(curve.values[0], torch.tensor([16.0, 12.0, 8.0, 4.0, 0.0]))
    assert float(curve.area[0]) == pytest.approx(8.0)


def test_rate_distortion_curve_end_points() -> None:
    model = Planted()
    x = planted_image()
    mask = torch.rand(1, 1, SIZE, SIZE)
    curve = M.rate_distortion_curve(model, x, mask, obfuscation=Zeros(), fractions=[0.0, 0.5, 1.0])
    p_x = torch.softmax(model(x), 1)[0, 0]
    p_zero = torch.softmax(model(torch.zeros_like(x)), 1)[0, 0]
    assert float(curve.values[0, -1]) == pytest.approx(0.0, abs=1e-12)
    assert float(curve.values[0, 0]) == pytest.approx(float((p_x - p_zero) ** 2), rel=1e-5)


def test_rate_distortion_over_wavelet_bands_keeps_everything_at_one() -> None:
    model = Planted()
    x = planted_image()
    rep = Wavelet("db3", levels=2)
    bands = rep.encode(x)
    from rdex.representations import mask_shape

    masks = [torch.rand(mask_shape(b, rep.shared_dims)) for b in bands]
    curve = M.rate_distortion_curve(
        model, x, masks, representation=rep, samples=4, fractions=[0, 1]
    )
    assert float(curve.values[0, 1]) < 1e-8
    assert float(curve.values[0, 0]) > 1e-3
    with pytest.raises(ValueError, match="mask band"):
        M.rate_distortion_curve(model, x, [m[..., :-1] for m in masks], representation=rep)


def test_soft_rate_distortion_keeps_mask_values_and_ignores_what_the_mask_deleted() -> None:
    """The soft curve ends at the mask's own distortion; an entry the mask all but deleted moves
    it by almost nothing, while the binary curve keeps that entry whole."""
    model = Planted()
    x = planted_image()
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., :4, :4] = 0.6  # 16 entries at 0.6: the mask's support
    grown = mask.clone()
    grown[..., :16, :16].clamp_(min=1e-4)  # the rest of the quadrant, all but deleted
    fractions = [0.0, 16 / SIZE**2, 256 / SIZE**2, 0.5, 1.0]
    kw = {"obfuscation": Zeros(), "fractions": fractions}
    soft = M.rate_distortion_curve(model, x, mask, soft=True, **kw).values[0]
    soft_grown = M.rate_distortion_curve(model, x, grown, soft=True, **kw).values[0]
    binary = M.rate_distortion_curve(model, x, mask, **kw).values[0]
    binary_grown = M.rate_distortion_curve(model, x, grown, **kw).values[0]
    torch.testing.assert_close(soft_grown, soft, atol=1e-6, rtol=1e-3)  # no longer depends on them
    # Beyond its support the soft curve stays at the mask's own distortion.
    y = mask * x  # zeros obfuscation: deleted entries become 0
    p_x, p_y = (torch.softmax(model(z), 1)[0, 0] for z in (x, y))
    assert float(soft[-1]) == pytest.approx(float((p_x - p_y) ** 2), rel=1e-5)
    assert float(soft[2]) == pytest.approx(float(soft[-1]), rel=1e-6)
    assert float(soft[3]) == pytest.approx(float(soft[-1]), rel=1e-6)
    # The binary curve keeps every ranked entry whole: all of them at fraction 1, and at 256
    # entries the whole quadrant the model looks at for the grown mask, which all but deleted it.
    assert float(binary[-1]) == pytest.approx(0.0, abs=1e-12)
    assert float(binary_grown[2]) == pytest.approx(0.0, abs=1e-12)
    assert float(binary[2]) > 0.1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.rate_distortion_curve(model, x, mask * 2, soft=True, **kw)


def test_top_fraction_mask_and_auc() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5]])
    assert M.top_fraction_mask(scores, 0.5, tie_seed=None).tolist() == [[0.0, 1.0, 1.0, 0.0]]
    half = M.top_fraction_mask(scores, 0.5)
    assert half[0, 1] == 1 and half[0, 2:].sum() == 1 and half.sum() == 2  # one of the tied pair
    torch.testing.assert_close(half, M.top_fraction_mask(scores, 0.5))  # deterministic
    # Ties are not broken by position: a flat mask keeps entries from everywhere.
    flat = M.top_fraction_mask(torch.zeros(1, 1000), 0.5)
    assert 200 < int(flat[0, :500].sum()) < 300  # about half of the 500 kept
    assert M.top_fraction_mask(scores, 0.0).sum() == 0
    assert M.top_fraction_mask(scores, 1.0).sum() == 4
    order = M.rank_order(torch.tensor([[3.0, 1.0, 2.0]]))
    assert order.tolist() == [[0, 2, 1]]
    f = torch.tensor([0.0, 0.5, 1.0])
    assert float(M.area_under_curve(f, torch.tensor([[1.0, 1.0, 1.0]]))[0]) == pytest.approx(1.0)
    assert float(M.area_under_curve(f, torch.tensor([[0.0, 0.5, 1.0]]))[0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        M.top_fraction_mask(scores, 1.5)


def test_sparsity_smoothness_known_values() -> None:
    mask = torch.tensor([[0.0, 0.2, 0.6, 1.0]])
    s = M.mask_sparsity(mask)
    assert float(s["retained_fraction"][0]) == pytest.approx(0.5)
    assert float(s["mask_l1"][0]) == pytest.approx(0.45)
    checker = (torch.arange(8).view(-1, 1) + torch.arange(8).view(1, -1)) % 2
    assert float(M.total_variation(checker.float().view(1, 1, 8, 8))[0]) == pytest.approx(2.0)
    assert float(M.total_variation(torch.full((1, 1, 8, 8), 0.3))[0]) == 0.0
    assert float(M.gini_index(torch.ones(1, 10))[0]) == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.zeros(1, 10)
    one_hot[0, 3] = 5.0
    assert float(M.gini_index(one_hot)[0]) == pytest.approx(0.9)
    smooth = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 1, 64, 64)
    noise = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert M.wavelet_sparsity(smooth)[0] > M.wavelet_sparsity(noise)[0]
    assert M.wavelet_l1(smooth)[0] < M.wavelet_l1(noise)[0]


def test_cp_scores_hand_computed() -> None:
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) + 0.1
    # The constant model keeps the probability: CP is 1 / information ratio.
    cp = M.cp_scores(Constant(), x, 0.5 * x)
    torch.testing.assert_close(cp["retained_prob_ratio"], torch.ones(2))
    torch.testing.assert_close(cp["cp_pixel_l1"], torch.full((2,), 2.0))
    torch.testing.assert_close(cp["cp_coeff_l1"], torch.full((2,), 2.0))
    torch.testing.assert_close(cp["cp_entropy"], torch.ones(2))  # entropy is scale-invariant
    # Keeping the left half of every row halves the pixel l1 of a constant image.
    flat = torch.full((1, 1, 8, 8), 0.5)
    half = flat.clone()
    half[..., 4:] = 0.0
    cp = M.cp_scores(Constant(), flat, half)
    assert float(cp["cp_pixel_l1"][0]) == pytest.approx(2.0)
    # p ratio enters linearly.
    model = Planted()
    xp = planted_image()
    masked = xp * 0.8
    p = torch.softmax(model(xp), 1)[0, 0]
    pm = torch.softmax(model(masked), 1)[0, 0]
    cp = M.cp_scores(model, xp, masked)
    assert float(cp["cp_pixel_l1"][0]) == pytest.approx(float(pm / p) / 0.8, rel=1e-5)


def test_entropy_complexity() -> None:
    img = torch.zeros(1, 1, 4, 4)
    img[0, 0, 0, :] = 0.7
    assert float(M.complexity(img, "entropy", representation=Pixel())[0]) == pytest.approx(
        math.log(4)
    )
    assert float(M.complexity(torch.zeros(1, 1, 4, 4), "entropy", representation=Pixel())[0]) == 0.0
    with pytest.raises(ValueError, match="unknown complexity"):
        M.complexity(img, "bogus")  # type: ignore[arg-type]


def square(img: torch.Tensor, top: int, left: int, side: int = 10) -> None:
    img[..., top : top + side, left : left + side] = 1.0


def test_hallucination_score_hand_computed() -> None:
    x = torch.zeros(1, 1, 64, 64)
    square(x, 8, 8)
    same = M.hallucination_score(x, x.clone())
    assert float(same["hallucination"][0]) == 0.0
    assert same["input_edges"][0] > 0
    # A second, identical square far away: its edges are all hallucinated, as many as the input's.
    extra = x.clone()
    square(extra, 40, 40)
    h = M.hallucination_score(x, extra)
    assert float(h["hallucination"][0]) == pytest.approx(1.0)
    assert float(h["explanation_edges"][0]) == pytest.approx(2 * float(h["input_edges"][0]))
    # A square shifted by 2 pixels stays within the 3-pixel tolerance.
    shifted = torch.zeros_like(x)
    square(shifted, 10, 10)
    assert float(M.hallucination_score(x, shifted)["hallucination"][0]) == 0.0
    assert float(M.hallucination_score(x, shifted, tolerance=0)["hallucination"][0]) > 0.5


def test_pixel_relevance_pulls_masks_back() -> None:
    x = planted_image()
    mask = torch.rand(1, 1, SIZE, SIZE)
    torch.testing.assert_close(M.pixel_relevance([mask], x, Pixel()), mask)
    rep = Wavelet("db3", levels=2)
    from rdex.representations import mask_shape

    shapes = [mask_shape(b, rep.shared_dims) for b in rep.encode(x)]
    ones = M.pixel_relevance([torch.full(s, 0.3) for s in shapes], x, rep)
    torch.testing.assert_close(ones, torch.full_like(ones, 0.3))
    # Keeping only the coefficients under the bright square makes the square most relevant.
    approx_only = [torch.ones(shapes[0])] + [torch.zeros(s) for s in shapes[1:]]
    rel = M.pixel_relevance(approx_only, x, rep)
    assert rel.min() >= 0 and rel.max() <= 1


def test_evaluate_rde_result_and_manifest() -> None:
    from rdex.methods import CartoonX

    model = Planted()
    x = torch.cat([planted_image(), planted_image().flip(-1)])
    explainer = CartoonX(model, preset="preview", levels=2, steps=5, samples=2)
    result = explainer.explain(x)
    ex = M.Explanation.from_rde(explainer, x, result)
    ev = M.evaluate(model, x, ex, samples=2, steps=4, fractions=[0, 0.5, 1])
    assert ev.scores["rd_auc"].shape == (2,)
    rows = ev.rows(["a", "b"])
    assert rows[1]["image"] == "b" and rows[0]["method"] == "cartoonx"
    line = M.manifest_metrics(
        model, x, result, 1, explainer=explainer, samples=2, steps=4, fractions=[0, 1]
    )
    assert line["rd_auc"] == pytest.approx(float(ev[1].scores["rd_auc"][0]), rel=0.5, abs=1e-3)
    assert line["cp_entropy"] == pytest.approx(float(ev.scores["cp_entropy"][1]), rel=1e-5)
    with pytest.raises(ValueError, match="explainer"):
        M.manifest_metrics(model, x, result)


def test_evaluate_runs_in_eval_mode_and_hands_the_model_back() -> None:
    """Dropout in train mode would make every score random; evaluate runs the model frozen (eval
    mode, no parameter gradients) and restores the caller's flags, mixed ones included."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Dropout(0.5), Planted(scale=3.0))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        net[0].bias.zero_()
    net[0].bias.requires_grad_(False)
    x = planted_image()
    ex = M.Explanation.from_mask("perfect", x, [perfect_and_random()[0]], Pixel())
    net.train()
    with model_untouched(net):
        in_train = M.evaluate(net, x, ex, samples=2, steps=4, fractions=[0, 0.5, 1]).scores
    net.eval()
    in_eval = M.evaluate(net, x, ex, samples=2, steps=4, fractions=[0, 0.5, 1]).scores
    for key, value in in_eval.items():
        assert torch.equal(in_train[key], value), key


def test_ssim_is_scikit_images_on_the_grey_picture_for_tensors_and_arrays() -> None:
    from skimage.metrics import structural_similarity

    from rdex import bench

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 32, 32, generator=gen)
    b = (a + 0.3 * torch.rand(3, 32, 32, generator=gen)).clamp(0, 1)
    want = structural_similarity(a.mean(0).numpy(), b.mean(0).numpy(), data_range=1.0)
    assert M.ssim(a, b) == float(want) < 1.0
    assert M.ssim(a.numpy(), b.numpy()) == M.ssim(a, b)
    assert M.ssim(a[:1], a[:1]) == 1.0
    assert bench.ssim is M.ssim  # the benchmark scores with the same function
    with pytest.raises(ValueError, match="picture"):
        M.ssim(a[None], b[None])
