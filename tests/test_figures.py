"""Figure builders: layouts, the red/green label logic, heatmaps and the DWT view."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch
from matplotlib.colors import to_rgba
from torch import nn

from rdex.figures import compare_methods, compare_models, mask_from_npz, sweep
from rdex.plots import compare_figure, dwt_figure, dwt_mosaic, models_figure, sweep_figure
from rdex.rde import preset
from rdex.viz import CORRECT_COLOR, WRONG_COLOR, heatmap, label_color

FAST = {"config": preset("fast", steps=2, samples=2)}


class ColourNet(nn.Module):
    """Logits: the mean of each colour channel (classes red, green, blue)."""

    labels = ["red", "green", "blue"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 8.0 * x.mean(dim=(2, 3))

    def label_index(self, label: int | str) -> int:
        return label if isinstance(label, int) else self.labels.index(label)


class ResidualColourNet(ColourNet):
    """A residual addition: LRP's relevance is not conserved, so LRP refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv(x))
        return 8.0 * (y + y).mean(dim=(2, 3))


def coloured(channel: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(channel)
    x = torch.rand(3, size, size, generator=g) * 0.3
    x[channel] += 0.6
    return x


def grid_shape(fig) -> tuple[int, int]:
    rows, cols = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
    assert len(fig.axes) == rows * cols
    return rows, cols


def same_colour(a: object, b: str) -> bool:
    return to_rgba(a) == to_rgba(b)


def test_label_color() -> None:
    assert label_color(3, 3) == CORRECT_COLOR
    assert label_color(3, 4) == WRONG_COLOR
    assert label_color(3, None) == "black"


def test_compare_figure_layout_and_label_colours() -> None:
    x = torch.stack([coloured(0), coloured(2)])  # predicted red, blue
    comparison = compare_methods(
        ResidualColourNet(),
        x,
        ["cartoonx", "ig", "lrp"],
        names=["r", "b"],
        settings={"cartoonx": FAST, "integrated-gradients": {"n_steps": 16}},
    )
    assert comparison.methods == ["cartoonx", "integrated-gradients", "lrp"]
    assert (
        isinstance(comparison.maps["lrp"][0], str) and "not conserved" in comparison.maps["lrp"][0]
    )
    assert "lrp" in comparison.notes
    fig = compare_figure(comparison, true_labels=[0, 1])  # first correct, second misclassified
    assert grid_shape(fig) == (2, 4)
    axes = np.array(fig.axes).reshape(2, 4)
    assert axes[0, 0].get_title().startswith("red")
    assert same_colour(axes[0, 0].title.get_color(), CORRECT_COLOR)
    assert axes[1, 0].get_title().startswith("blue")
    assert same_colour(axes[1, 0].title.get_color(), WRONG_COLOR)
    assert [a.get_title() for a in axes[0, 1:]] == ["CartoonX", "Integrated Gradients", "LRP"]
    texts = [t.get_text() for t in axes[0, 3].texts]
    assert any(t.startswith("not available") for t in texts)
    assert axes[0, 1].images and axes[0, 2].images
    blank = np.asarray(axes[0, 3].images[0].get_array())
    assert blank.shape == (32, 32) and np.all(blank == 0.94)  # same size as the maps, no map drawn
    no_truth = compare_figure(comparison)
    assert same_colour(no_truth.axes[0].title.get_color(), "black")


def test_comparison_round_trip(tmp_path) -> None:
    from rdex.figures import load_comparison, save_comparison

    x = torch.stack([coloured(0), coloured(1)])
    comparison = compare_methods(ResidualColourNet(), x, ["gb", "lrp"], names=["r", "g"])
    assert comparison.maps["lrp"][1].startswith("relevance not conserved: sum")
    loaded = load_comparison(save_comparison(comparison, tmp_path / "c.npz"))
    assert loaded.methods == comparison.methods and loaded.names == ["r", "g"]
    assert loaded.labels == ["red", "green", "blue"] and loaded.notes == comparison.notes
    assert loaded.maps["lrp"] == comparison.maps["lrp"]
    for a, b in zip(
        loaded.maps["guided-backprop"], comparison.maps["guided-backprop"], strict=True
    ):
        assert torch.equal(a, b)
    assert torch.equal(loaded.probs, comparison.probs) and torch.equal(
        loaded.images, comparison.images
    )
    assert grid_shape(compare_figure(loaded)) == (2, 3)
    with pytest.raises(FileNotFoundError):
        load_comparison(tmp_path / "missing.npz")


def test_compare_explains_a_named_target() -> None:
    x = coloured(0)[None]
    comparison = compare_methods(ColourNet(), x, "ig", target="green")
    assert comparison.targets.tolist() == [1]
    fig = compare_figure(comparison)
    assert "explaining: green" in fig.axes[0].get_title()


def test_sweep_figure_rows_per_image_and_method() -> None:
    x = torch.stack([coloured(0), coloured(1)])
    result = sweep(
        ColourNet(),
        x,
        "lambda-k",
        {"cartoonx": [0, 20, 40], "pixel-rde": [0, 4]},
        configs={"cartoonx": FAST["config"], "pixel-rde": FAST["config"]},
    )
    assert result.values == {"cartoonx": [0.0, 20.0, 40.0], "pixel-rde": [0.0, 4.0]}
    assert [len(r) for r in result.maps["pixel-rde"]] == [2, 2]
    fig = sweep_figure(result)
    assert grid_shape(fig) == (4, 4)
    axes = np.array(fig.axes).reshape(4, 4)
    assert axes[0, 2].get_title() == "CartoonX\nλk = 20"
    assert axes[1, 2].get_title() == "Pixel RDE\nλk = 4"
    assert not axes[1, 3].axison  # the shorter Pixel RDE row leaves its last cell empty


def test_sweep_distortion_and_obfuscation_values_are_checked() -> None:
    x = coloured(0)[None]
    result = sweep(
        ColourNet(), x, "distortion", ["label", "kl"], configs={"cartoonx": FAST["config"]}
    )
    assert list(result.values) == ["cartoonx"]
    assert grid_shape(sweep_figure(result)) == (1, 3)
    with pytest.raises(ValueError, match="unknown distortion|distortion"):
        sweep(ColourNet(), x, "distortion", ["nope"])
    with pytest.raises(ValueError):
        sweep(ColourNet(), x, "obfuscation", ["smoke"])
    with pytest.raises(ValueError, match="not an RDE method"):
        sweep(ColourNet(), x, "lambda-k", [1], methods=["ig"])


def test_models_figure_labels_each_model() -> None:
    class BlueNet(ColourNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x).roll(1, dims=1)  # says green for a red image

    x = coloured(0)[None]
    runs = compare_models(
        {"colour": ColourNet(), "shifted": BlueNet()}, x, settings=FAST, true_labels=["red"]
    )
    assert [r.true_labels for r in runs] == [[0], [0]]
    fig = models_figure(x, runs)
    assert grid_shape(fig) == (1, 3)
    assert fig.axes[1].get_title().startswith("colour\nred")
    assert same_colour(fig.axes[1].title.get_color(), CORRECT_COLOR)
    assert fig.axes[2].get_title().startswith("shifted\ngreen")
    assert same_colour(fig.axes[2].title.get_color(), WRONG_COLOR)


def test_heatmap_clips_outliers_at_the_99th_percentile() -> None:
    values = torch.arange(1, 10001, dtype=torch.float32)
    values[0] = -1e6  # one huge (negative) outlier
    attr = values.view(1, 1, 100, 100)
    h = heatmap(attr)
    q = np.percentile(np.abs(values.numpy()), 99, method="linear")
    expected = np.clip(np.abs(values.numpy()) / q, 0, 1).reshape(1, 1, 100, 100)
    np.testing.assert_allclose(h.numpy(), expected, rtol=1e-5)
    assert float(h.max()) == 1.0 and float(h.min()) >= 0.0
    # channels are summed (signed) before the magnitude; all-zero stays zero
    two = torch.stack([attr[0, 0], -attr[0, 0]])[None]
    assert float(heatmap(two).abs().max()) == 0.0


def test_dwt_mosaic_matches_pywt_layout() -> None:
    from rdex.representations import Wavelet

    img = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bands = [b[0, 0].numpy() for b in Wavelet("db3", levels=3, mode="zero").encode(img)]
    mosaic, slices = dwt_mosaic(bands, normalise=False)
    ref, _ = pywt.coeffs_to_array(
        pywt.wavedec2(img[0, 0].numpy(), "db3", level=3, mode="zero"), padding=np.nan
    )
    np.testing.assert_allclose(mosaic, ref, atol=1e-10)
    assert len(slices) == 1 + 3 * 3
    shown, _ = dwt_mosaic(bands)
    assert np.nanmin(shown) >= 0.0 and np.nanmax(shown) == 1.0


def test_dwt_figure_with_a_saved_cartoonx_mask(tmp_path) -> None:
    from rdex.io import save_npz
    from rdex.methods import CartoonX, PixelRDE

    x = coloured(1, size=32)
    result = CartoonX(ColourNet(), preset="fast", levels=3, steps=2, samples=2).explain(x[None])
    save_npz(result, tmp_path / "cx.npz")
    bands, explanation = mask_from_npz(tmp_path / "cx.npz")
    assert [b.shape for b in bands] == [
        tuple(m.shape[2:]) if i == 0 else tuple(m.shape[2:]) for i, m in enumerate(result.mask)
    ]
    fig = dwt_figure(x, levels=3, mask=bands, explanation=explanation)
    assert grid_shape(fig) == (1, 5)
    assert [a.get_title() for a in fig.axes[1:]] == [
        "DWT coefficients (magnitude)",
        "mask in coefficient space",
        "masked coefficients",
        "CartoonX",
    ]
    assert grid_shape(dwt_figure(x, levels=3)) == (1, 2)
    with pytest.raises(ValueError, match="does not fit"):
        dwt_figure(x, levels=4, mask=bands)
    pixel = PixelRDE(ColourNet(), preset="fast", steps=1, samples=2).explain(x[None])
    save_npz(pixel, tmp_path / "px.npz")
    with pytest.raises(ValueError, match="no wavelet mask"):
        mask_from_npz(tmp_path / "px.npz")
    with pytest.raises(FileNotFoundError):
        mask_from_npz(tmp_path / "missing.npz")
