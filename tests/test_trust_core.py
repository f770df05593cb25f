"""Trust in the core (issue 11): every option does what it says, and bad input ends in a clear error.

Each test fails on the code before its fix: the distortion of an explicit config was replaced by
the default ``"label"``; ``lambda = 0`` was not the greyscale image with the real model; a batch
differed from per-image runs at ``fast`` learning rates; an empty explanation said nothing; WordNet
ids were refused by ``rdex explain``; NaN and Inf passed as results; bad shapes, dtypes and targets
gave raw torch errors.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.test_rde import images
from torch import nn

import rdex
from rdex.cli import main
from rdex.distortions import DISTORTIONS
from rdex.images import load_image
from rdex.methods import METHODS, CartoonX, PixelRDE
from rdex.obfuscations import make_obfuscation
from rdex.rde import RDE, ModelError, NonFiniteError, RDEConfig, preset
from rdex.representations import Pixel
from tiny_models import colour_classifier, make_image, sensitive_net, tiny_net

ROOT = Path(__file__).resolve().parents[1]
RDEX = Path(rdex.__file__).resolve().parent


def imagenet_tiny() -> nn.Module:
    """A tiny network with 1000 outputs: wrapped, it gets the ImageNet labels
    (``--model tests.test_trust_core:imagenet_tiny``)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 1000),
    )


def fast_like(**changes: object) -> RDEConfig:
    """The ``fast`` preset's learning rates and schedule, a few steps and samples."""
    return preset("fast", lambda_k=2.0, steps=12, samples=4).replace(**changes)


# --------------------------------------------------------------------------------------------
# 1. The distortion of an explicit config is kept


# The distortion each method uses when none is configured (ShearletX/WaveletX: their paper's).
OWN_DISTORTION = {"shearletx": "max-label", "waveletx": "max-label"}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_explicit_config_distortion_is_kept_unless_one_is_named(name: str) -> None:
    method = METHODS[name]
    net, x = sensitive_net(), images(1)
    kl = method(net, config=fast_like(distortion="kl"))
    assert kl.config.distortion == "kl"
    label = method(net, config=fast_like())
    assert label.config.distortion == "label"
    assert not torch.allclose(kl.explain(x).mask_flat, label.explain(x).mask_flat, atol=1e-3)
    # A distortion named next to the config wins, and so does a callable.
    assert method(net, config=fast_like(distortion="kl"), distortion="l2").config.distortion == "l2"
    named = method(net, config=fast_like(distortion="kl"), distortion=rdex.DISTORTIONS["label"])
    torch.testing.assert_close(named.explain(x).mask_flat, label.explain(x).mask_flat)
    assert method(net).config.distortion == OWN_DISTORTION.get(name, "label")  # the paper's


# The CLI options of a short run of the tiny ImageNet-shaped model (explain and sweep share them).
TINY_RUN = [
    *("--model", "tests.test_trust_core:imagenet_tiny"),
    *("--size", "32", "--steps", "6", "--samples", "2"),
]


def _explain_cli(tmp_path: Path, name: str, *options: str) -> dict[str, np.ndarray]:
    out = tmp_path / name
    code = main(
        [
            "explain",
            "sky",
            *TINY_RUN,
            "--quiet",
            "--out",
            str(out),
            *options,
        ]
    )
    assert code == 0
    (npz,) = out.glob("*.npz")
    (record,) = out.glob("*.json")
    data = dict(np.load(npz))
    data["record"] = json.loads(record.read_text())
    return data


def test_cli_explain_distortion_changes_the_mask(tmp_path: Path) -> None:
    label = _explain_cli(tmp_path, "label", "--distortion", "label", "--lambda-k", "1")
    kl = _explain_cli(tmp_path, "kl", "--distortion", "kl", "--lambda-k", "1")
    assert kl["record"]["settings"]["distortion"] == "kl"
    assert label["record"]["settings"]["distortion"] == "label"
    assert float(np.abs(kl["mask_flat"] - label["mask_flat"]).max()) > 1e-3


def test_cli_sweep_distortion_draws_different_maps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rdex.figures

    seen = []
    original = rdex.figures.sweep

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = original(*args, **kwargs)
        seen.append(result)
        return result

    monkeypatch.setattr(rdex.figures, "sweep", spy)
    code = main(
        [
            "sweep",
            "sky",
            "--param",
            "distortion",
            "--values",
            "label,kl",
            *TINY_RUN,
            "--lambda-k",
            "1",
            "--quiet",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    (result,) = seen
    label_map, kl_map = result.maps["cartoonx"][0]
    assert float((label_map - kl_map).abs().max()) > 1e-3


def test_batch_distortion_changes_the_masks(tmp_path: Path) -> None:
    from rdex.batch import read_manifest, run_batch
    from rdex.images import sample_image, save_image

    save_image(sample_image("sky", size=32), tmp_path / "in" / "sky.png")
    masks = {}
    for distortion in ("label", "kl"):
        out = tmp_path / distortion
        run_batch(
            tmp_path / "in",
            out,
            model="tests.test_trust_core:imagenet_tiny",
            methods=["cartoonx"],
            configs=fast_like(distortion=distortion, lambda_k=1.0, steps=6, samples=2),
            size=32,
            metrics=False,
            progress=False,
        )
        (record,) = read_manifest(out)
        assert record["settings"]["config"]["distortion"] == distortion
        masks[distortion] = np.load(out / record["files"]["npz"]["path"])["mask_flat"]
    assert float(np.abs(masks["label"] - masks["kl"]).max()) > 1e-3


# --------------------------------------------------------------------------------------------
# 2. lambda = 0 is the greyscale image


# Every distortion that compares Phi(y) with Phi(x); "max-label" asks for probability one instead.
@pytest.mark.parametrize("distortion", [d for d in DISTORTIONS if d != "max-label"])
def test_distortion_and_gradient_are_exactly_zero_for_the_unmasked_input(distortion: str) -> None:
    # lambda = 0 and the fast learning rate: any round-off gradient would move the mask.
    x = images(2, size=64, seed=3)
    cfg = fast_like(lambda_k=0.0, distortion=distortion, steps=3)
    result = CartoonX(tiny_net(), config=cfg).explain(x)
    assert float(result.history["distortion"].abs().max()) == 0.0
    assert float(result.mask_flat.min()) == 1.0


@pytest.mark.slow
def test_lambda_zero_is_the_greyscale_image_with_the_real_model_at_256() -> None:
    # Figure 7: "CartoonX is simply the grayscale image for lambda = 0", at the paper's size and
    # with the default model, where round-off used to drive 73 % of the mask below 1.
    model = rdex.load_classifier()
    x = rdex.sample_image("chelsea", size=256).unsqueeze(0)
    cfg = preset("fast", lambda_k=0.0, steps=3, samples=4)
    result = CartoonX(model, config=cfg).explain(x)
    assert float(result.mask_flat.min()) == 1.0
    assert float(result.history["distortion"].abs().max()) == 0.0
    grey = x.mean(dim=1, keepdim=True)
    torch.testing.assert_close(result.explanation, grey, atol=1e-5, rtol=0)
    assert result.warnings == [[]]


# --------------------------------------------------------------------------------------------
# 3. A batch gives the masks of per-image runs, bit for bit


def dense_net(size: int = 32, gain: float = 30.0) -> nn.Module:
    """One dense layer over all pixels: its matrix product rounds a row differently with the
    batch size (about 2e-7 here), as real models do, which the old loop turned into different
    masks for the same image."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 10))
    with torch.no_grad():
        net[1].weight.mul_(gain)
    return net


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(
            m,
            id=name,
            marks=pytest.mark.xfail(
                strict=True,
                reason="ShearletX's batched masks differ from per-image runs by one float32 ulp "
                "(1.2e-7): the shearlet transform's batch rounding, not yet made batch-invariant",
            ),
        )
        if name == "shearletx"
        else pytest.param(m, id=name)
        for name, m in METHODS.items()
    ],
)
@pytest.mark.parametrize("chunk", [None, 3])
def test_batch_is_bit_identical_to_per_image_runs_at_fast_learning_rates(
    method: type, chunk: int | None
) -> None:
    x = images(3, seed=2)
    explainer = method(dense_net(), config=fast_like(sample_chunk=chunk))
    batched = explainer.explain(x)
    assert float(batched.mask_flat.std()) > 1e-3  # the distortion shaped the masks
    for i in range(3):
        alone = explainer.explain(x[i : i + 1])
        assert torch.equal(batched.mask_flat[i : i + 1], alone.mask_flat)
        assert torch.equal(batched.history["loss"][:, i], alone.history["loss"][:, 0])
    # ... and in any order, with the images in other company.
    again = explainer.explain(x[[2, 0]])
    assert torch.equal(again.mask_flat, batched.mask_flat[[2, 0]])


@pytest.mark.slow
def test_batch_is_bit_identical_to_per_image_runs_with_the_real_model_at_128() -> None:
    model = rdex.load_classifier()
    x = torch.stack([rdex.sample_image(n, size=128) for n in ("chelsea", "coffee")])
    for method in (CartoonX, PixelRDE):
        explainer = method(model, config=preset("fast", steps=4, samples=4))
        batched = explainer.explain(x)
        for i in range(2):
            assert torch.equal(batched.mask_flat[i : i + 1], explainer.explain(x[i]).mask_flat)


# --------------------------------------------------------------------------------------------
# 4. An empty or unsupported explanation says so


def test_low_target_probability_and_empty_mask_are_reported(tmp_path: Path) -> None:
    from rdex.io import save_result
    from rdex.viz import explanation_figure

    net, x = sensitive_net(), images(1)
    # A red picture for a colour classifier: an explanation that beats deleting everything
    # (rdex.objective), so nothing to report.
    red = load_image(make_image(tmp_path / "red.png", "red"), size=32)[None]
    fine = PixelRDE(colour_classifier(), config=fast_like(lambda_k=0.5, steps=60)).explain(red)
    assert fine.warnings == [[]]
    assert fine.extra["objective"][0] < fine.extra["empty_objective"][0]
    empty = PixelRDE(net, config=fast_like(lambda_k=1e4, lr=0.5, schedule="constant")).explain(x)
    (notes,) = empty.warnings
    assert len(notes) == 1 and "empty" in notes[0] and "lambda_k=10000" in notes[0]
    assert "A.8" in notes[0] and "--lambda-k" in notes[0]

    class Sure(nn.Module):  # label 1 has probability e^-40 whatever the image
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([x.mean(dim=(1, 2, 3)) * 0 + 40.0, x.mean(dim=(1, 2, 3))], dim=1)

    unsupported = PixelRDE(Sure(), config=fast_like(steps=20, lambda_k=5.0)).explain(x, target=1)
    text = " ".join(unsupported.warnings[0])
    assert "almost no support" in text and "--target" in text
    _, record = save_result(empty, tmp_path, "empty")
    assert record["warnings"] == notes
    assert json.loads((tmp_path / "empty.json").read_text())["warnings"] == notes
    fig = explanation_figure(x, empty)
    assert any("empty" in t.get_text() for t in fig.texts)
    fig_ok = explanation_figure(red, fine)
    assert not fig_ok.texts


def test_cli_explain_prints_the_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _explain_cli(
        tmp_path, "high", "--lambda-k", "100000", "--lr", "0.5", "--schedule", "constant"
    )
    assert data["record"]["warnings"]
    err = capsys.readouterr().err
    assert "warning: sky [cartoonx]: the explanation is (nearly) empty" in err


def test_batch_manifest_records_warnings(tmp_path: Path) -> None:
    from rdex.batch import read_manifest, run_batch
    from rdex.images import sample_image, save_image

    save_image(sample_image("sky", size=32), tmp_path / "in" / "sky.png")
    run_batch(
        tmp_path / "in",
        tmp_path / "out",
        model="tests.test_trust_core:imagenet_tiny",
        methods=["cartoonx"],
        configs=fast_like(lambda_k=1e5, lr=0.5, schedule="constant", samples=2),
        size=32,
        metrics=False,
        progress=False,
    )
    (record,) = read_manifest(tmp_path / "out")
    assert record["status"] == "ok"
    assert any("empty" in w for w in record["warnings"])


# --------------------------------------------------------------------------------------------
# 5. One label lookup


def test_one_label_lookup_for_api_and_cli(tmp_path: Path) -> None:
    from rdex.batch.worker import _label_lookup
    from rdex.models import resolve_label, wrap_classifier

    clf = wrap_classifier(imagenet_tiny())
    for label in (281, "281", "tabby", "tabby cat", "n02123045", " N02123045 "):
        assert resolve_label(clf, label.lower() if isinstance(label, str) else label) == 281
        assert _label_lookup(clf, str(label).lower()) == 281
    assert clf.label_index("n02123045") == 281
    r = PixelRDE(clf, config=fast_like(steps=1)).explain(images(1), target="n02123045")
    assert r.target.tolist() == [281]
    with pytest.raises(ValueError, match="no label names"):
        resolve_label(tiny_net(), "n02123045")
    data = _explain_cli(tmp_path, "wnid", "--target", "n02123045")
    assert data["record"]["target"] == 281 and data["record"]["target_label"] == "tabby"


# --------------------------------------------------------------------------------------------
# 11. Non-finite options, inputs and model outputs


@pytest.mark.parametrize("field", ["lambda_k", "lr", "lr_final", "init", "distortion_scale"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_config_rejects_non_finite_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RDEConfig(**{field: value})  # type: ignore[arg-type]


def test_config_rejects_bad_types_and_ranges() -> None:
    for changes in (
        {"steps": 2.5},
        {"samples": "4"},
        {"seed": 2**64},
        {"clip": (1.0, 0.0)},
        {"clip": (0.0, math.nan)},
        {"model_output": "logits"},
        {"distortion_scale": 0.0},
    ):
        with pytest.raises(ValueError):
            RDEConfig(**changes)  # type: ignore[arg-type]


def test_non_finite_obfuscation_constants_are_refused() -> None:
    for spec in ("constant:nan", "constant:inf", "blur:nan", "blur:inf"):
        with pytest.raises(ValueError, match="finite"):
            make_obfuscation(spec)


def test_non_finite_pixels_are_refused() -> None:
    x = images(1)
    for bad in (math.nan, math.inf):
        y = x.clone()
        y[0, 0, 3, 3] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            CartoonX(tiny_net(), config=fast_like(steps=1)).explain(y)


class NaNWhenDark(nn.Module):
    """Finite on the input, NaN (or Inf) once the obfuscations darken the image."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.net = tiny_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        dark = (x.mean(dim=(1, 2, 3)) < 0.45).view(-1, 1)
        return torch.where(dark, torch.full_like(out, self.value), out)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_model_turning_non_finite_during_the_run_is_an_error(value: float) -> None:
    x = images(1) * 0.5 + 0.3  # mean 0.55: deleting pixels (zeros) darkens it below 0.45
    cfg = fast_like(steps=20, lambda_k=50.0, fold_batchnorm=False)
    with pytest.raises(NonFiniteError, match="at step"):
        PixelRDE(NaNWhenDark(value), config=cfg, obfuscation="zeros").explain(x)


def test_a_model_non_finite_on_the_input_is_an_error() -> None:
    with pytest.raises(NonFiniteError, match="model's output"):
        PixelRDE(NaNWhenDark(math.nan), config=fast_like(steps=1)).explain(images(1) * 0.1)


# --------------------------------------------------------------------------------------------
# 17. Shapes, dtypes and targets at the API


class Returns(nn.Module):
    """A model returning ``fn(x)``, whatever that is."""

    def __init__(self, fn: Callable[[torch.Tensor], object]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> object:
        return self.fn(x)


def test_api_input_errors_are_clear() -> None:
    cx = CartoonX(tiny_net(), config=fast_like(steps=1))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) or \(C, H, W\)"):
        cx.explain(torch.rand(32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) or \(C, H, W\)"):
        cx.explain(torch.rand(1, 1, 3, 32, 32))
    with pytest.raises(ValueError, match="empty"):
        cx.explain(torch.rand(0, 3, 32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        cx.explain(torch.rand(1, 3, 32, 32).tolist())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating point"):
        cx.explain((torch.rand(1, 3, 32, 32) * 255).to(torch.uint8))
    with pytest.raises(TypeError, match="class index.*got 2.7"):
        cx.explain(images(1), target=2.7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integer class indices"):
        cx.explain(images(1), target=torch.tensor([1.0]))
    with pytest.raises(ModelError, match="model failed"):
        cx.explain(torch.rand(1, 4, 32, 32))  # the model wants 3 channels
    with pytest.raises(ModelError, match="must return a tensor"):
        CartoonX(Returns(lambda x: (x.mean(),)), config=fast_like(steps=1)).explain(images(1))
    with pytest.raises(ModelError, match=r"outputs of shape \(B, m\)"):
        CartoonX(Returns(lambda x: x.mean()), config=fast_like(steps=1)).explain(images(1))
    with pytest.raises(ValueError, match="does not fit"):
        cx.explain(images(1), reference_output=torch.rand(7))
    with pytest.raises(ValueError, match=r"\(B, \.\.\.\)"):
        RDE(tiny_net(), Pixel(), config=fast_like(steps=1)).explain(torch.rand(5))


def test_float64_inputs_are_explained_in_the_models_dtype() -> None:
    x = images(1)
    cx = PixelRDE(sensitive_net(), config=fast_like(steps=3))
    as64 = cx.explain(x.double())
    as32 = cx.explain(x)
    assert as64.mask_flat.dtype == torch.float32
    assert torch.equal(as64.mask_flat, as32.mask_flat)


def test_rdex_models_is_reachable_after_import_rdex() -> None:
    code = "import rdex; print(rdex.models.wrap_classifier.__name__)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrap_classifier"


class AnyShapeNet(nn.Module):
    """Accepts any (B, C, H, W) with C = 3; returns 4 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x).flatten(1))


_DTYPES = [torch.float16, torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(min_value=0, max_value=9), min_size=0, max_size=5),
    dtype=st.sampled_from(_DTYPES),
    fill=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True, width=32), st.just(0.5), st.none()
    ),
    method=st.sampled_from(["cartoonx", "pixel-rde"]),
    target=st.one_of(st.none(), st.integers(-3, 6), st.floats(allow_nan=True), st.text(max_size=3)),
)
def test_any_input_ends_in_a_clear_error_or_a_finite_result(
    shape: list[int], dtype: torch.dtype, fill: float | None, method: str, target: object
) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen) if fill is None else torch.full(shape, fill)
    x = x.to(dtype) if dtype != torch.bool else x > 0.5
    cls = CartoonX if method == "cartoonx" else PixelRDE
    options = {"levels": 2} if method == "cartoonx" else {}
    explainer = cls(AnyShapeNet(), config=fast_like(steps=2, samples=2), **options)
    try:
        result = explainer.explain(x, target=target)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        assert str(exc)  # a message a user can read ...
        frames = traceback.extract_tb(exc.__traceback__)
        assert Path(frames[-1].filename).is_relative_to(RDEX), frames[-1]  # ... raised by rdex
        return
    assert torch.isfinite(result.mask_flat).all()
    assert torch.isfinite(result.explanation).all()
    assert torch.isfinite(result.history["loss"]).all()
