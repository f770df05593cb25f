"""Property-based tests of hostile input at the CLI (issue 11): any bytes as an image file, any
float in a numeric option. Whatever comes in, ``rdex`` ends with exit 0 and finite results, or
exit 2 and one line on stderr: never a traceback, never a NaN reported as success.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdex.cli import main

REPO = Path(__file__).resolve().parents[1]
MODEL = "tests.tiny_models:colour_net"
TINY = ["--model", MODEL, "--size", "8", "--steps", "1", "--samples", "1", "--quiet"]
SETTINGS = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,  # the same examples on every CI run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # for --model tests.tiny_models:colour_net


def _check_outcome(code: int, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if code == 0:
        for path in out.glob("*.json"):
            record = json.loads(path.read_text(), parse_constant=_refuse)
            assert record["final_distortion"] is not None and math.isfinite(
                record["final_distortion"]
            )
            with np.load(path.with_suffix(".npz")) as data:
                assert np.isfinite(data["mask_flat"]).all()
        return
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rdex explain: error: "), lines


def _refuse(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name}")


def _clear(folder: Path) -> None:
    if folder.exists():
        for p in folder.iterdir():
            p.unlink()


@settings(SETTINGS, max_examples=25)
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".gif", ".bin", ""]))
def test_any_bytes_as_an_image(
    data: bytes, suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / f"input{suffix}"
    image.write_bytes(data)
    out = tmp_path / "out"
    _clear(out)
    code = main(["explain", str(image), "--out", str(out), *TINY])
    _check_outcome(code, out, capsys)


FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "NaN", "0x1p3"]),
    st.text(alphabet="0123456789.eE+-naifNIF", min_size=1, max_size=8),
)


@SETTINGS
@given(option=st.sampled_from(["--lambda-k", "--lr"]), value=FLOATS)
def test_any_float_in_a_numeric_option(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    _clear(out)
    code = main(["explain", "chelsea", "--out", str(out), *TINY, f"{option}={value}"])
    _check_outcome(code, out, capsys)


@SETTINGS
@given(kind=st.sampled_from(["constant", "blur"]), value=FLOATS)
def test_any_float_as_an_obfuscation_parameter(
    kind: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    _clear(out)
    code = main(["explain", "chelsea", "--out", str(out), *TINY, f"--obfuscation={kind}:{value}"])
    _check_outcome(code, out, capsys)
