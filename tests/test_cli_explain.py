"""`rdex explain` and `rdex demo` end to end: files written, and what they hold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdex.cli import main
from tiny_models import make_image  # tests/ is on sys.path (conftest)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # for --model tests.tiny_models:colour_net


def test_explain_writes_figure_png_npz_json_per_method(tmp_path: Path, repo_on_path: None) -> None:
    from rdex.images import load_image
    from rdex.methods import CartoonX
    from rdex.models import load_classifier
    from rdex.rde import preset

    image = make_image(tmp_path / "red.png", "red")
    out = tmp_path / "out"
    args = ["explain", str(image), "--model", "tests.tiny_models:colour_net", "--size", "32"]
    args += ["--method", "cartoonx,pixel-rde", "--preset", "preview", "--steps", "3"]
    args += ["--samples", "2", "--target", "class 2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    for method in ("cartoonx", "pixel-rde"):
        for suffix in ("-figure.png", ".png", ".npz", ".json"):
            path = out / f"red-{method}{suffix}"
            assert path.stat().st_size > 0, path
        record = json.loads((out / f"red-{method}.json").read_text())
        assert record["method"] == method and record["target"] == 2
        assert record["settings"]["steps"] == 3 and record["settings"]["samples"] == 2
        assert record["image"] == image.name
    # The saved CartoonX mask is the library's for the same settings.
    model = load_classifier("tests.tiny_models:colour_net")
    x = load_image(image, size=32)[None]
    config = preset("preview", steps=3, samples=2, lambda_k=CartoonX.default_lambda_k)
    direct = CartoonX(model, config=config).explain(x, target=2)
    saved = np.load(out / "red-cartoonx.npz")
    np.testing.assert_allclose(saved["mask_flat"], direct.mask_flat[0].numpy(), atol=1e-5)
    explanation = np.asarray(Image.open(out / "red-cartoonx.png"))
    assert explanation.shape[:2] == (32, 32)


def test_explain_user_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], repo_on_path: None
) -> None:
    image = make_image(tmp_path / "red.png", "red")
    common = ["--model", "tests.tiny_models:colour_net", "--size", "32", "--out", str(tmp_path)]
    assert main(["explain", str(image), "--method", "gradcam", *common]) == 2
    assert main(["explain", str(image), "--target", "zebra", *common]) == 2
    assert main(["explain", str(tmp_path / "missing.jpg"), *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("rdex explain: error:") for line in err)
    assert "Traceback" not in "\n".join(err)


def test_demo_explains_the_samples_with_the_default_model(tmp_path: Path) -> None:
    # The real default model on small images: the same code path as `make demo`, in seconds.
    out = tmp_path / "demo"
    assert main(["demo", "--size", "32", "--out", str(out), "--quiet"]) == 0
    grid = Image.open(out / "demo.png")
    assert grid.size[0] > 300 and grid.size[1] > 200
    for name in ("chelsea", "coffee"):
        for method in ("cartoonx", "pixel-rde"):
            record = json.loads((out / f"{name}-{method}.json").read_text())
            assert record["settings"]["steps"] == 200  # the preview schedule
            assert (out / f"{name}-{method}-figure.png").stat().st_size > 0
