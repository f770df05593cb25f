"""Experiments and the evaluate/experiment commands, end to end on tiny models with a few steps."""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from rdex import metrics as M
from rdex.experiments import (
    Claim,
    Context,
    ExperimentResult,
    Settings,
    load_summary,
    run_all,
    run_experiment,
    write_report,
)
from rdex.rde import PRESETS, preset

TINY = Settings(
    model="tiny", size=32, preset="preview", steps=2, samples=2, images=("chelsea", "coffee"),
    eval_samples=2, eval_steps=4,
)  # fmt: skip


class Counting(nn.Module):
    """Wraps a model and counts the images it sees."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return self.net(x)


def tiny(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(24, num_classes),
    )  # fmt: skip


def parse(module_name: str, argv: list[str]) -> argparse.Namespace:
    import importlib

    module = importlib.import_module(f"rdex.cli.{module_name}")
    parser = argparse.ArgumentParser()
    module.add_parser(parser.add_subparsers())
    return parser.parse_args([module_name.replace("_", "-"), *argv])


def test_artifacts_experiment_writes_table_figure_and_summary(tmp_path: Path) -> None:
    ctx = Context(TINY, tmp_path, model=tiny())
    result = run_experiment("artifacts", ctx)
    rows = list(csv.DictReader((tmp_path / "artifacts" / "artifacts.csv").open()))
    assert [r["method"] for r in rows] == ["cartoonx", "pixel-rde"]
    # The reported probability of the masked sky is the model's, recomputed here.
    for method, row in zip(("cartoonx", "pixel-rde"), rows, strict=True):
        _, res, _ = ctx.explain(
            method, ["sky"], lambda_k=80000.0, distortion="l2", distortion_scale=1e6,
            reference_output=None, reference_key="rocket@32",
        )  # fmt: skip
        target = int(ctx.probs(ctx.batch(["rocket"])).argmax())
        p = float(ctx.probs(res.explanation_rgb)[0, target])
        assert float(row["p_target_retained"]) == pytest.approx(p, rel=1e-4)
    assert len(result.claims) == 3 and all(isinstance(c.held, bool) for c in result.claims)
    fig = tmp_path / result.figures[0]
    assert fig.exists() and fig.stat().st_size < 300_000
    saved = load_summary(tmp_path, "artifacts")
    assert saved is not None and saved.claims[0].text == result.claims[0].text
    assert saved.settings["size"] == 32 and saved.settings["effective_steps"] == 2


def test_context_caches_runs_per_image(tmp_path: Path) -> None:
    model = Counting(tiny())
    ctx = Context(TINY, tmp_path, model=model)
    _, both, _ = ctx.explain("cartoonx", ["chelsea", "coffee"])
    seen = model.seen
    _, one, _ = ctx.explain("cartoonx", ["coffee"])
    assert model.seen == seen  # cached: no optimisation ran
    torch.testing.assert_close(one.mask_flat, both.mask_flat[1:])
    ctx.explain("cartoonx", ["coffee"], lambda_k=5.0)
    assert model.seen > seen
    with pytest.raises(ValueError, match="reference_key"):
        ctx.explain("cartoonx", ["sky"], reference_output=torch.ones(10) / 10)


def test_report_states_verdicts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path)
    result = ExperimentResult(
        name="sensitivity",
        title="Sensitivity",
        claims=[Claim("A holds.", True, "x 1 vs 2"), Claim("B holds.", False, "y 3 vs 1")],
        markdown="| a |\n|---|\n| 1 |\n",
        settings=TINY.describe(),
        figures=["sensitivity/sensitivity.png"],
    )
    (tmp_path / "sensitivity").mkdir()
    (tmp_path / "sensitivity" / "summary.json").write_text(result.to_json())
    text = write_report(tmp_path).read_text()
    assert "| sensitivity | A holds. | **held** |" in text
    assert "| sensitivity | B holds. | **did not hold** |" in text
    assert "2 steps, L = 2" in text and "32 x 32 px" in text
    assert "![sensitivity](sensitivity/sensitivity.png)" in text


def test_report_states_undecided_and_reads_back_its_schedule(tmp_path: Path) -> None:
    from rdex.experiments import stated_settings

    result = ExperimentResult(
        name="sensitivity",
        title="Sensitivity",
        claims=[Claim("C holds.", None, "undecided: within the floor")],
        settings=Settings(preset="fast", size=32).describe(),
    )
    (tmp_path / "sensitivity").mkdir()
    (tmp_path / "sensitivity" / "summary.json").write_text(result.to_json())
    text = write_report(tmp_path).read_text()
    assert "| sensitivity | C holds. | **undecided** |" in text
    assert "- C holds. → **undecided**: undecided: within the floor." in text
    fast = PRESETS["fast"]
    assert stated_settings(text) == {
        "preset": "fast", "steps": fast["steps"], "samples": fast["samples"], "lr": fast["lr"],
        "schedule": fast["schedule"], "lr_final": fast["lr_final"],
    }  # fmt: skip
    with pytest.raises(ValueError, match="RDE schedule"):
        stated_settings("# a report without settings\n")


def test_committed_report_states_the_code_presets() -> None:
    """experiments/REPORT.md must be regenerated when a preset it used changes (or disappears)."""
    from rdex.experiments import stated_settings

    root = Path(__file__).resolve().parents[1] / "experiments"
    stated = stated_settings((root / "REPORT.md").read_text())
    assert stated["preset"] in PRESETS, (
        f"REPORT.md uses preset {stated['preset']!r}, gone from PRESETS"
    )
    code = preset(stated["preset"])
    now = {
        "preset": stated["preset"], "steps": code.steps, "samples": code.samples, "lr": code.lr,
        "schedule": code.schedule, "lr_final": code.lr_final if code.schedule == "cosine" else None,
    }  # fmt: skip
    assert stated == now, "experiments/REPORT.md is stale: rerun `rdex experiment all`"
    # An experiment with its own settings (e.g. a smaller image) says so in its section.
    from rdex.experiments import context_for

    report = (root / "REPORT.md").read_text()
    shared_size = int(re.search(r"images (\d+) x \d+ px", report)[1])  # type: ignore[index]
    for summary in sorted(root.glob("*/summary.json")):
        s = json.loads(summary.read_text())["settings"]
        shared = Context(Settings(size=shared_size), root, model=tiny())
        own = context_for(summary.parent.name, shared).settings.size
        assert s["size"] == own, summary
        if own != shared_size:
            assert f"Experiment `{summary.parent.name}`" in report
            assert f"its own settings: size {own}" in report, summary
    # Every committed summary was measured with those settings (no mix of old and new runs).
    for summary in sorted(root.glob("*/summary.json")):
        s = json.loads(summary.read_text())["settings"]
        assert (s["preset"], s["effective_steps"], s["effective_samples"], s["lr"]) == (
            stated["preset"], code.steps, code.samples, code.lr,
        ), summary  # fmt: skip


def test_experiment_command_defaults_to_the_committed_reports_settings() -> None:
    """A plain `rdex experiment report` must not rerun the claims with other settings."""
    from rdex.cli import build_parser
    from rdex.experiments import stated_settings

    report = (Path(__file__).resolve().parents[1] / "experiments" / "REPORT.md").read_text()
    args = build_parser().parse_args(["experiment", "report"])
    assert args.preset == stated_settings(report)["preset"]
    assert f"images {args.size} x {args.size} px" in report


def test_obfuscation_claim_is_decided_by_rate_distortion_with_the_seed_floor() -> None:
    from rdex.experiments.sensitivity import obfuscation_verdict

    # The stale report's numbers: Gaussian 0.029 vs zeros 0.512 (it lost a vote of 8 metrics).
    assert obfuscation_verdict(0.029, 0.512, floor=0.05)[0] is True
    assert obfuscation_verdict(0.512, 0.029, floor=0.05)[0] is False
    held, reason = obfuscation_verdict(0.30, 0.33, floor=0.05)
    assert held is None and "within the two-seed floor" in reason


def test_distortion_claim_is_undecided_when_a_known_difference_is_within_the_floor() -> None:
    from rdex.experiments.sensitivity import distortion_verdict

    # The stale report: pairs 0.800-0.855, two seeds 0.789, lambda 20 vs 40 about 0.81.
    held, reason = distortion_verdict([0.855, 0.822, 0.800], floor=0.789, different=0.808)
    assert held is None and "cannot tell" in reason
    # A seed floor well above a known difference: pairs within it are "the same".
    assert distortion_verdict([0.93, 0.95], floor=0.95, different=0.70)[0] is True
    # A pair further apart than two seeds: different, whatever the resolution.
    assert distortion_verdict([0.60, 0.95], floor=0.95, different=0.90)[0] is False


def _words(reason: str) -> str:
    """The start of a verdict's reason, up to its first number (the CSV rounds numbers)."""
    return re.split(r"[0-9]", reason, maxsplit=1)[0]


def test_sensitivity_verdicts_follow_the_measured_numbers(tmp_path: Path) -> None:
    from rdex.experiments.sensitivity import distortion_verdict, obfuscation_verdict

    result = run_experiment("sensitivity", Context(TINY, tmp_path, model=tiny()))
    claims = {c.text.split(" (")[0]: c for c in result.claims}
    rows = list(csv.DictReader((tmp_path / "sensitivity" / "obfuscation.csv").open()))
    rd = {r["obfuscation"]: float(r["rd_auc"]) for r in rows}
    assert set(rd) == {"gaussian", "zeros", "gaussian, seed+1"}
    expected = obfuscation_verdict(
        rd["gaussian"], rd["zeros"], abs(rd["gaussian"] - rd["gaussian, seed+1"])
    )
    obf = claims["Adaptive Gaussian noise gives better explanations than the zero baseline"]
    assert obf.held is expected[0] and _words(expected[1]) in obf.evidence
    dist = {
        r["pair"]: float(r["ssim_picture"])
        for r in csv.DictReader((tmp_path / "sensitivity" / "distortion.csv").open())
    }
    lam = [
        r
        for r in csv.DictReader((tmp_path / "sensitivity" / "lambda.csv").open())
        if r["method"] == "cartoonx" and r["pair"] == "20->40"
    ]
    expected = distortion_verdict(
        [v for k, v in dist.items() if "kl" not in k and "seed" not in k],
        dist["label, seed vs seed+1"],
        float(lam[0]["ssim_picture"]),
    )
    dist_claim = claims["The distortions give nearly the same CartoonX"]
    assert dist_claim.held is expected[0] and _words(expected[1]) in dist_claim.evidence


def test_report_does_not_reuse_a_summary_of_other_settings(tmp_path: Path) -> None:
    run_experiment("runtime", Context(TINY, tmp_path, model=tiny()))
    model = Counting(tiny())
    run_all(Context(TINY, tmp_path, model=model), ["runtime"], reuse=True)
    assert model.seen == 0  # same settings: reused
    other = Settings(**{**TINY.__dict__, "steps": 3})
    run_all(Context(other, tmp_path, model=model), ["runtime"], reuse=True)
    assert model.seen > 0  # a saved run of 2 steps is no result of 3 steps
    assert "= 3 steps" in (tmp_path / "REPORT.md").read_text()


def test_unknown_experiment(tmp_path: Path) -> None:
    ctx = Context(TINY, tmp_path, model=tiny())
    with pytest.raises(ValueError, match="unknown experiment"):
        run_experiment("nope", ctx)


@pytest.mark.slow
def test_all_experiments_and_report_end_to_end(tmp_path: Path) -> None:
    ctx = Context(TINY, tmp_path, model=tiny())
    results = run_all(ctx)
    assert [r.name for r in results] == [
        "artifacts", "sensitivity", "smoothness", "runtime", "multiscale",
    ]  # fmt: skip
    text = (tmp_path / "REPORT.md").read_text()
    for r in results:
        assert r.title in text
        for fig in r.figures:
            assert (tmp_path / fig).stat().st_size < 300_000
    rows = list(csv.DictReader((tmp_path / "smoothness" / "metrics.csv").open()))
    assert {"cartoonx", "pixel-rde", "integrated-gradients"} <= {r["method"] for r in rows}
    # Reusing saved summaries runs nothing again.
    model = Counting(tiny())
    ctx2 = Context(TINY, tmp_path, model=model)
    run_all(ctx2, reuse=True)
    assert model.seen == 0


def _save_explain_folder(folder: Path) -> tuple[nn.Module, torch.Tensor, dict[str, M.Explanation]]:
    """Explain a sample with both RDE methods and save as `rdex explain` does."""
    from rdex.images import sample_image
    from rdex.io import save_result
    from rdex.methods import CartoonX, PixelRDE
    from rdex.models import load_classifier

    model = load_classifier("tests.tiny_models:colour_net")
    x = sample_image("chelsea", size=32).unsqueeze(0)
    out = {}
    for cls in (CartoonX, PixelRDE):
        explainer = cls(model, preset="preview", steps=2, samples=2)
        result = explainer.explain(x)
        save_result(
            result,
            folder,
            f"chelsea-{result.method}",
            extra={"image": "chelsea", "model": "tests.tiny_models:colour_net"},
        )
        out[result.method] = M.Explanation.from_rde(explainer, x, result)
    return model, x, out


def test_evaluate_saved_folder_agrees_with_direct_metrics(tmp_path: Path) -> None:
    from rdex.images import load_image

    model, x, explanations = _save_explain_folder(tmp_path)
    args = parse("evaluate", [str(tmp_path), "--eval-samples", "2", "--eval-steps", "4"])
    assert args.func(args) == 0
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "metrics.csv").open())}
    assert set(rows) == {"cartoonx", "pixel-rde"}
    assert (tmp_path / "metrics-curves.png").exists() and (tmp_path / "metrics.png").exists()
    # The saved PNG is 8-bit, so compare with the image the command reloaded (the sample itself).
    for method, ex in explanations.items():
        direct = M.evaluate(model, x, ex, samples=2, steps=4)
        for key in ("rd_auc", "deletion_auc", "cp_entropy", "retained_fraction", "tv"):
            assert float(rows[method][key]) == pytest.approx(
                float(direct.scores[key][0]), rel=1e-3, abs=1e-6
            ), key
    assert load_image  # imported for the error path below
    (tmp_path / "chelsea-cartoonx.json").write_text(
        json.dumps({"method": "cartoonx", "image": "missing.png"})
    )
    args = parse("evaluate", [str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        args.func(args)


def test_evaluate_images_with_baselines(tmp_path: Path) -> None:
    args = parse(
        "evaluate",
        ["chelsea", "--method", "cartoonx,ig", "--model", "tests.tiny_models:colour_net", "--size", "32",
         "--steps", "2", "--samples", "2", "--eval-samples", "2", "--eval-steps", "4", "--quiet",
         "--out", str(tmp_path)],
    )  # fmt: skip
    assert args.func(args) == 0
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["method"] for r in rows] == ["cartoonx", "integrated-gradients"]
    assert all(0.0 <= float(r["insertion_auc"]) <= 1.0 for r in rows)


def test_experiment_cli_checks_arguments(tmp_path: Path) -> None:
    args = parse(
        "experiment", ["artifacts", "--images", "no-such-image.png", "--out", str(tmp_path)]
    )
    with pytest.raises(FileNotFoundError):
        args.func(args)
    args = parse("experiment", ["artifacts", "--preset", "bogus", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="preset"):
        args.func(args)


def test_saved_record_reprs_round_trip() -> None:
    from rdex.cli.evaluate import obfuscation_from_repr, representation_from_repr
    from rdex.obfuscations import make_obfuscation
    from rdex.representations import Fourier, Pixel, Wavelet

    w = representation_from_repr(repr(Wavelet("db2", levels=3, mode="reflect")))
    assert (w.wavelet, w.levels, w.mode) == ("db2", 3, "reflect")
    assert isinstance(representation_from_repr(repr(Pixel())), Pixel)
    assert isinstance(representation_from_repr(repr(Fourier())), Fourier)
    for spec in ("gaussian", "uniform", "zeros", "constant:0.25", "blur:3.0"):
        back = obfuscation_from_repr(repr(make_obfuscation(spec)))
        assert repr(make_obfuscation(back)) == repr(make_obfuscation(spec))
    with pytest.raises(ValueError):
        representation_from_repr("Curvelet()")


def test_evaluate_batch_folder(tmp_path: Path) -> None:
    from rdex.batch import run_batch
    from rdex.images import sample_image, save_image
    from rdex.rde import preset

    images = tmp_path / "in"
    for name in ("chelsea", "coffee"):
        save_image(sample_image(name, size=32), images / f"{name}.png")
    out = tmp_path / "out"
    run_batch(
        images, out, model="tests.tiny_models:colour_net", methods=("cartoonx", "pixel-rde"),
        configs=preset("preview", steps=2, samples=2), size=32, progress=False,
    )  # fmt: skip
    args = parse("evaluate", [str(out), "--eval-samples", "2", "--eval-steps", "4", "--no-curves"])
    assert args.func(args) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert sorted((r["image"], r["method"]) for r in rows) == [
        ("chelsea.png", "cartoonx"), ("chelsea.png", "pixel-rde"),
        ("coffee.png", "cartoonx"), ("coffee.png", "pixel-rde"),
    ]  # fmt: skip
    assert "rd_auc" not in rows[0] and float(rows[0]["mask_l1"]) > 0


def test_multiscale_experiment_scores_every_method_and_states_its_settings(tmp_path: Path) -> None:
    from rdex.experiments import multiscale

    ctx = Context(TINY, tmp_path, model=tiny())
    result = run_experiment("multiscale", ctx)
    rows = list(csv.DictReader((tmp_path / "multiscale" / "scores.csv").open()))
    main = [r for r in rows if r["seed"] == "0"]
    assert [r["method"] for r in main] == [m for m in multiscale.METHODS for _ in TINY.images]
    floor = [r for r in rows if r["seed"] == "1"]
    assert {r["method"] for r in floor} == set(multiscale.FLOOR_METHODS)
    # ShearletX runs with the ShearletX paper's optimiser and noise; the scores are the metrics'.
    sx = [r for r in main if r["method"] == "shearletx"]
    assert float(sx[0]["lr"]) == 0.1 and float(sx[0]["spatial_l1"]) == 2.0
    explainer, res, x = ctx.explain(
        "shearletx", list(TINY.images), **multiscale.method_overrides(ctx, "shearletx")
    )
    assert explainer.obfuscation.name == "uniform"
    cp = M.cp_scores(ctx.model, x, res.explanation_rgb, target=res.target)
    hal = M.hallucination_score(x, res.explanation_rgb)
    for i, row in enumerate(sx):
        assert float(row["cp_entropy"]) == pytest.approx(float(cp["cp_entropy"][i]), rel=1e-4)
        assert float(row["hallucination"]) == pytest.approx(
            float(hal["hallucination"][i]), abs=1e-6
        )
    assert len(result.claims) == 4
    assert all(c.held in (True, False, None) and "floor" in c.evidence for c in result.claims)
    for fig in result.figures:
        assert (tmp_path / fig).stat().st_size < 300_000
    text = write_report(tmp_path).read_text()
    assert result.title in text and "ShearletX hallucinates fewer edges" in text


def test_multiscale_runs_at_its_own_size_and_its_summary_is_reused(tmp_path: Path) -> None:
    from rdex.experiments import context_for, multiscale

    big = Settings(**{**TINY.__dict__, "size": 128})
    ctx = Context(big, tmp_path, model=tiny())
    assert context_for("multiscale", ctx).settings.size == multiscale.MAX_SIZE
    assert context_for("smoothness", ctx) is ctx
    assert context_for("multiscale", Context(TINY, tmp_path, model=tiny())).settings.size == 32
    # A summary saved at the experiment's own size is reused by a report at the shared size,
    # and the report states that size in the experiment's section.
    saved = ExperimentResult(
        "multiscale", "t", settings=context_for("multiscale", ctx).settings.describe()
    )
    (tmp_path / "multiscale").mkdir()
    (tmp_path / "multiscale" / "summary.json").write_text(saved.to_json())
    run_experiment("runtime", ctx)
    model = Counting(tiny())
    run_all(Context(big, tmp_path, model=model), ["runtime", "multiscale"], reuse=True)
    assert model.seen == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert f"its own settings: size {multiscale.MAX_SIZE}" in text
    assert "images 128 x 128 px" in text


def test_multiscale_verdicts_need_a_difference_beyond_the_floor() -> None:
    from rdex.experiments.multiscale import combine, compare_verdict, scale

    assert compare_verdict(0.1, 0.5, 0.05, lower_is_better=True)[0] is True
    assert compare_verdict(0.5, 0.1, 0.05, lower_is_better=True)[0] is False
    assert compare_verdict(0.5, 0.1, 0.05, lower_is_better=False)[0] is True
    held, why = compare_verdict(0.30, 0.33, 0.05, lower_is_better=True)
    assert held is None and "within the floor" in why
    assert combine([True, True]) is True
    assert combine([True, None]) is None
    assert combine([True, None, False]) is False
    assert combine([]) is None
    assert scale("cp_entropy", 100.0) == pytest.approx(2.0)
    assert scale("hallucination", 0.25) == 0.25


def test_multiscale_names_the_masks_that_lose_the_class() -> None:
    from rdex.experiments.multiscale import lost_class_note

    rows = [
        {"seed": 0, "method": "shearletx", "image": "chelsea", "retained_prob_ratio": 0.004,
         "explanation_edges": 10.0, "input_edges": 100.0},
        {"seed": 0, "method": "cartoonx", "image": "chelsea", "retained_prob_ratio": 0.99,
         "explanation_edges": 90.0, "input_edges": 100.0},
        {"seed": 1, "method": "pixel-rde", "image": "chelsea", "retained_prob_ratio": 0.001,
         "explanation_edges": 5.0, "input_edges": 100.0},
    ]  # fmt: skip
    note = lost_class_note(rows, 0)
    assert "ShearletX on chelsea (0.004, 10 of 100 edges)" in note
    assert "CartoonX" not in note and "Pixel RDE" not in note
    assert lost_class_note(rows[1:2], 0) == ""
