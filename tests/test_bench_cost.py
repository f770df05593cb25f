"""``rdex bench --mode cost``: the cost table over sizes and batches, and ``rdex batch`` on Ray
(no timing assertions: only that the numbers are there, positive, and grow with the work)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rdex.bench import cost
from rdex.cli import main

REPO = Path(__file__).resolve().parents[1]
MODEL = ["--model", "tests.test_bench:tiny_factory", "--threads", "1"]


def test_cost_table_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the measuring processes load the model by name from here
    out = tmp_path / "cost"
    args = ["bench", "--mode", "cost", *MODEL, "--sizes", "128,32", "--batches", "2,1"]
    assert main([*args, "--ray-workers", "", "--out", str(out)]) == 0
    result = json.loads((out / "bench-cost.json").read_text())
    settings = result["cost"]["settings"]
    # The CLI's default preset, with its own number of samples per step.
    from rdex.config import PRESETS

    explain = __import__("rdex.cli", fromlist=["build_parser"]).build_parser()
    assert settings["preset"] == explain.parse_args(["explain", "chelsea"]).preset
    assert settings["samples"] == PRESETS[settings["preset"]]["samples"]
    assert (settings["warmup"], settings["steps"], settings["threads"]) == (1, 2, 1)
    rows = {(r["size"], r["batch"]): r for r in result["cost"]["rows"]}
    assert list(rows) == [(32, 1), (32, 2), (128, 1), (128, 2)]  # sorted, all measured
    for r in rows.values():
        assert len(r["step_s"]) == 2 and r["step_s_median"] > 0
        assert r["peak_mb"] >= r["baseline_mb"] > 0
        assert r["image_step_s"] == pytest.approx(r["step_s_median"] / r["batch"])
    for b in (1, 2):  # 16 times the pixels: more time and more memory per step
        assert rows[(128, b)]["step_s_median"] > rows[(32, b)]["step_s_median"]
        assert rows[(128, b)]["extra_mb"] > rows[(32, b)]["extra_mb"]
    # Twice the images: more work per step (CPU time, which other processes' load leaves alone).
    assert rows[(128, 2)]["cpu_s_per_step"] > rows[(128, 1)]["cpu_s_per_step"]
    assert rows[(32, 1)]["time_vs_linear"] == 1.0
    assert "batch" not in result  # --ray-workers '' runs no batch
    table = (out / "bench-cost.md").read_text()
    assert table.count("\n| 128 | ") == 2 and table in capsys.readouterr().out


@pytest.mark.ray
def test_cost_skips_cells_over_the_memory_bound_and_times_rdex_batch_on_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    monkeypatch.chdir(REPO)  # the batch commands load the model by name from here
    out = tmp_path / "cost"
    args = ["bench", "--mode", "cost", *MODEL, "--sizes", "32,64", "--batches", "1"]
    args += ["--max-memory-gb", "0.01", "--out", str(out)]
    args += ["--ray-workers", "1", "--batch-images", "2", "--batch-size-px", "32"]
    assert main([*args, "--batch-steps", "2"]) == 0
    result = json.loads((out / "bench-cost.json").read_text())
    small, big = result["cost"]["rows"]
    assert small["peak_mb"] > 0  # nothing to predict from: measured
    assert "exceeds --max-memory-gb 0.01" in big["skipped"] and "peak_mb" not in big
    assert big["predicted_peak_mb"] > 10.24
    printed = capsys.readouterr()
    assert "64 px x 1: skipped: predicted peak memory" in printed.err
    assert "| 64 | 1 | — |" in printed.out
    batch = result["batch"]
    assert set(batch["runs"]) == {"local", "ray-1"}
    assert batch["settings"]["images"] == 2 and batch["settings"]["size"] == 32
    for name, run in batch["runs"].items():
        assert run["exit_code"] == 0, run
        assert run["wall_s"] > 0 and run["images_per_s"] == pytest.approx(2 / run["wall_s"])
        assert "--steps 2" in run["command"] and ("--ray" in run["command"]) == (name != "local")
    assert batch["runs"]["local"]["speedup_vs_local"] == 1.0
    assert list(tmp_path.iterdir()) == [out]  # the images and runs lived in a temporary folder
    assert sorted(p.name for p in out.iterdir()) == ["bench-cost.json", "bench-cost.md"]


def test_predictions_scale_by_pixels_and_images() -> None:
    rows = [
        {"size": 128, "batch": 1, "extra_mb": 300.0},
        {"size": 128, "batch": 4, "extra_mb": 330.0},
        {"size": 256, "batch": 1, "extra_mb": 1200.0},
    ]
    assert cost._predict([], 128, 1, "extra_mb") is None
    assert cost._predict(rows, 64, 1, "extra_mb") is None  # nothing smaller measured
    # Two batches of a size: a fixed part (290) and a part per image (10).
    assert cost._predict(rows, 128, 16, "extra_mb") == (450.0, "128 px x 1 and 4")
    # One batch of a size: in proportion to the images.
    assert cost._predict(rows, 256, 4, "extra_mb") == (4800.0, "256 px x 1")
    # A larger size: in proportion to the pixels where growth was linear so far ...
    assert cost._predict(rows, 256, 1, "extra_mb") == (1200.0, "128 px x 1")
    assert cost._predict(rows, 512, 1, "extra_mb")[0] == pytest.approx(4800.0)
    # ... with the exponent seen where it was worse (x8 for x4 pixels: x8 again) ...
    rows[2]["extra_mb"] = 2400.0
    assert cost._predict(rows, 512, 1, "extra_mb")[0] == pytest.approx(19200.0)
    # ... and never better than linear.
    rows[2]["extra_mb"] = 600.0
    assert cost._predict(rows, 512, 1, "extra_mb")[0] == pytest.approx(2400.0)


def test_batch_folder_holds_distinct_images(tmp_path: Path) -> None:
    from rdex.images import load_image

    folder = cost.write_batch_folder(tmp_path / "in", count=7, size=16)
    files = sorted(folder.iterdir())
    assert len(files) == 7
    pictures = [load_image(f, size=None) for f in files]
    assert all(p.shape == (3, 16, 16) for p in pictures)
    assert len({p.numpy().tobytes() for p in pictures}) == 7


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--sizes", "128,big"], "--sizes takes comma-separated integers"),
        (["--timed-steps", "0"], "at least 1"),
        (["--batches", "0"], "positive"),
    ],
)
def test_cost_rejects_bad_options(
    option: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "--mode", "cost", *MODEL, "--out", str(tmp_path / "o"), *option]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def _report_peak(out: object) -> None:
    from rdex.bench import peak_memory_mb

    out.put(peak_memory_mb())  # type: ignore[attr-defined]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_a_spawned_process_reports_its_own_peak_memory_not_its_parents() -> None:
    import multiprocessing as mp

    from rdex.bench import peak_memory_mb

    held = torch.ones(2**28)  # this process holds 1 GiB more than the child will ever use
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_report_peak, args=(out,))
    proc.start()
    child = out.get(timeout=120)
    proc.join()
    assert float(held[-1]) == 1.0
    assert 0 < child < peak_memory_mb() - 700
