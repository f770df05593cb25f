"""Batch runs: inputs, manifest, resume after kills and broken files, bad inputs, CLI, Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rdex.batch import (
    MANIFEST_NAME,
    RayOptions,
    find_inputs,
    latest_records,
    read_manifest,
    run_batch,
)
from rdex.rde import preset
from tiny_models import colour_classifier, make_image  # tests/ is on sys.path (conftest)

REPO = Path(__file__).resolve().parents[1]
CONFIG = preset("preview", steps=3, samples=2)
SIZE = 32


def make_tree(root: Path) -> dict[str, str]:
    """An ImageFolder tree (red/green/blue folders) with two misclassified images.

    Returns image name -> dominant colour (what the colour classifier predicts).
    """
    layout = {
        "red/a.png": "red",
        "red/b.png": "green",  # misclassified
        "green/c.png": "green",
        "blue/d.png": "blue",
        "blue/e.png": "red",  # misclassified
    }
    for i, (name, colour) in enumerate(layout.items()):
        make_image(root / name, colour, size=SIZE, seed=i)
    return layout


def by_unit(records: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["name"], r["method"]): r for r in latest_records(records)}


def manifest_lines(out: Path) -> list[bytes]:
    return (out / MANIFEST_NAME).read_bytes().split(b"\n")[:-1]


# ------------------------------------------------------------------------------------ inputs


def test_find_inputs_folder_tree_and_list(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    items = find_inputs(tmp_path / "tree")
    assert [i.name for i in items] == sorted(i.name for i in items)
    assert {i.name: i.true_label for i in items}["blue/e.png"] == "blue"
    assert all(i.true_label is None for i in find_inputs(tmp_path / "tree", labels="none"))

    # A plain nested folder (images at several depths) has no labels; hidden files are skipped.
    flat = tmp_path / "flat"
    make_image(flat / "x.png", "red", size=SIZE)
    make_image(flat / "sub" / "deeper" / "y.jpg", "blue", size=SIZE)
    make_image(flat / ".hidden" / "z.png", "blue", size=SIZE)
    (flat / "notes.txt").write_text("not an input")
    items = find_inputs(flat)
    assert [(i.name, i.true_label) for i in items] == [("sub/deeper/y.jpg", None), ("x.png", None)]
    with pytest.raises(ValueError, match="not an ImageFolder tree"):
        find_inputs(flat, labels="folders")

    listing = tmp_path / "list.txt"
    listing.write_text(f"# my images\nflat/x.png\tgreen\n\n{flat / 'sub/deeper/y.jpg'}\n")
    items = find_inputs(listing)
    assert [(i.name, i.true_label) for i in items] == [
        ("flat/x.png", "green"),
        ("flat/sub/deeper/y.jpg", None),
    ]
    assert items[0].path == flat / "x.png"

    with pytest.raises(FileNotFoundError):
        find_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        find_inputs(tmp_path / "empty")


def test_true_labels_resolve_by_name_index_or_wordnet_id() -> None:
    from torch import nn

    from rdex.batch.worker import _label_lookup
    from rdex.models import wrap_classifier

    imagenet = wrap_classifier(
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000)), name="in1k"
    )
    assert imagenet.labels[281] == "tabby"
    for label in ("281", "tabby", "tabby cat", "n02123045"):
        assert _label_lookup(imagenet, label) == 281, label
    assert _label_lookup(imagenet, "n99999999") is None
    assert _label_lookup(imagenet, "no such class") is None
    assert _label_lookup(imagenet, "1000") is None
    with pytest.raises(ValueError, match="unknown target label"):
        _label_lookup(imagenet, "no such class", strict=True)
    colour = colour_classifier()
    assert [_label_lookup(colour, x) for x in ("blue", "0", "n02123045")] == [2, 0, None]


# ------------------------------------------------------------------------------ local runs


def test_batch_agrees_with_direct_explanations(tmp_path: Path) -> None:
    from rdex.images import load_image
    from rdex.methods import CartoonX, PixelRDE

    layout = make_tree(tmp_path / "tree")
    # A copy of an image under another name: computed once, recorded for both names.
    (tmp_path / "tree" / "green" / "copy.png").write_bytes(
        (tmp_path / "tree/green/c.png").read_bytes()
    )
    model = colour_classifier()
    out = tmp_path / "out"
    summary = run_batch(
        tmp_path / "tree",
        out,
        model=model,
        methods=["cartoonx", "pixel-rde"],
        configs=CONFIG,
        size=SIZE,
        batch_size=2,
        progress=False,
    )
    assert summary.ok and summary.explained == 12 and summary.total == 12
    records = read_manifest(out)
    assert len(records) == 12 and all(r["status"] == "ok" for r in records)
    units = by_unit(records)
    for (name, _method), r in units.items():
        colour = layout.get(name, "green")
        assert r["prediction_label"] == colour
        assert r["true_label_name"] == name.split("/")[0]
        assert r["misclassified"] is (colour != name.split("/")[0])
        assert r["target"] == r["prediction"]
        assert r["settings"]["config"]["steps"] == 3 and r["model"] == "colour"
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert np.isfinite(r["final_distortion"]) and r["runtime_s"] > 0

    # The saved mask is the one a direct call gives for that image alone.
    for method, cls in (("cartoonx", CartoonX), ("pixel-rde", PixelRDE)):
        r = units[("blue/e.png", method)]
        x = load_image(tmp_path / "tree/blue/e.png", size=SIZE)
        direct = cls(model, config=CONFIG).explain(x[None])
        saved = np.load(out / r["files"]["npz"]["path"])
        np.testing.assert_allclose(saved["mask_flat"], direct.mask_flat[0].numpy(), atol=1e-5)
        assert int(saved["target"]) == int(direct.target[0])
        assert r["final_distortion"] == pytest.approx(float(direct.final_distortion[0]), rel=1e-4)
        thumb = load_image(out / r["files"]["input"]["path"], size=None)
        assert float((thumb - x).abs().max()) <= 1 / 255 + 1e-6

    # The copy shares the files of the original: nothing explained twice.
    assert (
        units[("green/copy.png", "cartoonx")]["files"]
        == units[("green/c.png", "cartoonx")]["files"]
    )
    assert len(list((out / "explanations").glob("*.npz"))) == 10


def test_bad_inputs_are_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    good = (tmp_path / "tree/red/a.png").read_bytes()
    (tmp_path / "tree/red/truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "tree/green/text.jpg").write_text("this is not a picture")
    (tmp_path / "tree/blue/empty.png").write_bytes(b"")
    listing = tmp_path / "list.txt"
    names = ["red/a.png", "red/truncated.png", "green/text.jpg", "blue/empty.png", "blue/gone.png"]
    listing.write_text("".join(f"tree/{n}\n" for n in names))
    out = tmp_path / "out"
    summary = run_batch(
        listing,
        out,
        model=colour_classifier(),
        configs=CONFIG,
        size=SIZE,
        batch_size=4,
        progress=False,
    )
    assert (summary.explained, summary.failed, summary.exit_code) == (1, 4, 1)
    status = {r["name"]: (r["status"], r["error"]) for r in read_manifest(out)}
    assert status["tree/red/a.png"] == ("ok", None)
    assert "truncated" in status["tree/red/truncated.png"][1]
    assert "not a readable image" in status["tree/green/text.jpg"][1]
    assert "empty" in status["tree/blue/empty.png"][1]
    assert "No such file" in status["tree/blue/gone.png"][1]
    assert all(r["files"] == {} for r in read_manifest(out) if r["status"] == "error")

    # A rerun does not retry recorded failures (nor add lines), unless asked to.
    again = run_batch(
        listing, out, model=colour_classifier(), configs=CONFIG, size=SIZE, progress=False
    )
    assert (again.explained, again.skipped, again.failed) == (0, 1, 4)
    assert len(read_manifest(out)) == 5
    make_image(tmp_path / "tree/blue/gone.png", "blue", size=SIZE)  # the missing file appears
    fixed = run_batch(
        listing,
        out,
        model=colour_classifier(),
        configs=CONFIG,
        size=SIZE,
        progress=False,
        retry_errors=True,
    )
    assert (fixed.explained, fixed.skipped, fixed.failed) == (1, 1, 3)
    assert by_unit(read_manifest(out))[("tree/blue/gone.png", "cartoonx")]["status"] == "ok"


def test_resume_redoes_exactly_what_is_missing_or_broken(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    out = tmp_path / "out"
    kwargs = dict(
        model=colour_classifier(), configs=CONFIG, size=SIZE, batch_size=2, progress=False
    )
    first = run_batch(tmp_path / "tree", out, **kwargs)
    assert first.explained == 5
    records = by_unit(read_manifest(out))

    again = run_batch(tmp_path / "tree", out, **kwargs)
    assert (again.explained, again.skipped) == (0, 5)
    assert len(read_manifest(out)) == 5

    # Break things: a truncated npz, a deleted picture, a torn last line, a stale temporary file.
    npz = out / records[("red/a.png", "cartoonx")]["files"]["npz"]["path"]
    npz.write_bytes(npz.read_bytes()[:100])
    (out / records[("blue/d.png", "cartoonx")]["files"]["explanation"]["path"]).unlink()
    lines = manifest_lines(out)
    torn_name = json.loads(lines[-1])["name"]
    (out / MANIFEST_NAME).write_bytes(b"\n".join(lines[:-1]) + b"\n" + lines[-1][:57])
    (out / "explanations" / ".x.png.abc.tmp").write_bytes(b"half")

    redo = run_batch(tmp_path / "tree", out, **kwargs)
    assert (redo.explained, redo.skipped) == (3, 2)
    assert not list(out.rglob("*.tmp"))
    assert (out / MANIFEST_NAME).read_bytes().endswith(b"\n")
    final = read_manifest(out)
    assert all(json.loads(line) for line in manifest_lines(out))  # the torn piece is gone
    redone = {r["name"] for r in final[4:]}
    assert redone == {"red/a.png", "blue/d.png", torn_name}
    np.load(npz)["mask_flat"]  # loads again

    # Other settings are other work units: everything is redone, earlier files stay valid.
    other = run_batch(tmp_path / "tree", out, **{**kwargs, "configs": CONFIG.replace(lambda_k=5.0)})
    assert (other.explained, other.skipped) == (5, 0)
    assert (out / records[("green/c.png", "cartoonx")]["files"]["npz"]["path"]).exists()


def test_only_misclassified_and_true_target(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    out = tmp_path / "out"
    summary = run_batch(
        tmp_path / "tree",
        out,
        model=colour_classifier(),
        configs=CONFIG,
        size=SIZE,
        only_misclassified=True,
        target="true",
        progress=False,
    )
    assert (summary.explained, summary.not_selected) == (2, 3)
    records = read_manifest(out)
    assert sorted(r["name"] for r in records) == ["blue/e.png", "red/b.png"]
    for r in records:
        assert r["misclassified"] is True
        assert r["target"] == r["true_label"] != r["prediction"]
        assert r["target_label"] == r["name"].split("/")[0]

    # One named class for every image; an unknown one is a usage error before any work.
    fixed = run_batch(tmp_path / "tree", tmp_path / "o3", model=colour_classifier(),
                      configs=CONFIG, size=SIZE, target="blue", progress=False)  # fmt: skip
    assert fixed.explained == 5
    assert {r["target_label"] for r in read_manifest(tmp_path / "o3")} == {"blue"}
    with pytest.raises(ValueError, match="unknown target label 'purple'"):
        run_batch(tmp_path / "tree", tmp_path / "o4", model=colour_classifier(),
                  configs=CONFIG, size=SIZE, target="purple", progress=False)  # fmt: skip
    assert read_manifest(tmp_path / "o4") == []

    plain = tmp_path / "plain"
    make_image(plain / "x.png", "red", size=SIZE)
    with pytest.raises(ValueError, match="needs true labels"):
        run_batch(plain, tmp_path / "o2", model=colour_classifier(), only_misclassified=True)


def test_one_writer_per_output_folder(tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    make_image(tmp_path / "in" / "x.png", "red", size=SIZE)
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".rdex-batch.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another rdex batch"):
            run_batch(tmp_path / "in", out, model=colour_classifier(), configs=CONFIG, size=SIZE)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ kill -9


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from rdex.batch import run_batch
    from rdex.rde import preset
    from tiny_models import colour_classifier

    run_batch(sys.argv[1], sys.argv[2], model=colour_classifier(delay=0.02),
              methods=["cartoonx", "pixel-rde"], configs=preset("preview", steps=4, samples=2),
              size=32, batch_size=1, progress=False)
    """
)


def test_sigkill_mid_run_loses_nothing_and_nothing_is_done_twice(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    out = tmp_path / "out"
    paths = [str(REPO / "tests"), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "tree"), str(out)], cwd=REPO, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / MANIFEST_NAME).exists() and len(read_manifest(out)) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed; make it slower"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = manifest_lines(out)
    finished = read_manifest(out)
    assert 3 <= len(finished) < 10
    summary = run_batch(
        tmp_path / "tree",
        out,
        model=colour_classifier(),
        methods=["cartoonx", "pixel-rde"],
        configs=preset("preview", steps=4, samples=2),
        size=SIZE,
        batch_size=1,
        progress=False,
    )
    # Everything recorded before the kill is kept and trusted; the rest is done once.
    assert summary.skipped == len(finished)
    assert summary.explained == 10 - len(finished)
    after = manifest_lines(out)
    assert after[: len(before)] == before  # complete lines are never rewritten
    final = read_manifest(out)
    assert len(final) == 10 and len(by_unit(final)) == 10
    assert not list(out.rglob("*.tmp"))
    for r in final:
        for f in r["files"].values():
            assert (out / f["path"]).is_file()
        np.load(out / r["files"]["npz"]["path"])["mask_flat"]


# -------------------------------------------------------------------------------------- CLI


def test_cli_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rdex.cli import main

    monkeypatch.syspath_prepend(str(REPO))  # for --model tests.tiny_models:colour_net

    make_tree(tmp_path / "tree")
    out = tmp_path / "out"
    common = ["--model", "tests.tiny_models:colour_net", "--preset", "preview", "--steps", "2",
              "--samples", "2", "--size", str(SIZE), "--quiet"]  # fmt: skip
    assert main(["batch", str(tmp_path / "tree"), "--out", str(out), *common]) == 0
    assert len(read_manifest(out)) == 5 and (out / "index.html").is_file()
    (tmp_path / "tree/red/bad.png").write_bytes(b"\x89PNG broken")
    assert main(["batch", str(tmp_path / "tree"), "--out", str(out), *common]) == 1
    err = capsys.readouterr().err
    assert "5 already done" in err and "1 failed" in err
    assert main(["batch", str(tmp_path / "nothing"), "--out", str(out), *common]) == 2
    assert (
        main(["batch", str(tmp_path / "tree"), "--out", str(out), "--method", "nope", *common]) == 2
    )
    assert (
        main(["batch", str(tmp_path / "tree"), "--out", str(out), "--batch-size", "0", *common])
        == 2
    )


# -------------------------------------------------------------------------------------- Ray


@pytest.mark.ray
def test_ray_run_matches_local_run_and_resumes_across_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    import ray

    # The model is loaded by name, here and in the workers (which start in this folder).
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.chdir(REPO)

    tree = tmp_path / "tree"
    for i, (label, colour) in enumerate(
        [("0", "red"), ("0", "green"), ("1", "green"), ("2", "blue"), ("2", "red")]
    ):
        make_image(tree / label / f"img{i}.png", colour, size=SIZE, seed=i)
    (tree / "1" / "broken.png").write_bytes(b"nope")
    kwargs = dict(
        model="tests.tiny_models:colour_net",
        methods=["cartoonx", "pixel-rde"],
        configs=CONFIG,
        size=SIZE,
        batch_size=2,
        progress=False,
    )
    local = run_batch(tree, tmp_path / "local", **kwargs)
    assert (local.explained, local.failed) == (10, 2)

    # Half done locally, the rest on Ray (workers load the model by name).
    items = find_inputs(tree)
    run_batch(items[:3], tmp_path / "mixed", **kwargs)
    assert not ray.is_initialized()
    summary = run_batch(
        tree, tmp_path / "mixed", ray=RayOptions(num_cpus=2, images_per_task=2), **kwargs
    )
    assert not ray.is_initialized()
    # The first three images (one of them broken) were done locally: 4 skipped, 2 failed before.
    assert (summary.explained, summary.skipped, summary.failed) == (6, 4, 2)

    # Each line names the environment that decides its rounding: Ray gives a task one thread.
    local_threads = {r["environment"]["threads"] for r in read_manifest(tmp_path / "local")
                     if r["status"] == "ok"}  # fmt: skip
    assert local_threads == {torch.get_num_threads()}
    on_ray = [r for r in read_manifest(tmp_path / "mixed")[6:] if r["status"] == "ok"]
    assert on_ray and {r["environment"]["threads"] for r in on_ray} == {1}
    ignore = {"runtime_s", "path", "environment"}
    want = {
        k: {f: v for f, v in r.items() if f not in ignore}
        for k, r in by_unit(read_manifest(tmp_path / "local")).items()
    }
    got = {
        k: {f: v for f, v in r.items() if f not in ignore}
        for k, r in by_unit(read_manifest(tmp_path / "mixed")).items()
    }
    assert want.keys() == got.keys()
    for k in want:
        a, b = want[k], got[k]
        if a["status"] == "ok":
            assert a["final_distortion"] == pytest.approx(b["final_distortion"], rel=1e-4, abs=1e-9)
        for f in ("final_distortion", "final_l1", "final_loss", "files", "probabilities", "top5",
                  "target_prob", "prediction_prob", "objective", "empty_objective"):  # fmt: skip
            a.pop(f, None), b.pop(f, None)
        assert a == b, k
    for r in read_manifest(tmp_path / "mixed"):
        if r["status"] == "ok":
            twin = by_unit(read_manifest(tmp_path / "local"))[(r["name"], r["method"])]
            np.testing.assert_allclose(
                np.load(tmp_path / "mixed" / r["files"]["npz"]["path"])["mask_flat"],
                np.load(tmp_path / "local" / twin["files"]["npz"]["path"])["mask_flat"],
                atol=1e-5,
            )

    # And back: a local rerun into the Ray-made folder finds everything done.
    again = run_batch(tree, tmp_path / "mixed", **kwargs)
    assert (again.explained, again.skipped, again.failed) == (0, 10, 2)


@pytest.mark.ray
def test_seeds_on_ray_match_a_local_run_with_one_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --seeds travels to the Ray workers: the same combination and seed masks as a local run with
    # the workers' one torch thread (the thread count decides the rounding).
    pytest.importorskip("ray")
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.chdir(REPO)
    for i, colour in enumerate(("red", "blue")):
        make_image(tmp_path / "in" / f"{colour}.png", colour, size=SIZE, seed=i)
    kwargs = dict(
        model="tests.tiny_models:colour_net", methods=["cartoonx"], configs=CONFIG, size=SIZE,
        seeds=[0, 1], batch_size=2, progress=False,
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_batch(tmp_path / "in", tmp_path / "local", **kwargs).ok
    finally:
        torch.set_num_threads(threads)
    ray_options = RayOptions(num_cpus=1, images_per_task=2)
    assert run_batch(tmp_path / "in", tmp_path / "ray", ray=ray_options, **kwargs).ok
    local, on_ray = (by_unit(read_manifest(tmp_path / d)) for d in ("local", "ray"))
    assert local.keys() == on_ray.keys() and len(local) == 2
    for unit, a in local.items():
        b = on_ray[unit]
        assert a["seeds"] == b["seeds"] and b["environment"]["threads"] == 1
        saved = [
            np.load(tmp_path / d / r["files"]["npz"]["path"]) for d, r in (("local", a), ("ray", b))
        ]
        for key in ("mask_flat", "seed_mask_flat", "seeds"):
            np.testing.assert_array_equal(saved[0][key], saved[1][key])


def test_ray_missing_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    make_image(tmp_path / "in" / "x.png", "red", size=SIZE)
    real_import = builtins.__import__

    def no_ray(name: str, *args: object, **kwargs: object) -> object:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ValueError, match=r"rdex\[dist\]"):
        run_batch(tmp_path / "in", tmp_path / "out", model=colour_classifier(), configs=CONFIG,
                  size=SIZE, ray=RayOptions(), progress=False)  # fmt: skip


@pytest.mark.ray
@pytest.mark.slow
def test_ray_workers_that_cannot_load_the_model_give_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    make_image(tmp_path / "in" / "x.png", "red", size=SIZE)
    with pytest.raises(ValueError, match="Ray workers could not start: .*no_such_module"):
        run_batch(
            tmp_path / "in",
            tmp_path / "out",
            model="no_such_module:factory",
            configs=CONFIG,
            size=SIZE,
            ray=RayOptions(num_cpus=2),
            progress=False,
        )
    assert read_manifest(tmp_path / "out") == []


def test_metrics_in_the_manifest_when_asked(tmp_path: Path) -> None:
    from rdex.images import load_image
    from rdex.methods import CartoonX
    from rdex.metrics import manifest_metrics

    make_tree(tmp_path / "tree")
    model = colour_classifier()
    kwargs = dict(model=model, methods=["cartoonx"], configs=CONFIG, size=SIZE, progress=False)
    run_batch(tmp_path / "tree", tmp_path / "plain", **kwargs)
    assert all(
        "metrics" not in r or r["metrics"] is None for r in read_manifest(tmp_path / "plain")
    )
    summary = run_batch(tmp_path / "tree", tmp_path / "out", metrics=True, batch_size=1, **kwargs)
    assert summary.ok
    record = by_unit(read_manifest(tmp_path / "out"))[("blue/e.png", "cartoonx")]
    x = load_image(tmp_path / "tree/blue/e.png", size=SIZE)[None]
    explainer = CartoonX(model, config=CONFIG)
    expected = manifest_metrics(
        model, x, explainer.explain(x), 0, explainer=explainer, curves=False
    )
    assert set(record["metrics"]) == set(expected)
    for name, value in expected.items():
        assert record["metrics"][name] == pytest.approx(value, rel=1e-3, abs=1e-6), name


def test_seeds_in_a_batch_give_each_image_its_own_combination(tmp_path: Path) -> None:
    # --seeds in a batch: every image of a group of two gets the median and the agreement of
    # explain_seeds on that image alone (the second image of a group reads its own entries of
    # the batch's per-input extras, not the first's), and a seeds run is a unit of its own.
    from rdex.images import load_image
    from rdex.methods import CartoonX
    from rdex.seeds import explain_seeds

    make_tree(tmp_path / "tree")
    model = colour_classifier()
    kwargs = dict(model=model, methods=["cartoonx"], configs=CONFIG, size=SIZE, progress=False)
    summary = run_batch(
        tmp_path / "tree", tmp_path / "out", seeds="0,1,2", batch_size=2, metrics=True, **kwargs
    )
    assert summary.ok and summary.explained == 5
    units = by_unit(read_manifest(tmp_path / "out"))
    for name in ("blue/e.png", "red/b.png"):  # the second of its group of two, and one alone
        r = units[(name, "cartoonx")]
        x = load_image(tmp_path / "tree" / name, size=SIZE)[None]
        direct = explain_seeds(CartoonX(model, config=CONFIG), x, seeds=[0, 1, 2])
        saved = np.load(tmp_path / "out" / r["files"]["npz"]["path"])
        np.testing.assert_allclose(saved["mask_flat"], direct.result.mask_flat[0], atol=1e-6)
        np.testing.assert_allclose(
            saved["seed_mask_flat"], direct.result.extra["seed_mask_flat"][0], atol=1e-6
        )
        assert saved["seeds"].tolist() == [0, 1, 2] == r["seeds"]["seeds"]
        assert r["settings"]["seeds"] == [0, 1, 2] and r["settings"]["config"]["seed"] == 0
        assert r["seeds"]["ssim_min"] == pytest.approx(float(direct.pair_ssim[0].min()), abs=1e-6)
        assert r["objective"] == pytest.approx(direct.result.extra["objective"][0], rel=1e-5)
        assert r["final_loss"] == r["objective"]
        assert r["metrics"] and all(np.isfinite(v) for v in r["metrics"].values())
    # Without --seeds the same folder is other work: nothing is skipped.
    again = run_batch(tmp_path / "tree", tmp_path / "out", **kwargs)
    assert again.explained == 5 and again.skipped == 0
    with pytest.raises(ValueError, match="at least two seeds"):
        run_batch(tmp_path / "tree", tmp_path / "bad", seeds="3", **kwargs)


def test_cli_batch_seeds_says_how_far_the_seeds_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rdex.cli import main

    monkeypatch.syspath_prepend(str(REPO))  # for --model tests.tiny_models:colour_net
    make_tree(tmp_path / "tree")
    out = tmp_path / "out"
    args = ["batch", str(tmp_path / "tree"), "--out", str(out), "--model",
            "tests.tiny_models:colour_net", "--preset", "preview", "--steps", "4", "--samples",
            "2", "--size", str(SIZE), "--quiet", "--no-report"]  # fmt: skip
    assert main([*args, "--seeds", "0,1"]) == 0
    lows = {r["name"]: r["seeds"]["ssim_min"] for r in read_manifest(out)}
    least = min(lows, key=lows.__getitem__)
    line = [x for x in capsys.readouterr().err.splitlines() if "agree" in x]
    assert line == [
        f"rdex batch: seeds 0,1 agree at SSIM {min(lows.values()):.2f} to "
        f"{max(lows.values()):.2f} (median {np.median(list(lows.values())):.2f}, lowest SSIM "
        f"between two seeds per explanation); least: {least} [cartoonx]"
    ]
    assert main(args) == 0  # without --seeds: no such line
    assert "agree" not in capsys.readouterr().err
