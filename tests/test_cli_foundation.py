"""`rdex classify` and `rdex models`: output, and one-line errors with exit code 2."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from rdex.cli import main


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    """``--model rdex_cli_user_model:make``: a fixed linear classifier with 4 classes."""
    (tmp_path / "rdex_cli_user_model.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class MeanColour(nn.Module):
                def forward(self, x):
                    m = x.mean(dim=(2, 3))
                    return torch.stack([m[:, 0], m[:, 1], m[:, 2], -m.sum(1)], dim=1) * 4.0

            def make():
                return MeanColour()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "rdex_cli_user_model:make"


def _one_error_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"rdex {command}: error: ")
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_classify_prints_topk_with_probabilities(tmp_path, capsys, user_model):
    arr = np.zeros((16, 16, 3), dtype=np.uint8)
    arr[..., 1] = 255  # green
    Image.fromarray(arr).save(tmp_path / "green.png")
    code = main(["classify", str(tmp_path / "green.png"), "--model", user_model, "--topk", "2"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("green.png")
    assert len(out) == 3  # header + top 2
    # mean colour (0, 1, 0) -> logits (0, 4, 0, -4) * ImageNet normalisation inside the wrapper
    from rdex.models import IMAGENET_MEAN, IMAGENET_STD

    m = (torch.tensor([0.0, 1.0, 0.0]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    probs = torch.softmax(torch.cat([m, -m.sum(0, keepdim=True)]) * 4.0, 0)
    top = probs.topk(2)
    for line, p, i in zip(out[1:], top.values.tolist(), top.indices.tolist(), strict=True):
        fields = line.split()
        assert int(fields[1]) == i and fields[2:4] == ["class", str(i)]
        assert fields[-1] == f"{100 * p:.2f}%"


def test_classify_default_model_on_samples(capsys):
    assert main(["classify", "chelsea", "coffee", "--topk", "1"]) == 0
    out = capsys.readouterr().out
    chelsea, coffee = out.split("coffee (")
    assert any(
        name in chelsea
        for name in ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")
    )
    assert "espresso" in coffee or "cup" in coffee


def test_models_lists_the_models_and_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "alexnet-owt-7be5be79.pth").write_bytes(b"x")
    assert main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert " yes " in rows["efficientnet_lite0"]
    assert " yes " in rows["torchvision:alexnet"] and str(folder) in rows["torchvision:alexnet"]
    assert (
        " missing " in rows["torchvision:vgg16"]
        and "vgg16-397923af.pth" in rows["torchvision:vgg16"]
    )
    for name in ("mobilenet_v3_small", "inception_v3", "resnext50_32x4d", "resnet50"):
        assert f"torchvision:{name}" in rows


def _bad_png_header(path):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", 9000, 8000, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _make_bad_input(kind: str, tmp_path):
    path = tmp_path / f"{kind}.png"
    if kind == "missing":
        pass
    elif kind == "text":
        path.write_text("hello\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("truncated-png", "truncated-jpeg"):
        fmt = "PNG" if kind == "truncated-png" else "JPEG"
        whole = tmp_path / "whole"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole, format=fmt)
        data = whole.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "1x1":
        Image.new("RGB", (1, 1)).save(path)
    elif kind == "huge":
        _bad_png_header(path)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such image file"),
        ("text", "not a readable image"),
        ("empty", "not a readable image"),
        ("truncated-png", "not a readable image"),
        ("truncated-jpeg", "not a readable image"),
        ("1x1", "too small"),
        ("huge", "too large"),
    ],
)
def test_classify_bad_images(kind, message, tmp_path, capsys, user_model):
    path = _make_bad_input(kind, tmp_path)
    assert main(["classify", str(path), "--model", user_model]) == 2
    assert message in _one_error_line(capsys, "classify")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "no such model"], "valid forms"),
        (["--model", "torchvision:mobilenet_v3_small"], "--weights"),
        (["--model", "timm:test_efficientnet"], "--weights"),
        (["--model", "torchvision:mobilenet_v3_small", "--weights", "absent.pth"], "not found"),
        (["--topk", "0"], "--topk"),
        (["--size", "2"], "size"),
    ],
)
def test_classify_bad_options(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    assert main(["classify", "coffee", *argv]) == 2
    assert message in _one_error_line(capsys, "classify")


def test_classify_unknown_sample(capsys):
    assert main(["classify", "no-such-sample"]) == 2
    assert "bundled samples" in _one_error_line(capsys, "classify")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_classify_cuda_without_cuda(capsys):
    assert main(["classify", "coffee", "--device", "cuda"]) == 2
    assert "CUDA" in _one_error_line(capsys, "classify")
