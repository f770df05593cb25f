"""Explanations over several seeds (rdex.seeds): the runs are the single runs, the combination is
their mean or median, the agreement measures the pictures, and bad seeds are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rdex.cli import main
from rdex.io import save_result
from rdex.methods import METHODS, CartoonX, PixelRDE
from rdex.methods.registry import list_methods
from rdex.metrics.similarity import ssim
from rdex.seeds import SeedEnsemble, explain_seeds, parse_seeds
from tiny_models import (  # tests/ is on sys.path
    colour_classifier,
    make_image,
    sensitive_net,
    tiny_net,
)

REPO = Path(__file__).resolve().parents[1]


def _images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    return torch.rand(2, 3, 32, 32, generator=gen)


def test_each_seed_is_its_single_run_and_the_mask_is_their_mean() -> None:
    model = sensitive_net()
    settings = {"preset": "preview", "steps": 30, "samples": 2, "lambda_k": 0.5}
    cx = CartoonX(model, **settings)
    x = _images()
    runs = explain_seeds(cx, x, seeds=[4, 7, 9], combine="mean")
    assert cx.config.seed == 0  # the caller's explainer is not changed
    for seed, run in zip(runs.seeds, runs.runs, strict=True):
        alone = CartoonX(model, **settings, seed=seed).explain(x)
        for a, b in zip(run.mask, alone.mask, strict=True):
            assert torch.equal(a, b)
    for i, band in enumerate(runs.result.mask):
        torch.testing.assert_close(band, torch.stack([r.mask[i] for r in runs.runs]).mean(0))
    # The seeds differ here, and the agreement says by how much, from the pictures themselves.
    pictures = [r.explanation for r in runs.runs]
    for j, (a, b) in enumerate([(0, 1), (0, 2), (1, 2)]):
        for i in range(2):
            assert runs.pair_ssim[i, j] == pytest.approx(ssim(pictures[a][i], pictures[b][i]))
    assert float(runs.pair_ssim.min()) < 1.0
    torch.testing.assert_close(runs.spread, torch.stack(pictures).std(0, unbiased=False))
    summary = runs.summary(1)
    assert summary["seeds"] == [4, 7, 9] and summary["combine"] == "mean"
    assert runs.spread.max() > 0
    assert summary["ssim_min"] == pytest.approx(float(runs.pair_ssim[1].min()))
    assert 0.0 <= summary["retained_agreement"] <= 1.0
    assert runs.result.config.seed is None  # no single seed made the combination
    assert runs.result.runtime_s == pytest.approx(sum(r.runtime_s for r in runs.runs))


def test_the_median_keeps_what_more_than_half_of_the_seeds_keep() -> None:
    px = PixelRDE(sensitive_net(), preset="preview", steps=20, samples=2, lambda_k=0.5)
    runs = explain_seeds(px, _images()[:1], seeds="0,1,2")  # the median by default
    stacked = torch.stack([r.mask[0] for r in runs.runs])
    assert runs.combine == "median" and not torch.equal(stacked[0], stacked[1])
    assert torch.equal(runs.result.mask[0], stacked.sort(0).values[1])
    even = explain_seeds(px, _images()[:1], seeds=[0, 1])  # two seeds: what both keep
    assert torch.equal(even.result.mask[0], torch.minimum(*[r.mask[0] for r in even.runs]))
    # Pixel RDE's picture is its mask: the combination is drawn as the method draws its own.
    torch.testing.assert_close(runs.result.explanation, runs.result.mask[0])


def test_a_noise_free_obfuscation_gives_every_seed_the_same_explanation() -> None:
    # Zeros draw no noise: the seed has nothing to choose, so the seeds agree exactly.
    cx = CartoonX(tiny_net(), steps=10, samples=2, obfuscation="zeros")
    runs = explain_seeds(cx, _images(), seeds=[0, 1])
    assert torch.equal(runs.runs[0].mask[0], runs.runs[1].mask[0])
    assert float(runs.pair_ssim.min()) == pytest.approx(1.0)
    assert float(runs.spread.abs().max()) == 0.0
    assert runs.summary(0)["retained_agreement"] == 1.0
    torch.testing.assert_close(runs.result.explanation, runs.runs[0].explanation)


@pytest.mark.parametrize("method", [info.name for info in list_methods(kind="rde")])
def test_every_rde_method_draws_its_combination_as_its_own_result(method: str) -> None:
    # Seeds that agree exactly (no noise to draw) combine into that very result, pictures and
    # warnings included: the combination is drawn by the method's own RDE.render.
    explainer = METHODS[method](colour_classifier(), steps=3, samples=2, obfuscation="zeros")
    x = _images()
    runs = explain_seeds(explainer, x, seeds=[0, 5])
    single = runs.runs[0]
    for a, b in zip(runs.result.mask, single.mask, strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(runs.result.explanation, single.explanation)
    torch.testing.assert_close(runs.result.explanation_rgb, single.explanation_rgb)
    assert runs.result.warnings == single.warnings and runs.result.method == single.method


def test_the_record_gives_the_combined_masks_own_distortion(tmp_path: Path) -> None:
    # With zeros as obfuscation y = f(s * h) is the masked input itself: the distortion of the
    # combination is (p(x) - p(y))^2 for the explained label, checked with the model directly.
    model = colour_classifier()
    cx = CartoonX(model, preset="preview", steps=20, samples=2, lambda_k=0.5, obfuscation="zeros")
    x = _images()
    runs = explain_seeds(cx, x, seeds=[0, 1], combine="mean")
    r = runs.result
    with torch.no_grad():
        p_y = torch.softmax(model(r.explanation_rgb), dim=1)
    j = r.target.view(-1, 1)
    expected = (r.probs.gather(1, j) - p_y.gather(1, j)).squeeze(1) ** 2
    for i in range(2):
        summary = r.extra["seeds"][i]
        assert summary["distortion"] == pytest.approx(float(expected[i]), rel=1e-4, abs=1e-9)
        _, record = save_result(r, tmp_path, f"img{i}", i)
        assert record["final_distortion"] == summary["distortion"]
        assert record["final_l1"] == pytest.approx(float(r.mask_flat[i].mean()))
        # The combination was not optimised: its loss is its own objective, on 64 draws.
        assert record["final_loss"] == record["objective"] == r.extra["objective"][i]
        assert record["objective"] == pytest.approx(
            summary["distortion"] + 0.5 * float(r.mask_flat[i].mean()), rel=1e-5
        )


def test_every_seed_explains_the_same_label() -> None:
    model = colour_classifier()
    cx = CartoonX(model, steps=5, samples=2)
    runs = explain_seeds(cx, _images(), seeds=[0, 1], target=model.labels[2])
    assert all(r.target.tolist() == [2, 2] for r in (*runs.runs, runs.result))


def test_ensemble_explains_like_rde_and_keeps_the_runs() -> None:
    ens = SeedEnsemble(CartoonX(tiny_net(), steps=5, samples=2), seeds=(0, 1))
    result = ens.explain(_images()[:1])
    assert ens.last is not None and ens.last.result is result
    assert result.extra["seeds"][0]["seeds"] == [0, 1]


@pytest.mark.parametrize(
    "seeds",
    ["1", "", "0,0", "a,b", "0,-1", [0, 1.5], [True, 2], [0, 2**63], list(range(65)), [3]],
)
def test_bad_seeds_are_refused(seeds: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        parse_seeds(seeds)  # type: ignore[arg-type]


def test_bad_combine_and_explainer_are_refused() -> None:
    cx = CartoonX(tiny_net(), steps=2, samples=2)
    with pytest.raises(ValueError, match="combine"):
        explain_seeds(cx, _images(), combine="max")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RDE"):
        explain_seeds(object(), _images())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="combine"):
        SeedEnsemble(cx, combine="min")  # type: ignore[arg-type]


def test_saved_record_holds_the_agreement_and_every_seeds_mask(tmp_path: Path) -> None:
    runs = explain_seeds(CartoonX(tiny_net(), steps=5, samples=2), _images(), seeds=[2, 5, 8])
    paths, record = save_result(runs.result, tmp_path, "img", 1)
    assert record["seeds"] == json.loads(json.dumps(runs.summary(1)))
    assert record["settings"]["seed"] is None
    saved = np.load(paths["npz"])
    assert saved["seeds"].tolist() == [2, 5, 8]
    for k, run in enumerate(runs.runs):
        np.testing.assert_array_equal(saved["seed_mask_flat"][k], run.mask_flat[1].numpy())
    np.testing.assert_allclose(saved["mask_flat"], runs.result.mask_flat[1].numpy())


@pytest.fixture
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # for --model tests.tiny_models:colour_net


def test_cli_seeds_writes_the_median_the_figure_and_the_agreement(
    tmp_path: Path, repo_on_path: None, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_image(tmp_path / "red.png", "red")
    out = tmp_path / "out"
    common = ["--model", "tests.tiny_models:colour_net", "--size", "32", "--steps", "4"]
    common += ["--samples", "2", "--quiet"]
    assert main(["explain", str(image), *common, "--seeds", "0,3", "--out", str(out)]) == 0
    record = json.loads((out / "red-cartoonx.json").read_text())
    assert record["seeds"]["seeds"] == [0, 3] and record["settings"]["seed"] is None
    assert (out / "red-cartoonx-seeds.png").stat().st_size > 0
    assert "SSIM between any two" in capsys.readouterr().out
    saved = np.load(out / "red-cartoonx.npz")
    np.testing.assert_array_equal(saved["mask_flat"], saved["seed_mask_flat"].min(0))
    # Seed 3's own mask is what --seed 3 writes.
    single = tmp_path / "single"
    assert main(["explain", str(image), *common, "--seed", "3", "--out", str(single)]) == 0
    np.testing.assert_array_equal(
        np.load(single / "red-cartoonx.npz")["mask_flat"], saved["seed_mask_flat"][1]
    )


def test_cli_bad_seeds_are_one_line_errors(
    tmp_path: Path, repo_on_path: None, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_image(tmp_path / "red.png", "red")
    common = ["--model", "tests.tiny_models:colour_net", "--size", "32", "--out", str(tmp_path)]
    assert main(["explain", str(image), *common, "--seeds", "0"]) == 2
    assert main(["explain", str(image), *common, "--seeds", "0,x"]) == 2
    assert main(["explain", str(image), *common, "--seeds", "0,0"]) == 2
    assert main(["explain", str(image), *common, "--seeds", "0,-1"]) == 2
    assert main(["explain", str(image), *common, "--seeds", "0,1", "--sparsity", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("rdex explain: error:") for line in err)
    assert not list(tmp_path.glob("red-*"))  # nothing written by a refused run


def test_cli_seeds_with_a_batch_gives_each_image_its_own_agreement(
    tmp_path: Path, repo_on_path: None
) -> None:
    red = make_image(tmp_path / "red.png", "red")
    green = make_image(tmp_path / "green.png", "green", seed=4)
    out = tmp_path / "out"
    args = ["explain", str(red), str(green), "--model", "tests.tiny_models:colour_net"]
    args += ["--size", "32", "--preset", "preview", "--steps", "20", "--samples", "2"]
    args += ["--lambda-k", "0.5", "--quiet"]
    assert main([*args, "--seeds", "0,1,2", "--batch-size", "2", "--out", str(out)]) == 0
    single = tmp_path / "single"
    assert main([*args, "--seed", "2", "--out", str(single)]) == 0
    for stem in ("red", "green"):
        record = json.loads((out / f"{stem}-cartoonx.json").read_text())
        saved = np.load(out / f"{stem}-cartoonx.npz")
        # The record's agreement is this image's: its seeds' own masks, as saved beside it.
        np.testing.assert_array_equal(
            np.load(single / f"{stem}-cartoonx.npz")["mask_flat"], saved["seed_mask_flat"][2]
        )
        assert record["seeds"]["per_seed"][2]["retained_fraction"] == pytest.approx(
            float((saved["seed_mask_flat"][2] > 0.5).mean())
        )


def test_reachable_after_import_rdex() -> None:
    # A fresh interpreter: only `import rdex`, then the attribute (loaded on first use).
    import subprocess
    import sys

    code = (
        "import sys, rdex; assert 'rdex.seeds' not in sys.modules; "
        "print(rdex.seeds.explain_seeds.__module__, rdex.objective.mask_objective.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["rdex.seeds", "rdex.objective"]
