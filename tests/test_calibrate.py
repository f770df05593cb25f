"""The lambda_k search (rdex.calibrate): it reaches its target, records its trace, refuses bad input."""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import pytest
import torch

import rdex.calibrate
from rdex.calibrate import Calibrated, calibrate, mask_kept_share, measure_keep_probability
from rdex.cli import main
from rdex.methods import METHODS, PixelRDE
from rdex.metrics.rate_distortion import obfuscated_outputs
from tiny_models import colour_classifier, make_image  # tests/ is on sys.path (conftest)

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"preset": "preview", "steps": 40, "samples": 8}
# Sparsity targets each method can reach on the 32 px test image (CartoonX keeps few of its
# ~1700 wavelet coefficients at any lambda_k after 40 steps, Pixel RDE a fifth of its pixels).
# ShearletX and WaveletX scale their spatial penalty with lambda_k (their ratio is kept).
SPARSITY = {
    "cartoonx": (0.008, 0.002),
    "pixel-rde": (0.1, 0.02),
    "shearletx": (0.008, 0.002),
    "waveletx": (0.002, 0.001),
}


def red_image() -> torch.Tensor:
    """A dim texture with a bright red square: the colour net's red probability sits in it."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=gen) * 0.4
    x[:, 0, 8:24, 8:24] = 0.9
    return x


@pytest.mark.parametrize("name", sorted(METHODS))
def test_keep_probability_search_lands_within_tolerance(name: str) -> None:
    model = colour_classifier()
    explainer = METHODS[name](model, **SETTINGS)
    x = red_image()
    [cal] = calibrate(explainer, x, keep_probability=0.9)
    assert cal.converged and abs(cal.value - 0.9) <= cal.tolerance == 0.02, cal.to_dict()
    # The value is the explanation's: measured again on the returned result, the same number.
    again = measure_keep_probability(explainer, x, cal.result)
    assert float(again[0]) == pytest.approx(cal.value, abs=1e-6)
    assert cal.result.config.lambda_k == cal.lambda_k
    assert explainer.config.lambda_k == METHODS[name].default_lambda_k  # the caller's is kept
    assert cal.runs[0].warm_from is None
    assert cal.runs[0].lambda_k == METHODS[name].default_lambda_k
    assert cal.result.extra["calibration"]["trace"][-1]["lambda_k"] == cal.runs[-1].lambda_k


@pytest.mark.parametrize("name", sorted(METHODS))
def test_sparsity_search_lands_within_tolerance(name: str) -> None:
    target, tol = SPARSITY[name]
    explainer = METHODS[name](colour_classifier(), **SETTINGS)
    [cal] = calibrate(explainer, red_image(), sparsity=target, tolerance=tol)
    kept = float(mask_kept_share(cal.result.mask)[0])
    assert cal.converged and abs(kept - target) <= tol and kept == cal.value, cal.to_dict()
    assert len(cal.runs) <= 8


def test_keep_probability_is_the_label_probability_under_the_obfuscation() -> None:
    # With the zeros obfuscation Pixel RDE's obfuscation is s * x: the measure by hand.
    model = colour_classifier()
    explainer = PixelRDE(model, obfuscation="zeros", preset="preview", steps=10, samples=2)
    x = red_image()
    result = explainer.explain(x)
    mask = result.mask[0]
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)[0, 0]
        kept = torch.softmax(model(mask * x), dim=1)[0, 0]
    assert int(result.target[0]) == 0
    assert float(measure_keep_probability(explainer, x, result)[0]) == pytest.approx(
        float(kept / p), rel=1e-5
    )
    # And with a random obfuscation, the mean over the seeded draws.
    gaussian = PixelRDE(model, preset="preview", steps=10, samples=2)
    result = gaussian.explain(x)
    out = obfuscated_outputs(
        model, x, result.mask, representation=gaussian.representation, samples=5, seed=3
    )
    expected = out[0, :, 0].mean() / result.target_prob[0]
    measured = measure_keep_probability(gaussian, x, result, samples=5, seed=3)
    assert float(measured[0]) == pytest.approx(float(expected), rel=1e-5)


def test_search_bisects_on_the_log_scale_and_warm_starts() -> None:
    model = colour_classifier()
    explainer = PixelRDE(model, **SETTINGS)
    [cal] = calibrate(
        explainer, red_image(), keep_probability=0.9, tolerance=1e-4, max_runs=6, warm_start=True
    )
    lams = [r.lambda_k for r in cal.runs]
    assert len(lams) == 6 and cal.stop.startswith("max_runs")
    # Bracketing steps by the factor 10, then each new lambda_k is the geometric mean of the
    # closest lambda_k on either side of the target seen so far. Each run starts from the mask
    # of the run with the largest lambda_k that kept more than the target, if any.
    for j in range(1, len(lams)):
        seen = cal.runs[:j]
        above = [r.lambda_k for r in seen if r.value > 0.9]
        below = [r.lambda_k for r in seen if r.value <= 0.9]
        assert cal.runs[j].warm_from == (max(above) if above else None)
        if above and below:
            assert lams[j] == pytest.approx(math.sqrt(max(above) * min(below)))
        else:
            assert lams[j] / lams[j - 1] == pytest.approx(10.0 if above else 0.1)
    # The chosen run is the closest one; the first run is a plain run at the default lambda_k,
    # the later ones start from an earlier mask, so they differ from runs from ones.
    assert cal.value == min((r.value for r in cal.runs), key=lambda v: abs(v - 0.9))
    [first] = calibrate(explainer, red_image(), keep_probability=0.9, tolerance=1e-4, max_runs=1)
    assert torch.equal(first.result.mask_flat, explainer.explain(red_image()).mask_flat)
    chosen = next(r for r in cal.runs if r.lambda_k == cal.lambda_k)
    assert chosen.warm_from is not None
    cold = PixelRDE(model, lambda_k=cal.lambda_k, **SETTINGS).explain(red_image())  # type: ignore[arg-type]
    assert not torch.equal(cold.mask_flat, cal.result.mask_flat)
    # By default every run is a plain run from ones.
    [plain] = calibrate(explainer, red_image(), keep_probability=0.9, tolerance=1e-4, max_runs=6)
    assert [r.warm_from for r in plain.runs] == [None] * 6
    cold = PixelRDE(model, lambda_k=plain.lambda_k, **SETTINGS).explain(red_image())  # type: ignore[arg-type]
    assert torch.equal(cold.mask_flat, plain.result.mask_flat)


def test_init_mask_is_the_starting_point_of_the_optimisation() -> None:
    model = colour_classifier()
    explainer = PixelRDE(model, preset="preview", steps=0, samples=2)
    x = red_image()
    start = [torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))]
    assert torch.equal(explainer.explain(x, init_mask=start).mask[0], start[0])
    assert torch.equal(explainer.explain(x).mask[0], torch.ones(1, 1, 32, 32))
    with pytest.raises(ValueError, match="shape"):
        explainer.explain(x, init_mask=[torch.ones(1, 1, 16, 16)])
    with pytest.raises(ValueError, match="bands"):
        explainer.explain(x, init_mask=[start[0], start[0]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        explainer.explain(x, init_mask=[torch.full((1, 1, 32, 32), float("nan"))])


def test_factory_and_unreachable_target() -> None:
    model = colour_classifier()

    def factory(lambda_k: float) -> PixelRDE:
        return PixelRDE(model, lambda_k=lambda_k, **SETTINGS)  # type: ignore[arg-type]

    # Between 1 and 100 Pixel RDE keeps nothing: 0.9 cannot be reached, the search says so.
    [cal] = calibrate(factory, red_image(), keep_probability=0.9, bounds=(1.0, 100.0))
    assert not cal.converged and cal.stop == "lower bound 1 still keeps too little"
    assert [r.lambda_k for r in cal.runs] == [10.0, 1.0]  # geometric mean of the bounds, then down
    with pytest.raises(TypeError, match="RDE explainer"):
        calibrate(lambda lam: None, red_image(), sparsity=0.1)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"keep_probability": 1.5}, "strictly between 0 and 1"),
        ({"keep_probability": -1}, "strictly between 0 and 1"),
        ({"keep_probability": float("nan")}, "finite"),
        ({"sparsity": 0.0}, "strictly between 0 and 1"),
        ({"sparsity": 1.0}, "strictly between 0 and 1"),
        ({"sparsity": float("inf")}, "finite"),
        ({"sparsity": True}, "number"),
        ({"sparsity": "0.1"}, "number"),
        ({}, "exactly one"),
        ({"keep_probability": 0.9, "sparsity": 0.1}, "exactly one"),
        ({"sparsity": 0.1, "bounds": (10.0, 1.0)}, "bounds"),
        ({"sparsity": 0.1, "bounds": (0.0, 1.0)}, "bounds"),
        ({"sparsity": 0.1, "max_runs": 0}, "max_runs"),
        ({"sparsity": 0.1, "tolerance": -0.1}, "tolerance"),
        ({"sparsity": 0.1, "factor": 1.0}, "factor"),
        ({"sparsity": 0.1, "threshold": 1.0}, "threshold"),
    ],
)
def test_bad_targets_and_settings_are_clear_errors(options: dict, message: str) -> None:
    explainer = PixelRDE(colour_classifier(), **SETTINGS)
    with pytest.raises(ValueError, match=message):
        calibrate(explainer, red_image(), **options)


def test_calibrated_explainer_checks_its_target_when_made() -> None:
    explainer = PixelRDE(colour_classifier(), **SETTINGS)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        Calibrated(explainer, keep_probability=1.5)
    with pytest.raises(ValueError, match="exactly one"):
        Calibrated(explainer)
    with pytest.raises(ValueError, match="one image at a time"):
        Calibrated(explainer, sparsity=0.1).explain(red_image().repeat(2, 1, 1, 1))


def test_docstring_examples_run() -> None:
    assert doctest.testmod(rdex.calibrate, raise_on_error=True).attempted > 0


@pytest.fixture
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # for --model tests.tiny_models:colour_net


def test_cli_keep_probability_records_lambda_and_trace(tmp_path: Path, repo_on_path: None) -> None:
    image = make_image(tmp_path / "red.png", "red")
    out = tmp_path / "out"
    args = ["explain", str(image), str(make_image(tmp_path / "green.png", "green"))]
    args += ["--model", "tests.tiny_models:colour_net", "--size", "32", "--method", "pixel-rde"]
    args += ["--preset", "preview", "--steps", "40", "--samples", "8", "--batch-size", "2"]
    args += ["--keep-probability", "0.9", "--out", str(out), "--quiet"]
    assert main(args) == 0
    for stem in ("red", "green"):
        record = json.loads((out / f"{stem}-pixel-rde.json").read_text())
        cal = record["calibration"]
        assert cal["goal"] == "keep_probability" and cal["target"] == 0.9
        assert record["settings"]["lambda_k"] == cal["lambda_k"]
        assert cal["trace"][0]["lambda_k"] == PixelRDE.default_lambda_k
        assert cal["lambda_k"] in [r["lambda_k"] for r in cal["trace"]]
        assert cal["runs"] == len(cal["trace"]) <= 8
        assert abs(cal["value"] - 0.9) <= cal["tolerance"]


def test_cli_sparsity_and_plain_runs(tmp_path: Path, repo_on_path: None) -> None:
    image = make_image(tmp_path / "red.png", "red")
    common = ["--model", "tests.tiny_models:colour_net", "--size", "32", "--method", "pixel-rde"]
    common += ["--preset", "preview", "--steps", "40", "--samples", "8", "--quiet"]
    assert (
        main(["explain", str(image), *common, "--sparsity", "0.2", "--out", str(tmp_path / "s")])
        == 0
    )
    record = json.loads((tmp_path / "s" / "red-pixel-rde.json").read_text())
    assert record["calibration"]["goal"] == "sparsity"
    assert abs(record["retained_fraction"] - 0.2) <= record["calibration"]["tolerance"]
    # Without a target nothing is searched: the default lambda_k, no calibration record.
    assert main(["explain", str(image), *common, "--out", str(tmp_path / "p")]) == 0
    record = json.loads((tmp_path / "p" / "red-pixel-rde.json").read_text())
    assert "calibration" not in record
    assert record["settings"]["lambda_k"] == PixelRDE.default_lambda_k


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--keep-probability", "1.5"], "strictly between 0 and 1"),
        (["--keep-probability", "-1"], "strictly between 0 and 1"),
        (["--keep-probability", "nan"], "finite"),
        (["--sparsity", "0.1", "--lambda-k", "5"], "--lambda-k"),
    ],
)
def test_cli_bad_targets_are_one_line_errors(
    tmp_path: Path,
    repo_on_path: None,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    image = make_image(tmp_path / "red.png", "red")
    out = tmp_path / "out"
    args = ["explain", str(image), "--model", "tests.tiny_models:colour_net", "--size", "32"]
    assert main([*args, "--steps", "2", "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not list(out.glob("*.json"))


def test_cli_keep_probability_and_sparsity_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "chelsea", "--keep-probability", "0.9", "--sparsity", "0.1"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.slow
def test_real_model_keep_probability_search() -> None:
    # The study's first case (docs/how-to/choose-lambda.md): chelsea at 128 px, CartoonX preview.
    from rdex.images import load_batch
    from rdex.methods import CartoonX
    from rdex.models import DEFAULT_MODEL, load_classifier

    model = load_classifier(DEFAULT_MODEL)
    _, x = load_batch(["chelsea"], size=128)
    explainer = CartoonX(model, preset="preview", steps=100)  # the study's 100 steps
    [cal] = calibrate(explainer, x, keep_probability=0.9)
    assert cal.converged and len(cal.runs) <= 8, cal.to_dict()
    again = float(measure_keep_probability(explainer, x, cal.result)[0])
    assert again == pytest.approx(cal.value, abs=1e-6) and abs(again - 0.9) <= cal.tolerance
    # The default lambda_k keeps too much here, so the search had to raise it.
    assert cal.runs[0].value > 0.9 + cal.tolerance and cal.lambda_k > explainer.config.lambda_k
