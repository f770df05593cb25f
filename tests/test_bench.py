"""The benchmark's yardstick, evaluator and command (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rdex import bench
from rdex.cli import main
from rdex.methods import CartoonX
from rdex.models import wrap_classifier


def tiny_net(seed: int = 0) -> nn.Module:
    """Conv + BatchNorm + ReLU whose label probability (~0.6) reacts strongly to obfuscation."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AvgPool2d(4),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 4),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.8)
        net[1].running_mean.copy_(torch.randn(8, generator=gen) * 0.1)
        net[1].running_var.copy_(torch.rand(8, generator=gen) + 0.5)
    return net


def tiny_factory() -> nn.Module:
    """For ``--model tests.test_bench:tiny_factory``."""
    return tiny_net()


def image(size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_reference_and_rdex_are_the_same_algorithm() -> None:
    net, x = tiny_net(), image()
    net.train()  # both must run it in eval mode and leave the caller's flags alone
    settings = {"lambda_k": 2.0, "steps": 12, "samples": 4, "lr": 0.05}
    ref = bench.reference_cartoonx(net, x, noise="fused", seed=3, **settings)
    fast = CartoonX(net, preset="paper", seed=3, **settings).explain(x)
    assert net.training and all(p.requires_grad for p in net.parameters())
    moved = torch.cat([m.flatten() for m in ref.mask])
    assert float(moved.std()) > 0.05  # the distortion shapes the mask: a real check
    for a, b in zip(ref.mask, fast.mask, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=2e-5, rtol=0)
    np.testing.assert_allclose(ref.loss, fast.history["loss"][:, 0].numpy(), rtol=1e-4, atol=1e-5)
    # The comparison is sensitive: another sparsity gives other masks.
    other = CartoonX(net, preset="paper", seed=3, **{**settings, "lambda_k": 0.5}).explain(x)
    assert not torch.allclose(
        other.mask_flat, torch.cat([m.flatten() for m in ref.mask])[None], atol=1e-3
    )


def test_reference_per_band_noise_is_seeded_and_projected() -> None:
    net, x = tiny_net(), image()
    a = bench.reference_cartoonx(net, x, steps=4, samples=3, lr=0.1, seed=1, lambda_k=1.0)
    b = bench.reference_cartoonx(net, x, steps=4, samples=3, lr=0.1, seed=1, lambda_k=1.0)
    c = bench.reference_cartoonx(net, x, steps=4, samples=3, lr=0.1, seed=2, lambda_k=1.0)
    assert a.loss == b.loss and a.loss != c.loss  # the loss is read from the noise of the seed
    flat = torch.cat([m.flatten() for m in a.mask])
    assert float(flat.min()) >= 0 and float(flat.max()) <= 1
    with pytest.raises(ValueError, match="one image"):
        bench.reference_cartoonx(net, torch.rand(2, 3, 32, 32), steps=1)


def test_evaluator_is_deterministic_and_scores_the_objective() -> None:
    net, x = tiny_net(), image()
    ev = bench.ObjectiveEvaluator(net, x, lambda_k=20.0, samples=16, seed=5, chunk=5)
    bands = ev.bands
    ones = [torch.ones(1, 1, *b.shape[2:]) for b in bands]
    zeros = [torch.zeros_like(m) for m in ones]
    # s = 1 keeps the image: no distortion, the objective is the sparsity term alone.
    assert ev(ones) == pytest.approx(20.0, abs=1e-5)
    d0 = ev.distortion(zeros)
    assert d0 > 1e-4
    assert ev(zeros) == d0  # mean(s) = 0
    assert ev(zeros) == ev(zeros)
    again = bench.ObjectiveEvaluator(net, x, lambda_k=20.0, samples=16, seed=5, chunk=16)
    assert again(zeros) == pytest.approx(ev(zeros), rel=1e-6)
    other = bench.ObjectiveEvaluator(net, x, lambda_k=20.0, samples=16, seed=6)
    assert other(zeros) != ev(zeros)
    # Flat per-band masks of the right size are accepted; wrong ones are refused.
    assert ev([m.flatten() for m in zeros]) == ev(zeros)
    with pytest.raises(ValueError, match="does not fit"):
        ev([torch.zeros(3)] + zeros[1:])


def test_rate_distortion_score_ranks_masks_by_faithfulness() -> None:
    from tests.tiny_models import ColourNet

    net = ColourNet(gain=8.0)
    x = torch.full((1, 3, 32, 32), 0.2)
    x[:, 0] = 0.8  # red dominates: the decision lives in the approximation (colour) band
    ev = bench.ObjectiveEvaluator(net, x, samples=16, seed=1)
    coarse = [torch.ones(1, 1, *ev.bands[0].shape[2:])]
    coarse += [torch.zeros(1, 1, *b.shape[2:]) for b in ev.bands[1:]]
    fine = [torch.zeros_like(coarse[0])] + [torch.ones_like(m) for m in coarse[1:]]
    kept_colour, kept_detail = ev.rate_distortion_auc(coarse), ev.rate_distortion_auc(fine)
    assert 0 <= kept_colour < kept_detail
    assert ev.rate_distortion_auc(coarse) == kept_colour  # fixed noise: deterministic


def test_similarity_scores() -> None:
    a = [torch.tensor([0.9, 0.1, 0.7]), torch.tensor([[0.0, 1.0]])]
    b = [torch.tensor([0.9, 0.8, 0.2]), torch.tensor([[0.0, 1.0]])]
    assert bench.retained_overlap(a, a) == 1.0
    assert bench.retained_overlap(a, b) == pytest.approx(2 / 4)
    none = [torch.zeros(3), torch.zeros(1, 2)]
    assert bench.retained_overlap(none, none) == 1.0
    pic = np.random.default_rng(0).random((32, 32))
    assert bench.ssim(pic, pic) == pytest.approx(1.0)
    assert bench.ssim(pic, 1 - pic) < 0.5


def test_run_schedule_snapshots_match_the_result(tmp_path: Path) -> None:
    net, x = tiny_net(), image()
    config = CartoonX(net, preset="preview", steps=9, samples=2).config
    record = bench.run_schedule(net, x, config, checkpoints=[0, 4, 8], save_path=tmp_path / "r.pt")
    assert record["steps"] == [1, 5, 9] and record["finished"]
    assert record["time_s"] == sorted(record["time_s"])
    final = CartoonX(net, config=config).explain(x)
    for a, b in zip(record["masks"][-1], final.mask, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.load(tmp_path / "r.pt", weights_only=False)["steps"] == [1, 5, 9]
    assert bench.checkpoint_steps(2000)[-1] == 1999 and bench.checkpoint_steps(0) == []


def test_cli_bench_writes_json_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b"
    common = ["--model", "tests.test_bench:tiny_factory", "--size", "32", "--out", str(out)]
    args = ["bench", "--mode", "all", *common, "--samples", "2", "--steps", "1", "--repeats", "1"]
    args += ["--schedules", "preview", "--steps-cap", "6", "--eval-samples", "8"]
    assert main(args) == 0
    speed = json.loads((out / "bench-speed.json").read_text())
    assert set(speed["variants"]) == {"reference", "rdex"}
    ref, fast = speed["variants"]["reference"], speed["variants"]["rdex"]
    assert ref["peak_memory_mb"] > 0 and fast["step_s_median"] > 0
    assert fast["speedup_vs_reference_median"] > 0 and "loadavg" in speed
    from rdex.inference import freed_memory_kept

    assert speed["settings"]["keep_freed_memory"] is freed_memory_kept()  # set by rdex's main
    quality = json.loads((out / "bench-quality.json").read_text())
    assert set(quality["runs"]) == {"paper-s0", "paper-s1", "preview-s0"}
    assert quality["runs"]["paper-s0"]["final"]["ssim"] == pytest.approx(1.0)
    assert quality["runs"]["paper-s0"]["final"]["ratio"] == pytest.approx(1.0)
    assert set(quality["floor"]) == {"ratio", "ssim", "overlap", "rd_ratio", "rd_soft_ratio"}
    assert quality["runs"]["paper-s0"]["final"]["rd_ratio"] == pytest.approx(1.0)
    assert quality["runs"]["paper-s0"]["final"]["rd_soft_ratio"] == pytest.approx(1.0)
    for name in ("bench-speed.png", "bench-quality.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "x" in capsys.readouterr().out
    # Recorded runs are scored without running anything.
    runs = tmp_path / "runs"
    runs.mkdir()
    clf = wrap_classifier(
        tiny_net(), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), labels=list("abcd")
    )
    from rdex.images import resolve_image

    x = resolve_image("chelsea", size=32)[1].unsqueeze(0)
    for name, steps in (("paper-s0", 5), ("paper-s1", 5), ("fast-s0", 3)):
        cfg = CartoonX(clf, preset="fast", steps=steps, samples=2, seed=int(name[-1])).config
        bench.run_schedule(
            clf, x, cfg, save_path=runs / f"{name}.pt", meta={"image": "chelsea", "size": 32}
        )
    assert (
        main(["bench", "--mode", "quality", *common, "--runs", str(runs), "--eval-samples", "8"])
        == 0
    )
    assert set(json.loads((out / "bench-quality.json").read_text())["runs"]) == {
        "paper-s0",
        "paper-s1",
        "fast-s0",
    }


def test_cli_bench_rejects_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--model", "tests.test_bench:tiny_factory", "--variants", "nope"]) == 2
    assert "unknown variant" in capsys.readouterr().err


def test_automatic_cpu_chunking_gives_the_same_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    import rdex.rde

    net, x = tiny_net(), image()
    settings = {"lambda_k": 2.0, "steps": 5, "samples": 6, "lr": 0.05, "seed": 1}
    whole = CartoonX(net, preset="paper", sample_chunk=6, **settings).explain(x)
    calls: list[int] = []
    monkeypatch.setattr(rdex.rde, "_CPU_CHUNK_ELEMENTS", 4 * x[0].numel())  # chunks of 4, 2
    original = rdex.rde.RDE._distortion_chunk

    def spy(self, masks, bands, noise, *rest):  # type: ignore[no-untyped-def]
        calls.append(noise[0].shape[1])  # obfuscations in this pass
        return original(self, masks, bands, noise, *rest)

    monkeypatch.setattr(rdex.rde.RDE, "_distortion_chunk", spy)
    chunked = CartoonX(net, preset="paper", **settings).explain(x)
    assert calls[:2] == [4, 2]
    torch.testing.assert_close(chunked.mask_flat, whole.mask_flat, atol=1e-6, rtol=0)


def _tiny_classifier() -> nn.Module:
    return wrap_classifier(
        tiny_net(), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), labels=list("abcd")
    )


def test_run_record_round_trip_is_safe(tmp_path: Path) -> None:
    from rdex.bench.repeat import RunRecord, load_records, run_record

    clf = _tiny_classifier()
    cfg = CartoonX(clf, preset="fast", steps=6, samples=2, seed=3).config
    rec = run_record(clf, "chelsea", 32, cfg, schedule="fast", keep=3)
    assert rec.name == "fast-chelsea-s3" and rec.steps[-1] == 6 and len(rec.masks) == 3
    assert rec.evaluations == 12 and len(rec.loss) == 6
    # The final mask is the explainer's own result.
    x = __import__("rdex.images", fromlist=["x"]).resolve_image("chelsea", size=32)[1][None]
    direct = CartoonX(clf, config=cfg).explain(x)
    for band, mine in zip(direct.mask, rec.final, strict=True):
        np.testing.assert_array_equal(band.numpy(), mine)
    rec.save(tmp_path)
    back = RunRecord.load(tmp_path / "fast-chelsea-s3.json")
    assert (back.name, back.schedule, back.image, back.size, back.seed, back.target) == (
        rec.name, rec.schedule, rec.image, rec.size, rec.seed, rec.target,
    )  # fmt: skip
    for a, b in zip(back.masks, rec.masks, strict=True):
        for x_, y_ in zip(a, b, strict=True):
            np.testing.assert_array_equal(x_, y_)
    assert [r.name for r in load_records(tmp_path)] == ["fast-chelsea-s3"]
    # Not a record, or arrays that would need unpickling: refused, nothing executed.
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    (tmp_path / "bad.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="not a run record"):
        RunRecord.load(tmp_path / "bad.json")
    np.savez(tmp_path / "fast-chelsea-s3.npz", s0_b0=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="not a readable mask archive"):
        RunRecord.load(tmp_path / "fast-chelsea-s3.json")


def test_cli_bench_repeat_scores_seeds_against_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rdex.bench.repeat import run_record

    clf = _tiny_classifier()
    refs = tmp_path / "refs"
    for seed in (0, 1):
        cfg = CartoonX(clf, preset="paper", steps=8, samples=2, seed=seed).config
        run_record(clf, "chelsea", 32, cfg, schedule="paper").save(refs)
    out = tmp_path / "out"
    args = ["bench", "--mode", "repeat", "--model", "tests.test_bench:tiny_factory"]
    args += ["--records", str(refs), "--schedules", "preview", "--seeds", "0,1,2"]
    args += ["--steps-cap", "5", "--eval-samples", "8", "--out", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err.count("running preview on chelsea (32 px)") == 3
    scores = json.loads((out / "bench-repeat.json").read_text())
    image = scores["images"]["chelsea"]
    assert set(image["schedules"]) == {"paper", "preview"}
    assert len(image["schedules"]["preview"]["seed_ssim"]) == 3  # three pairs of seeds
    assert len(image["schedules"]["paper"]["seed_ssim"]) == 1
    ratios = [run["objective_ratio"] for run in image["runs"].values()]
    assert min(ratios) == pytest.approx(1.0) and all(r >= 1.0 for r in ratios)
    assert image["runs"]["paper-chelsea-s0"]["paper_ssim"] == pytest.approx(1.0)
    assert image["rd_floor"] is not None and image["rd_floor"] > 0
    assert image["rd_soft_floor"] is not None and image["rd_soft_floor"] > 0
    # Faithfulness is judged on the soft curve, whose ratio the table shows first.
    for name, sched in image["schedules"].items():
        limit = max(1.0, image["rd_soft_floor"])
        assert sched["meets"]["faithfulness"] == (sched["rd_soft_ratio_max"] <= limit), name
    assert image["runs"]["paper-chelsea-s0"]["rd_soft_ratio"] == pytest.approx(1.0)
    assert scores["schedules"]["preview"]["images"] == 1
    assert "preview: 40 evaluations" in captured.out  # 5 steps x 8 samples
    table = (out / "bench-repeat.md").read_text()
    assert "| chelsea | preview | 40 | 3 |" in table and "| **all 1** | **preview** |" in table
    for name in ("bench-repeat.png", "bench-repeat-curve.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    curve = image["schedules"]["preview"]["curve"]
    assert curve["evaluations"][-1] == 40 and len(curve["seed_ssim"]) == len(curve["steps"]) > 1
    assert curve["seed_ssim"][0] > 0.99  # the masks start equal (ones)
    assert sorted(p.name for p in (out / "records").glob("*.json")) == [
        f"preview-chelsea-s{s}.json" for s in (0, 1, 2)
    ]
    # With the new runs among the records nothing runs again, and the scores are the same.
    again = [*args, "--records", str(out / "records"), "--out", str(tmp_path / "again")]
    assert main(again) == 0
    assert "running" not in capsys.readouterr().err
    rescored = json.loads((tmp_path / "again" / "bench-repeat.json").read_text())
    assert rescored["schedules"] == scores["schedules"]
    # The time-to-quality mode scores the same records: the paper record is the reference, the
    # second paper seed the floor, every snapshot of the others a point of its curve.
    quality = tmp_path / "quality"
    args_q = ["bench", "--mode", "quality", "--model", "tests.test_bench:tiny_factory"]
    args_q += ["--runs", str(out / "records"), "--eval-samples", "8", "--out", str(quality)]
    assert main(args_q) == 2  # preview records only: no paper-schedule record to compare with
    assert "no paper-schedule record" in capsys.readouterr().err
    for f in refs.iterdir():
        (out / "records" / f.name).write_bytes(f.read_bytes())
    assert main(args_q) == 0
    q = json.loads((quality / "bench-quality.json").read_text())
    assert q["reference"] == "paper-chelsea-s0" and set(q["floor"]) >= {"ssim", "ratio"}
    assert set(q["runs"]) == {"paper-chelsea-s0", "paper-chelsea-s1"} | {
        f"preview-chelsea-s{s}" for s in (0, 1, 2)
    }
    assert q["runs"]["paper-chelsea-s0"]["final"]["ratio"] == pytest.approx(1.0)
    assert len(q["runs"]["preview-chelsea-s0"]["curve"]["steps"]) > 1
    # Bad seeds are a usage error.
    assert main([*args, "--seeds", "a,b"]) == 2
    assert "--seeds takes comma-separated integers" in capsys.readouterr().err


def test_speed_benchmark_times_setup_and_steps_not_the_check_after_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Per step means per step: the check against the empty mask after the last step (which the
    # reference loop does not make) stays out of rdex's time, or short runs look slower.
    import time

    import rdex.rde
    from rdex.bench.speed import _run_variant

    args = {"steps": 2, "samples": 2, "lambda_k": 2.0}
    _run_variant("rdex", tiny_net(), image(), **args)  # warm-up, as the benchmark does
    original = rdex.rde.against_empty

    def slow_check(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(rdex.rde, "against_empty", slow_check)
    start = time.perf_counter()
    wall, cpu = _run_variant("rdex", tiny_net(), image(), **args)
    assert time.perf_counter() - start >= 1.0  # the check ran
    assert 0 < wall < 1.0 and 0 < cpu <= wall * 2 + 0.5
