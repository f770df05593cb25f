"""Hostile and careless input at the CLI, batch and report (issue 11, items 6 and 8-17).

Every test here runs what a user runs (the real commands, in process or as a subprocess where a
hang is possible) and fails on the code before the fix.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rdex.cli import main
from tiny_models import make_image  # tests/ is on sys.path (conftest)

REPO = Path(__file__).resolve().parents[1]
MODEL = "tests.tiny_models:colour_net"
FAST = ["--model", MODEL, "--size", "32", "--steps", "2", "--samples", "2", "--quiet"]


@pytest.fixture(autouse=True)
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # for --model tests.tiny_models:colour_net


def _strict_json(text: str) -> object:
    """``json.loads`` that refuses NaN/Infinity and lone surrogates, as strict parsers do."""

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    value = json.loads(text, parse_constant=refuse)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates fail here
    return value


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error" in line]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    return env


# -- item 6 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["explain", "batch"])
def test_a_method_list_without_a_method_is_an_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_image(tmp_path / "red.png", "red")
    out = tmp_path / "out"
    assert main([command, str(image), "--method", ",", "--out", str(out), *FAST]) == 2
    (line,) = _error_lines(capsys)
    assert "names no method" in line
    assert not out.exists() or not any(out.glob("**/*.json*"))


# -- item 8 ----------------------------------------------------------------------------------


class _Payload:
    """Unpickling this object would create a folder: the stand-in for a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_bench_never_unpickles_code_from_a_run_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"config": {"lambda_k": 1.0}, "masks": [], "x": _Payload(marker)}, runs / "a.pt")
    args = ["bench", "--mode", "quality", "--runs", str(runs), "--model", MODEL, "--size", "32"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert not marker.exists(), "the run record's pickle was executed"
    (line,) = _error_lines(capsys)
    assert "not a run record rdex can load safely" in line


# -- item 9 ----------------------------------------------------------------------------------


def test_special_files_in_a_list_get_error_records_without_hanging(tmp_path: Path) -> None:
    good = make_image(tmp_path / "good.png", "red")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.png"
    folder.mkdir()
    listing = tmp_path / "list.txt"
    listing.write_text(f"/dev/zero\n{fifo}\n{folder}\n{good}\n")
    out = tmp_path / "out"
    # A subprocess with a timeout: the FIFO used to block forever (holding the lock).
    proc = subprocess.run(
        [sys.executable, "-m", "rdex", "batch", str(listing), "--out", str(out), *FAST],
        capture_output=True,
        text=True,
        timeout=240,
        env=_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr  # some inputs failed, the run finished
    assert "Traceback" not in proc.stderr
    records = [_strict_json(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    status = {Path(r["path"]).name: (r["status"], r["error"]) for r in records}
    assert status["good.png"] == ("ok", None)
    for name in ("zero", "fifo.png", "folder.png"):
        assert status[name][0] == "error" and "not a regular file" in status[name][1], status
    assert (out / "index.html").is_file()


def test_a_device_or_fifo_as_the_input_or_image_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "/dev/zero", "--out", str(tmp_path / "o"), *FAST]) == 2
    assert main(["explain", "/dev/zero", "--out", str(tmp_path / "o"), *FAST]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 2 and all("not a" in line for line in lines)


def test_an_oversized_input_file_is_an_error_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rdex.batch

    monkeypatch.setattr(rdex.batch.inputs, "MAX_INPUT_BYTES", 100)
    make_image(tmp_path / "in" / "big.png", "red")
    out = tmp_path / "out"
    assert main(["batch", str(tmp_path / "in"), "--out", str(out), *FAST]) == 1
    (record,) = rdex.batch.read_manifest(out)
    assert record["status"] == "error" and "too large" in record["error"]


# -- item 10 ---------------------------------------------------------------------------------


def test_names_past_255_bytes_are_shortened_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "in"
    deep = root / ("d" * 62) / ("e" * 62) / ("f" * 62) / ("g" * 62) / "red.png"
    long_file = root / (("x" * 236) + ".png")
    make_image(deep, "red")
    make_image(long_file, "green")
    out = tmp_path / "out"
    assert main(["batch", str(root), "--out", str(out), *FAST, "--labels", "none"]) == 0
    records = [
        r
        for r in json.loads("[" + ",".join((out / "manifest.jsonl").read_text().splitlines()) + "]")
    ]
    assert {r["status"] for r in records} == {"ok"} and len(records) == 2
    for r in records:
        for f in r["files"].values():
            assert len(Path(f["path"]).name.encode()) <= 255 and (out / f["path"]).is_file()
    # A rerun skips them (the names are the same every time).
    assert main(["batch", str(root), "--out", str(out), *FAST, "--labels", "none"]) == 0
    assert "2 already done" in capsys.readouterr().err

    explained = tmp_path / "explained"
    assert main(["explain", str(long_file), "--out", str(explained), *FAST]) == 0
    names = [p.name for p in explained.iterdir()]
    assert len(names) == 4 and all(len(n.encode()) <= 255 for n in names)


# -- item 12 ---------------------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_gets_a_report(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    odd = os.fsdecode(b"caf\xe9.png")
    make_image(root / odd, "red")
    out = tmp_path / "out"
    assert main(["batch", str(root), "--out", str(out), *FAST]) == 0
    page = (out / "index.html").read_bytes().decode("utf-8")  # strict UTF-8
    assert "caf\\xe9.png" in page
    for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        _strict_json(line)
    assert main(["report", str(out)]) == 0


# -- item 13 ---------------------------------------------------------------------------------


def test_template_syntax_in_names_and_titles_is_shown_literally(tmp_path: Path) -> None:
    from rdex.batch import read_manifest

    root = tmp_path / "in"
    make_image(root / "{{CARDS}}" / "a.png", "red")
    make_image(root / "{{ title }}" / "b.png", "green")
    out = tmp_path / "{{CARDS}}"
    assert main(["batch", str(root), "--out", str(out), *FAST]) == 0
    assert main(["report", str(out), "--title", "{{CARDS}} {% raw %}"]) == 0
    page = (out / "index.html").read_text()
    assert page.count("<article ") == 2
    title = page.split("<title>")[1].split("</title>")[0]
    assert title == "{{CARDS}} {% raw %}"
    assert '<option value="{{CARDS}}">{{CARDS}}</option>' in page
    assert "<h2" in page and page.count("{{ title }}") >= 2

    # A record's warnings are shown on its card (a key the core adds; it may be absent).
    (first, *_) = read_manifest(out)
    line = json.dumps(dict(first, warnings=["the mask is nearly empty <b>"])) + "\n"
    with open(out / "manifest.jsonl", "a") as fh:
        fh.write(line)
    assert main(["report", str(out)]) == 0
    page = (out / "index.html").read_text()
    # One paragraph per warning of every card (the two-step runs here also carry the core's own
    # note that their still-dense masks score no better than the empty mask).
    latest = {r["name"]: r for r in read_manifest(out)}  # the appended line replaces the first
    notes = sum(len(r.get("warnings") or []) for r in latest.values())
    assert page.count('class="warning"') == notes
    assert page.count("the mask is nearly empty &lt;b&gt;") == 1


# -- item 14 ---------------------------------------------------------------------------------


def test_explain_never_overwrites_one_image_with_another(tmp_path: Path) -> None:
    a = make_image(tmp_path / "a" / "good.png", "red")
    b = make_image(tmp_path / "b" / "good.png", "green")
    c = make_image(tmp_path / "good.jpg", "blue")
    out = tmp_path / "out"
    assert main(["explain", str(a), str(b), str(c), "--out", str(out), *FAST]) == 0
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert len(records) == 3
    assert sorted(r["prediction"] for r in records) == [0, 1, 2]  # three different images
    # The same command names its files the same way again.
    again = tmp_path / "again"
    assert main(["explain", str(a), str(b), str(c), "--out", str(again), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in again.iterdir())


# -- item 15 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["explain", "batch", "compare", "sweep", "classify", "bench"])
def test_size_is_bounded_with_a_clear_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rdex.images import MAX_SIZE

    extra = {"batch": ["--out", str(tmp_path)], "sweep": ["--param", "lambda-k"]}.get(command, [])
    target = [] if command == "bench" else ["chelsea"]
    assert main([command, *target, "--size", "30000", *extra]) == 2
    (line,) = _error_lines(capsys)
    assert f"between 8 and {MAX_SIZE}" in line and "30000" in line
    assert main([command, "--help"]) == 0
    assert f"8 to {MAX_SIZE}" in " ".join(capsys.readouterr().out.split())


# -- item 16 ---------------------------------------------------------------------------------


def test_a_symlinked_manifest_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_image(tmp_path / "red.png", "red")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").symlink_to(victim)
    assert main(["batch", str(image), "--out", str(out), *FAST]) == 2
    assert main(["report", str(out)]) == 2
    assert victim.read_text() == "keep me\n"
    lines = _error_lines(capsys)
    assert len(lines) == 2 and all("symbolic link" in line for line in lines)


def test_a_tampered_manifest_shows_only_files_of_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rdex.batch import read_manifest

    root = tmp_path / "in"
    make_image(root / "a.png", "red")
    make_image(root / "b.png", "green")
    out = tmp_path / "run" / "out"
    assert main(["batch", str(root), "--out", str(out), *FAST]) == 0
    outside = make_image(tmp_path / "run" / "secret.png", "blue")
    first, second = read_manifest(out)
    evil = dict(first)
    evil["files"] = {
        "input": {"path": str(outside), "sha256": "0"},
        "explanation": {"path": "../secret.png", "sha256": "0"},
    }
    broken = dict(second, final_distortion="not a number")
    with open(out / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps(evil) + "\n" + json.dumps(broken) + "\n")
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "secret.png" not in page and 'src="/' not in page and 'src=".." ' not in page
    assert page.count("file missing") == 2  # the tampered record's pictures are not shown
    assert page.count("<article ") == 2  # the broken record is skipped; its image keeps its card
    err = capsys.readouterr().err
    assert "skipped a manifest record ('b.png'): final_distortion is not a number" in err
    assert "1 unreadable manifest records skipped" in page


# -- items 11 and 17 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        ["--lambda-k", "nan"],
        ["--lambda-k", "inf"],
        ["--lr", "inf"],
        ["--lr", "-inf"],
        ["--lr", "1e999"],
        ["--obfuscation", "constant:nan"],
        ["--obfuscation", "blur:inf"],
        ["--seed", str(2**70)],
        ["--seed", "-1"],
        ["--steps", str(2**64)],
    ],
)
@pytest.mark.parametrize("command", ["explain", "batch", "compare", "sweep"])
def test_non_finite_and_overflowing_options_exit_2(
    command: str, option: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"batch": ["--out", str(tmp_path)], "sweep": ["--param", "lambda-k"]}.get(command, [])
    assert main([command, "chelsea", *option, *extra]) == 2
    (line,) = _error_lines(capsys)
    assert line.startswith(f"rdex {command}: error: argument {option[0]}")
    assert not list(tmp_path.iterdir())


def test_sweep_values_must_be_finite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "chelsea", "--param", "lambda-k", "--values", "1,nan"]) == 2
    (line,) = _error_lines(capsys)
    assert "--values: must be a finite number" in line


def test_every_json_rdex_writes_is_strict(tmp_path: Path) -> None:
    from rdex.batch.manifest import _Manifest
    from rdex.io import json_dumps

    assert (
        json_dumps({"a": float("nan"), "b": [float("inf"), 1.5]}) == '{"a": null, "b": [null, 1.5]}'
    )
    manifest = _Manifest(tmp_path / "m.jsonl")
    manifest.append({"key": "k", "status": "ok", "final_distortion": float("nan")})
    manifest.close()
    assert _strict_json((tmp_path / "m.jsonl").read_text()) == {
        "key": "k",
        "status": "ok",
        "final_distortion": None,
    }


def test_control_characters_in_names_are_escaped_on_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_image(tmp_path / "evil\x1b[2J\x07.png", "red")
    assert main(["explain", str(image), "--out", str(tmp_path / "out"), *FAST]) == 0
    assert main(["explain", str(tmp_path / "gone\x1b[2J.png"), *FAST]) == 2
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err and "\x07" not in captured.out
    assert "evil\\x1b[2J\\x07.png" in captured.out
    assert "gone\\x1b[2J.png" in captured.err


def test_a_full_disk_has_its_own_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import rdex.io

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rdex.io, "atomic_write_bytes", full)
    image = make_image(tmp_path / "red.png", "red")
    assert main(["batch", str(image), "--out", str(tmp_path / "out"), *FAST]) == 3
    err = capsys.readouterr().err
    assert "rdex batch: I/O error: [Errno 28] No space left on device" in err
    assert "Traceback" not in err


def test_a_bug_is_not_passed_off_as_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import rdex.io

    def bug(*args: object, **kwargs: object) -> None:
        raise KeyError("internal")

    monkeypatch.setattr(rdex.io, "result_record", bug)
    image = make_image(tmp_path / "red.png", "red")
    assert main(["explain", str(image), "--out", str(tmp_path / "out"), *FAST]) == 4
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error" in err
