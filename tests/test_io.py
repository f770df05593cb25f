"""Result I/O: atomic writes and what the saved files hold."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from torch import nn

from rdex.io import atomic_write_bytes, atomic_write_text, result_record, save_result
from rdex.methods import CartoonX
from rdex.rde import RDEConfig


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_failed_write_keeps_the_old_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rdex.io import atomic_write_with

    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"keep me")

    def broken(buf):  # type: ignore[no-untyped-def]
        buf.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_with(target, broken)
    assert target.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_save_result_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    x = torch.rand(2, 3, 32, 32)
    result = CartoonX(net, config=RDEConfig(steps=3, samples=2)).explain(x)
    paths, returned = save_result(
        result, tmp_path, "img", 1, labels=["a", "b", "c"], extra={"image": "img"}
    )
    data = np.load(paths["npz"])
    np.testing.assert_allclose(data["mask_flat"], result.mask_flat[1].numpy())
    for i, m in enumerate(result.mask):
        np.testing.assert_allclose(data[f"mask_{i}"], m[1].numpy())
    np.testing.assert_allclose(data["history_loss"], result.history["loss"][:, 1].numpy())
    record = json.loads(paths["json"].read_text())
    expected = result_record(result, 1, ["a", "b", "c"]) | {"image": "img"}
    assert record == json.loads(json.dumps(expected)) == json.loads(json.dumps(returned))
    assert record["target"] == int(result.target[1])
    assert record["settings"]["steps"] == 3
    assert paths["explanation"].stat().st_size > 0


def test_load_result_reads_what_save_npz_wrote(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rdex.io import load_result, save_npz

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    result = CartoonX(net, config=RDEConfig(steps=2, samples=2), levels=2).explain(
        torch.rand(2, 3, 16, 16)
    )
    saved = load_result(save_npz(result, tmp_path / "r.npz", 1))
    assert len(saved.mask) == len(result.mask) == 3
    for band, m in zip(saved.mask, result.mask, strict=True):
        np.testing.assert_array_equal(band, m[1].numpy())
    np.testing.assert_array_equal(saved.mask_flat, result.mask_flat[1].numpy())
    np.testing.assert_array_equal(saved.explanation, result.explanation[1].numpy())
    np.testing.assert_array_equal(saved.explanation_rgb, result.explanation_rgb[1].numpy())
    np.testing.assert_array_equal(saved.probs, result.probs[1].numpy())
    assert saved.band_names == list(result.band_names)
    assert saved.target == int(result.target[1]) and saved.attribution is None
    assert set(saved.history) == set(result.history)
    np.testing.assert_array_equal(saved.history["loss"], result.history["loss"][:, 1].numpy())


def test_load_result_refuses_files_that_are_not_results(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    from rdex.io import load_result

    buffer = io.BytesIO()
    np.savez_compressed(buffer, mask_0=np.zeros((1, 64, 64)))
    whole = buffer.getvalue()
    single = io.BytesIO()
    np.save(single, np.arange(3))
    for name, data in {
        "text.npz": b"not an archive",
        "empty.npz": b"",
        "truncated.npz": whole[: len(whole) // 2],
        "array.npz": single.getvalue(),
    }.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="not an .npz file saved by rdex"):
            load_result(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_result(tmp_path / "missing.npz")


def test_evaluate_a_damaged_result_is_a_one_line_error(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from rdex.cli import main

    (tmp_path / "x.json").write_text(json.dumps({"method": "cartoonx", "image": "chelsea"}))
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04 damaged")
    assert main(["evaluate", str(tmp_path), "--model", "tests.tiny_models:colour_net"]) == 2
    err = capsys.readouterr().err
    assert "x.npz is not an .npz file saved by rdex" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
