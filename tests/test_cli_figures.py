"""The figure commands end to end: PNGs of the expected layout, without a display, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.tiny_models import ColourNet, make_image
from torch import nn

import rdex.cli
import rdex.viz

MODEL = "tests.tiny_models:colour_net"
RDE_FAST = ["--steps", "2", "--samples", "2", "--quiet"]


class ShiftedColourNet(ColourNet):
    """Names the next colour: a red image comes out green."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).roll(1, dims=1)


def shifted_colour_net() -> nn.Module:
    """Factory for ``--model tests.test_cli_figures:shifted_colour_net``."""
    return ShiftedColourNet()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> object:
    """Run ``rdex`` with only the figure commands registered; record every saved figure's grid."""
    monkeypatch.setattr(rdex.cli, "COMMANDS", ("compare", "sweep", "models_compare", "dwt"))
    saved: list[tuple[Path, tuple[int, int], list[str]]] = []
    original = rdex.viz.save_figure

    def recording(fig, path, **kwargs):  # type: ignore[no-untyped-def]
        grid = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
        assert len(fig.axes) == grid[0] * grid[1]
        saved.append((Path(path), grid, [a.get_title() for a in fig.axes]))
        return original(fig, path, **kwargs)

    monkeypatch.setattr(rdex.viz, "save_figure", recording)

    def run(*argv: str) -> int:
        return rdex.cli.main(list(argv))

    run.saved = saved  # type: ignore[attr-defined]
    return run


def png_size(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    return [
        str(make_image(tmp_path / "red.png", "red")),
        str(make_image(tmp_path / "blue.png", "blue", seed=1)),
    ]


def test_compare_writes_the_grid(
    cli, images, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = cli(
        "compare", *images, "--model", MODEL, "--size", "32", "--methods", "cartoonx,pixel-rde,ig,gb,lrp",
        "--true-label", "0", "1", "--out", str(out), "--pdf", *RDE_FAST,
    )  # fmt: skip
    assert code == 0
    ((path, grid, titles),) = cli.saved
    assert path == out / "compare-red-blue.png"
    assert grid == (2, 6)
    assert titles[1:6] == [
        "CartoonX",
        "Pixel RDE",
        "Integrated Gradients",
        "Guided Backprop",
        "LRP",
    ]
    width, height = png_size(path)
    assert width > 2 * height  # six columns, two rows
    assert (out / "compare-red-blue.pdf").stat().st_size > 1000
    saved = np.load(out / "compare-red-blue.npz")
    assert saved["cartoonx_1"].shape == (1, 32, 32) and list(saved["methods"])[-1] == "lrp"
    stdout = capsys.readouterr().out
    assert "red.png: predicted class 0" in stdout and "(correct)" in stdout
    assert "blue.png: predicted class 2" in stdout and "(misclassified)" in stdout


def test_sweep_lambda_rows_for_both_methods(cli, images, tmp_path: Path) -> None:
    code = cli(
        "sweep", images[0], "--param", "lambda-k", "--values", "0,20,40", "--pixel-values", "0,4",
        "--model", MODEL, "--size", "32", "--out", str(tmp_path), *RDE_FAST,
    )  # fmt: skip
    assert code == 0
    ((path, grid, titles),) = cli.saved
    assert path.name == "sweep-lambda-k-red.png"
    assert grid == (2, 4)
    assert titles[1] == "CartoonX\nλk = 0" and titles[5] == "Pixel RDE\nλk = 0"
    png_size(path)


@pytest.mark.parametrize(
    ("param", "values", "cols"),
    [("obfuscation", "gaussian,zeros", 3), ("distortion", "label,l2,kl", 4)],
)
def test_sweep_obfuscation_and_distortion(
    cli, images, tmp_path: Path, param: str, values: str, cols: int
) -> None:
    code = cli(
        "sweep", images[1], "--param", param, "--values", values, "--model", MODEL, "--size", "32",
        "--out", str(tmp_path), *RDE_FAST,
    )  # fmt: skip
    assert code == 0
    ((path, grid, titles),) = cli.saved
    assert grid == (1, cols)
    assert titles[2].endswith(values.split(",")[1])
    png_size(path)


def test_models_compare_one_column_per_model(cli, images, tmp_path: Path) -> None:
    code = cli(
        "models-compare", images[0], "--models", f"{MODEL},tests.test_cli_figures:shifted_colour_net",
        "--true-label", "0", "--size", "32", "--out", str(tmp_path), *RDE_FAST,
    )  # fmt: skip
    assert code == 0
    ((path, grid, titles),) = cli.saved
    assert grid == (1, 3)
    assert titles[1] == f"{MODEL}\nclass 0 (100%)"
    assert titles[2].startswith("tests.test_cli_figures:shifted_colour_net\nclass 1")
    png_size(path)


def test_dwt_with_and_without_a_mask(cli, images, tmp_path: Path) -> None:
    from rdex.images import load_image
    from rdex.io import save_npz
    from rdex.methods import CartoonX, PixelRDE

    x = load_image(images[0], size=32)[None]
    save_npz(
        CartoonX(ColourNet(), preset="fast", levels=3, steps=2, samples=2).explain(x),
        tmp_path / "cx.npz",
    )
    assert cli("dwt", images[0], "--size", "32", "--levels", "3", "--out", str(tmp_path)) == 0
    assert cli("dwt", images[0], "--size", "32", "--levels", "3", "--mask", str(tmp_path / "cx.npz"),
               "--out", str(tmp_path), "--name", "masked") == 0  # fmt: skip
    (plain, g1, _), (masked, g2, titles) = cli.saved
    assert g1 == (1, 2) and g2 == (1, 5)
    assert titles[2] == "mask in coefficient space"
    assert png_size(plain)[0] < png_size(masked)[0]

    save_npz(
        PixelRDE(ColourNet(), preset="fast", steps=1, samples=2).explain(x), tmp_path / "px.npz"
    )
    assert (
        cli(
            "dwt",
            images[0],
            "--size",
            "32",
            "--mask",
            str(tmp_path / "px.npz"),
            "--out",
            str(tmp_path),
        )
        == 2
    )
    assert cli("dwt", images[0], "--size", "64", "--levels", "3", "--mask", str(tmp_path / "cx.npz"),
               "--out", str(tmp_path)) == 2  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--methods", "cartoonx,gradcam"], "unknown method 'gradcam'"),
        (["--true-label", "0", "1", "2"], "3 labels for 1 images"),
        (["--target", "true"], "--target true needs a --true-label"),
    ],
)
def test_compare_user_errors_are_one_line(cli, images, tmp_path, capsys, argv, message) -> None:
    code = cli(
        "compare",
        images[0],
        "--model",
        MODEL,
        "--size",
        "32",
        "--out",
        str(tmp_path),
        *argv,
        *RDE_FAST,
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1] and err[-1].startswith("rdex compare: error:")
    assert not cli.saved
