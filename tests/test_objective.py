"""The objective of any mask (rdex.objective) and the check of every explanation against the
empty mask: the estimate is the objective, the warning fires exactly when deleting everything
scores as well, and its lambda_k bound is the one at which the explanation would win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rdex.cli import main
from rdex.images import load_image
from rdex.methods import CartoonX, PixelRDE
from rdex.objective import EMPTY_TIE, Objective, empty_warning, mask_objective
from rdex.rde import preset
from tiny_models import colour_classifier, make_image, sensitive_net  # tests/ is on sys.path

REPO = Path(__file__).resolve().parents[1]


def _red(tmp_path: Path) -> torch.Tensor:
    return load_image(make_image(tmp_path / "red.png", "red"), size=32)[None]


def _objective(distortion: float, l1: float, lambda_k: float, spatial: float = 0.0) -> Objective:
    return Objective(
        distortion=torch.tensor([distortion]),
        penalty=torch.tensor([lambda_k * l1 + spatial]),
        l1=torch.tensor([l1]),
        draws=64,
    )


def test_the_estimate_is_the_objective_for_a_noise_free_obfuscation(tmp_path: Path) -> None:
    # With zeros, y = f(s * h) is the masked input: (p(x) - p(y))^2 + lambda_k * mean(s).
    model = colour_classifier()
    x = _red(tmp_path)
    px = PixelRDE(
        model, config=preset("fast", lambda_k=0.5, steps=30, samples=2), obfuscation="zeros"
    )
    result = px.explain(x)
    for mask in (result.mask, [torch.zeros_like(m) for m in result.mask]):
        got = mask_objective(px, x, mask, probs=result.probs, target=result.target)
        with torch.no_grad():
            p_y = torch.softmax(model((x * mask[0]).clamp(0, 1)), dim=1)
        j = int(result.target[0])
        expected = (float(result.probs[0, j]) - float(p_y[0, j])) ** 2
        assert got.draws == 1 and float(got.distortion[0]) == pytest.approx(expected, rel=1e-4)
        assert float(got.value[0]) == pytest.approx(
            expected + 0.5 * float(mask[0].mean()), rel=1e-4
        )
    # What the run recorded is this estimate, for the mask and for the empty mask.
    assert result.extra["objective"][0] == pytest.approx(
        float(mask_objective(px, x, result.mask, probs=result.probs, target=result.target).value[0])
    )


def test_same_seed_same_draws_and_a_batch_is_its_single_inputs() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 32, 32, generator=gen)
    cx = CartoonX(sensitive_net(), config=preset("fast", lambda_k=2.0, steps=5, samples=4))
    r = cx.explain(x)
    both = mask_objective(cx, x, r.mask, probs=r.probs, target=r.target, seed=3)
    again = mask_objective(cx, x, r.mask, probs=r.probs, target=r.target, seed=3)
    assert torch.equal(both.value, again.value)
    other = mask_objective(cx, x, r.mask, probs=r.probs, target=r.target, seed=4)
    assert not torch.equal(both.distortion, other.distortion)
    one = mask_objective(
        cx, x[1:2], [m[1:2] for m in r.mask], probs=r.probs[1:2], target=r.target[1:2], seed=3
    )
    assert float(one.value[0]) == pytest.approx(float(both.value[1]), rel=1e-6)
    # Drawn in pieces (as at 256 px, 8 per pass): the same rules, 64 draws in all.
    kw = {"probs": r.probs, "target": r.target, "seed": 3, "batch_size": 8}
    pieces = mask_objective(cx, x, r.mask, **kw)
    assert pieces.draws == 64 and torch.equal(
        pieces.value, mask_objective(cx, x, r.mask, **kw).value
    )
    one = mask_objective(cx, x[2:], [m[2:] for m in r.mask], **kw | {"probs": r.probs[2:],
                         "target": r.target[2:]})  # fmt: skip
    assert float(one.value[0]) == pytest.approx(float(pieces.value[2]), rel=1e-6)
    assert torch.allclose(pieces.value, both.value, rtol=0.5)  # other draws, the same quantity


@pytest.mark.parametrize("bad", [{"draws": 0}, {"draws": 2.5}, {"batch_size": 0}, {"draws": True}])
def test_bad_draws_are_refused(bad: dict) -> None:
    cx = CartoonX(sensitive_net(), config=preset("fast", steps=1, samples=2))
    x = torch.rand(1, 3, 32, 32)
    r = cx.explain(x)
    with pytest.raises(ValueError, match="draws|batch_size"):
        mask_objective(cx, x, r.mask, probs=r.probs, target=r.target, **bad)


def test_the_warning_fires_exactly_when_the_empty_mask_scores_as_well() -> None:
    found = _objective(distortion=0.10, l1=0.01, lambda_k=20.0)  # 0.30
    assert empty_warning(found, _objective(0.30 * EMPTY_TIE * 1.01, 0.0, 20.0), lambda_k=20.0,
                         label="'cat'", prob=0.5) is None  # fmt: skip
    note = empty_warning(found, _objective(0.25, 0.0, 20.0), lambda_k=20.0, label="'cat'", prob=0.5)
    assert note is not None
    # 0.10 + lambda_k * 0.01 < 0.25 for lambda_k below 15: the bound the note gives.
    assert "with lambda_k below 15," in note and "'cat' probability 0.5" in note
    assert "A.8" in note and "--lambda-k" in note and "0.25" in note and "0.3" in note
    # Both causes, with what deleting costs: a sure model (p 0.97) can be here after a short run.
    assert "costs 0.25 in distortion" in note and "weakly supported" in note and "--steps" in note
    # A spatial penalty counts against the explanation: the bound moves down by its share.
    spatial = _objective(distortion=0.10, l1=0.01, lambda_k=20.0, spatial=0.05)
    note = empty_warning(spatial, _objective(0.25, 0.0, 20.0), lambda_k=20.0, label="x", prob=0.5)
    assert note is not None and "with lambda_k below 10," in note
    # A mask that has hardly left ones: the run stopped early, say so instead.
    dense = empty_warning(_objective(0.0, 0.8, 2.0), _objective(0.2, 0.0, 2.0), lambda_k=2.0,
                          label="x", prob=0.9)  # fmt: skip
    assert dense is not None and "still dense" in dense and "--steps" in dense
    # Kept parts that do not lower the distortion: no lambda_k helps.
    useless = empty_warning(_objective(0.3, 0.01, 20.0), _objective(0.2, 0.0, 20.0), lambda_k=20.0,
                            label="x", prob=0.9)  # fmt: skip
    assert useless is not None and "do not lower the distortion" in useless


def test_a_fine_explanation_is_not_flagged_and_a_weak_one_is(tmp_path: Path) -> None:
    config = preset("fast", lambda_k=0.5, steps=60, samples=4)
    fine = PixelRDE(colour_classifier(), config=config).explain(_red(tmp_path))
    assert fine.warnings == [[]]
    assert fine.extra["objective"][0] * EMPTY_TIE < fine.extra["empty_objective"][0]
    # A random picture: the classifier sees the same in noise, nothing is worth keeping.
    gen = torch.Generator().manual_seed(0)
    weak = PixelRDE(sensitive_net(), config=config).explain(torch.rand(1, 3, 32, 32, generator=gen))
    (notes,) = weak.warnings
    assert len(notes) == 1 and notes[0].startswith("deleting everything scores as well")
    assert weak.extra["empty_objective"][0] <= EMPTY_TIE * weak.extra["objective"][0]


def test_cli_record_holds_both_objectives_and_prints_the_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    image = make_image(tmp_path / "red.png", "red")
    common = ["--model", "tests.tiny_models:colour_net", "--size", "32", "--quiet"]
    out = tmp_path / "out"
    # Two steps: the mask is still near ones, the empty mask scores better, the run says why.
    assert main(["explain", str(image), *common, "--steps", "2", "--out", str(out)]) == 0
    record = json.loads((out / "red-cartoonx.json").read_text())
    assert record["empty_objective"] <= EMPTY_TIE * record["objective"]
    assert any("still dense" in w for w in record["warnings"])
    assert "warning:" in capsys.readouterr().err


def test_batch_manifest_carries_both_objectives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rdex.batch import read_manifest

    monkeypatch.syspath_prepend(str(REPO))
    image = make_image(tmp_path / "in" / "red.png", "red")
    common = ["--model", "tests.tiny_models:colour_net", "--size", "32", "--quiet"]
    common += ["--steps", "30", "--samples", "2"]
    assert main(["batch", str(image.parent), *common, "--out", str(tmp_path / "b")]) == 0
    assert main(["explain", str(image), *common, "--out", str(tmp_path / "e")]) == 0
    (line,) = [r for r in read_manifest(tmp_path / "b") if r["method"] == "cartoonx"]
    record = json.loads((tmp_path / "e" / "red-cartoonx.json").read_text())
    for key in ("objective", "empty_objective"):
        assert line[key] == pytest.approx(record[key], rel=1e-5, abs=1e-9)
    assert line["warnings"] == record["warnings"]
