"""Every CLI option that should change the result changes it, and what a result's record says
re-creates it exactly (one table per command; issue 11, "How to test it").

Each case runs the real command twice, in process: once with the baseline options and once with
one option changed, on a tiny colour net, 32-pixel images and two optimisation steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdex.cli import main
from tiny_models import make_image  # tests/ is on sys.path (conftest)

REPO = Path(__file__).resolve().parents[1]
MODEL = "tests.tiny_models:colour_net"
FAST = ["--size", "32", "--steps", "2", "--samples", "2", "--quiet"]
# Figures show the explanation picture: Adam's first steps have the same size whatever the
# gradient's scale, so a few more steps let lambda and the obfuscation show in the pixels.
FIG = ["--size", "32", "--steps", "30", "--samples", "2", "--quiet"]


@pytest.fixture(autouse=True)
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # for --model tests.tiny_models:colour_net


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Not square, so that --fit crop and resize differ; red, so the model is sure.
    path = make_image(tmp_path_factory.mktemp("img") / "red.png", "red", size=48)
    Image.open(path).crop((0, 0, 48, 36)).save(path)
    return path


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _differ(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    if a.keys() != b.keys():
        return True
    return any(a[k].shape != b[k].shape or not np.array_equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------
# rdex explain: mask in the .npz, settings in the .json


EXPLAIN_CASES = [
    pytest.param(["--obfuscation", "zeros"], id="obfuscation"),
    pytest.param(["--obfuscation", "constant:0.5"], id="obfuscation-constant"),
    pytest.param(["--lambda-k", "200"], id="lambda-k"),
    pytest.param(["--lr", "0.3"], id="lr"),
    pytest.param(["--steps", "3"], id="steps"),
    pytest.param(["--samples", "3"], id="samples"),
    pytest.param(["--seed", "1"], id="seed"),
    pytest.param(["--seed", str(2**63 - 1)], id="seed-max"),
    pytest.param(["--size", "40"], id="size"),
    pytest.param(["--fit", "crop"], id="fit"),
    pytest.param(["--preset", "paper"], id="preset"),
    pytest.param(["--preset", "thorough"], id="preset-thorough"),
    pytest.param(["--schedule", "constant"], id="schedule"),
    pytest.param(["--target", "2"], id="target"),
    pytest.param(["--method", "pixel-rde"], id="method"),
    pytest.param(["--distortion", "kl"], id="distortion"),
    pytest.param(["--seeds", "0,1,2"], id="seeds"),
]


def _explain(image: Path, out: Path, extra: list[str]) -> tuple[dict, dict[str, np.ndarray]]:
    args = ["explain", str(image), "--model", MODEL, *FAST, "--out", str(out), *extra]
    assert main(args) == 0
    (record_path,) = out.glob("red-*.json")
    record = json.loads(record_path.read_text())
    return record, _arrays(record_path.with_suffix(".npz"))


def _recreate(image: Path, record: dict) -> np.ndarray:
    from rdex.images import load_image
    from rdex.methods import METHODS
    from rdex.models import load_classifier
    from rdex.rde import RDEConfig

    settings = dict(record["settings"])
    if settings.get("clip") is not None:
        settings["clip"] = tuple(settings["clip"])
    options = record["options"]
    model = load_classifier(record["model"], weights=options["weights"])
    x = load_image(image, size=options["size"], fit=options["fit"])[None]
    explainer = METHODS[record["method"]](
        model, config=RDEConfig(**settings), obfuscation=options["obfuscation"]
    )
    if "seeds" in record:  # --seeds: the combination of those seeds' runs (rdex.seeds)
        from rdex.seeds import explain_seeds

        seeds = record["seeds"]
        runs = explain_seeds(
            explainer, x, seeds=seeds["seeds"], combine=seeds["combine"], target=record["target"]
        )
        return runs.result.mask_flat[0].numpy()
    return explainer.explain(x, target=record["target"]).mask_flat[0].numpy()


@pytest.fixture(scope="module")
def explain_baseline(image: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    import sys

    sys.path.insert(0, str(REPO))
    try:
        return _explain(image, tmp_path_factory.mktemp("base"), [])
    finally:
        sys.path.remove(str(REPO))


@pytest.mark.parametrize("extra", EXPLAIN_CASES)
def test_explain_option_changes_the_result_and_the_record_recreates_it(
    extra: list[str], image: Path, tmp_path: Path, explain_baseline: tuple
) -> None:
    base_record, base = explain_baseline
    record, arrays = _explain(image, tmp_path, extra)
    assert _differ(base, arrays), f"{extra} did not change the explanation"
    # The record beside the result re-creates it exactly.
    np.testing.assert_array_equal(_recreate(image, record), arrays["mask_flat"])


def test_explain_baseline_record_recreates_it(image: Path, explain_baseline: tuple) -> None:
    record, arrays = explain_baseline
    np.testing.assert_array_equal(_recreate(image, record), arrays["mask_flat"])


def test_explain_record_names_what_decides_its_rounding(explain_baseline: tuple) -> None:
    # Bit for bit the same only with the same versions, device and threads (docs/performance.md).
    import torch

    import rdex

    env = explain_baseline[0]["environment"]
    assert env["rdex"] == rdex.__version__ and env["torch"] == torch.__version__
    assert env["device"] == "cpu" and env["threads"] == torch.get_num_threads()
    assert isinstance(env["machine"], str) and env["machine"]


# --------------------------------------------------------------------------------------------
# rdex batch: mask in the .npz, settings in the manifest line


BATCH_CASES = [
    pytest.param(["--obfuscation", "uniform"], id="obfuscation"),
    pytest.param(["--lambda-k", "200"], id="lambda-k"),
    pytest.param(["--lr", "0.3"], id="lr"),
    pytest.param(["--seed", "7"], id="seed"),
    pytest.param(["--size", "40"], id="size"),
    pytest.param(["--fit", "crop"], id="fit"),
    pytest.param(["--preset", "paper"], id="preset"),
    pytest.param(["--target", "1"], id="target"),
    pytest.param(["--method", "pixel-rde"], id="method"),
    pytest.param(["--distortion", "kl"], id="distortion"),
    pytest.param(["--seeds", "0,1,2"], id="seeds"),
]


def _batch(image: Path, out: Path, extra: list[str]) -> tuple[dict, dict[str, np.ndarray]]:
    args = ["batch", str(image), "--out", str(out), "--model", MODEL, *FAST, "--no-report"]
    assert main([*args, *extra]) == 0
    (record,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return record, _arrays(out / record["files"]["npz"]["path"])


def _recreate_batch(image: Path, record: dict) -> np.ndarray:
    from rdex.images import load_image
    from rdex.methods import METHODS
    from rdex.models import load_classifier
    from rdex.rde import RDEConfig

    s = record["settings"]
    config = dict(s["config"])
    if config.get("clip") is not None:
        config["clip"] = tuple(config["clip"])
    model = load_classifier(s["model"], weights=s["weights"])
    x = load_image(image, size=s["size"], fit=s["fit"])[None]
    explainer = METHODS[record["method"]](
        model, config=RDEConfig(**config), obfuscation=s["obfuscation"]
    )
    if "seeds" in s:  # --seeds: the median of those seeds' runs (rdex.seeds)
        from rdex.seeds import explain_seeds

        runs = explain_seeds(explainer, x, seeds=s["seeds"], target=record["target"])
        assert record["seeds"]["ssim_min"] == pytest.approx(float(runs.pair_ssim.min()))
        return runs.result.mask_flat[0].numpy()
    return explainer.explain(x, target=record["target"]).mask_flat[0].numpy()


@pytest.mark.parametrize("extra", BATCH_CASES)
def test_batch_option_changes_the_result_and_the_manifest_recreates_it(
    extra: list[str], image: Path, tmp_path: Path
) -> None:
    _, base = _batch(image, tmp_path / "base", [])
    record, arrays = _batch(image, tmp_path / "changed", extra)
    assert _differ(base, arrays), f"{extra} did not change the explanation"
    np.testing.assert_allclose(_recreate_batch(image, record), arrays["mask_flat"], atol=1e-6)


# --------------------------------------------------------------------------------------------
# rdex compare (maps in NAME.npz), rdex sweep and rdex models-compare (the figure's pixels)


def _figure_pixels(path: Path) -> dict[str, np.ndarray]:
    return {"pixels": np.asarray(Image.open(path).convert("RGB"))}


COMPARE_CASES = [
    pytest.param(["--obfuscation", "zeros"], id="obfuscation"),
    pytest.param(["--lambda-k", "200"], id="lambda-k"),
    pytest.param(["--seed", "3"], id="seed"),
    pytest.param(["--size", "40"], id="size"),
    pytest.param(["--preset", "paper"], id="preset"),
    pytest.param(["--methods", "cartoonx,pixel-rde"], id="methods"),
    pytest.param(["--distortion", "kl"], id="distortion"),
]


@pytest.mark.parametrize("extra", COMPARE_CASES)
def test_compare_option_changes_the_maps(extra: list[str], image: Path, tmp_path: Path) -> None:
    def run(out: Path, more: list[str]) -> dict[str, np.ndarray]:
        args = ["compare", str(image), "--model", MODEL, *FIG, "--methods", "cartoonx"]
        assert main([*args, "--out", str(out), "--name", "c", *more]) == 0
        return _arrays(out / "c.npz")

    assert _differ(run(tmp_path / "a", []), run(tmp_path / "b", extra)), extra


SWEEP_CASES = [
    pytest.param(["--values", "1,300"], id="values"),
    pytest.param(["--obfuscation", "zeros"], id="obfuscation"),
    pytest.param(["--seed", "3"], id="seed"),
    pytest.param(["--lr", "0.5"], id="lr"),
]


@pytest.mark.parametrize("extra", SWEEP_CASES)
def test_sweep_option_changes_the_figure(extra: list[str], image: Path, tmp_path: Path) -> None:
    def run(out: Path, more: list[str]) -> dict[str, np.ndarray]:
        args = ["sweep", str(image), "--model", MODEL, *FIG, "--param", "lambda-k"]
        args += ["--methods", "cartoonx"]
        if "--values" not in more:
            args += ["--values", "1,100"]
        assert main([*args, "--out", str(out), "--name", "s", *more]) == 0
        return _figure_pixels(out / "s.png")

    assert _differ(run(tmp_path / "a", []), run(tmp_path / "b", extra)), extra


MODELS_CASES = [
    pytest.param(["--lambda-k", "200"], id="lambda-k"),
    pytest.param(["--obfuscation", "zeros"], id="obfuscation"),
    pytest.param(["--seed", "3"], id="seed"),
    pytest.param(["--method", "pixel-rde"], id="method"),
]


@pytest.mark.parametrize("extra", MODELS_CASES)
def test_models_compare_option_changes_the_figure(
    extra: list[str], image: Path, tmp_path: Path
) -> None:
    def run(out: Path, more: list[str]) -> dict[str, np.ndarray]:
        args = [
            "models-compare",
            str(image),
            "--models",
            f"{MODEL},tests.tiny_models:slow_colour_net",
        ]
        assert main([*args, *FIG, "--out", str(out), "--name", "m", *more]) == 0
        return _figure_pixels(out / "m.png")

    assert _differ(run(tmp_path / "a", []), run(tmp_path / "b", extra)), extra


CLASSIFY_CASES = [
    pytest.param(["--topk", "1"], id="topk"),
    pytest.param(["--model", "tests.tiny_models:slow_colour_net", "--size", "8"], id="size"),
]


@pytest.mark.parametrize("extra", CLASSIFY_CASES)
def test_classify_option_changes_the_output(
    extra: list[str], image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["classify", str(image), "--model", MODEL, "--size", "32"]) == 0
    base = capsys.readouterr().out
    assert main(["classify", str(image), "--model", MODEL, "--size", "32", *extra]) == 0
    assert capsys.readouterr().out != base
