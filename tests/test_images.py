"""Image loading, validation, conversion, samples and saving."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rdex import images
from rdex.images import (
    SAMPLES,
    load_batch,
    load_image,
    resolve_image,
    sample_image,
    save_image,
    to_pil,
)


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _as_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels but holds almost no image data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tiff", ".webp"])
def test_lossless_formats_round_trip_exactly(tmp_path, suffix):
    arr = _rgb()
    path = tmp_path / f"img{suffix}"
    options = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(arr).save(path, **options)
    x = load_image(path, size=None)
    assert x.dtype == torch.float32
    assert torch.equal(x, _as_tensor(arr))


def test_jpeg_is_close(tmp_path):
    arr = np.zeros((32, 32, 3), dtype=np.uint8)
    arr[:, :16] = (200, 40, 30)
    arr[:, 16:] = (20, 60, 220)
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=98)
    x = load_image(tmp_path / "a.jpg", size=None)
    assert (x - _as_tensor(arr)).abs()[:, 4:-4, 2:12].max() < 0.05


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)  # 20 wide, 10 high
    arr[:, :10] = (255, 0, 0)  # left: red
    arr[:, 10:] = (0, 0, 255)  # right: blue
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "rot.png", exif=exif)
    x = load_image(tmp_path / "rot.png", size=None)
    assert tuple(x.shape) == (3, 20, 10)  # portrait once oriented
    assert torch.allclose(x[:, :10].mean((1, 2)), torch.tensor([1.0, 0.0, 0.0]))  # left -> top
    assert torch.allclose(x[:, 10:].mean((1, 2)), torch.tensor([0.0, 0.0, 1.0]))


def test_greyscale_becomes_three_equal_channels(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, size=(12, 16), dtype=np.uint8)
    Image.fromarray(arr, mode="L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png", size=None)
    expected = torch.from_numpy(arr.astype(np.float32) / 255.0)
    for c in range(3):
        assert torch.equal(x[c], expected)


def test_palette_image(tmp_path):
    rgb = Image.fromarray(_rgb())
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    x = load_image(tmp_path / "p.png", size=None)
    assert torch.equal(x, _as_tensor(np.asarray(pal.convert("RGB"))))


def test_palette_transparency_becomes_white(tmp_path):
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([10, 20, 30] + [200, 100, 50] * 255)
    pal.paste(1, (0, 0, 4, 8))
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    x = load_image(tmp_path / "pt.png", size=None)
    assert torch.allclose(x[:, :, 4:], torch.ones(3, 8, 4))  # index 0 is transparent
    assert torch.allclose(x[:, :, :4], torch.tensor([200, 100, 50]).view(3, 1, 1) / 255.0)


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((8, 12, 4), dtype=np.uint8)
    arr[..., :3] = (200, 0, 100)
    arr[:, :4, 3] = 0  # transparent
    arr[:, 4:8, 3] = 255  # opaque
    arr[:, 8:, 3] = 128  # half
    Image.fromarray(arr, mode="RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", size=None)
    colour = torch.tensor([200.0, 0.0, 100.0]).view(3, 1, 1) / 255.0
    assert torch.allclose(x[:, :, :4], torch.ones(3, 8, 4))
    assert torch.allclose(x[:, :, 4:8], colour.expand(3, 8, 4))
    alpha = 128 / 255
    assert torch.allclose(x[:, :, 8:], (alpha * colour + (1 - alpha)).expand(3, 8, 4), atol=2 / 255)


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_sixteen_bit_is_scaled_not_clipped(tmp_path, suffix):
    values = np.array([0, 1000, 32768, 65535], dtype=np.uint16)
    arr = np.tile(values, (8, 2))  # 8 x 8
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    img.save(tmp_path / f"d{suffix}")
    x = load_image(tmp_path / f"d{suffix}", size=None)
    expected = torch.from_numpy(arr.astype(np.float64) / 65535.0).float()
    for c in range(3):
        assert torch.allclose(x[c], expected, atol=1e-6)
    assert 0.01 < x[0, 0, 1] < 0.02  # 1000/65535, not 1.0 as clipping at 255 would give


def test_resize_squashes_and_crop_keeps_the_centre(tmp_path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :10] = (255, 0, 0)
    arr[:, 10:30] = (0, 255, 0)
    arr[:, 30:] = (0, 0, 255)
    Image.fromarray(arr).save(tmp_path / "wide.png")

    native = load_image(tmp_path / "wide.png", size=None)
    assert tuple(native.shape) == (3, 20, 40)
    squashed = load_image(tmp_path / "wide.png", size=16, fit="resize")
    assert tuple(squashed.shape) == (3, 16, 16)
    assert squashed[0, :, 0].min() > 0.9 and squashed[2, :, -1].min() > 0.9  # all bands kept
    cropped = load_image(tmp_path / "wide.png", size=16, fit="crop")
    assert tuple(cropped.shape) == (3, 16, 16)
    assert cropped[1].min() > 0.9 and cropped[0].max() < 0.1 and cropped[2].max() < 0.1
    for x in (squashed, cropped):
        assert x.min() >= 0 and x.max() <= 1


def test_bad_options():
    with pytest.raises(ValueError, match="fit"):
        sample_image("chelsea", fit="stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        sample_image("chelsea", size=4)


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image file"):
        load_image(tmp_path / "absent.png")


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        load_image(tmp_path)


def test_text_file(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\n")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(tmp_path / "notes.png")


def test_zero_size_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(tmp_path / "empty.jpg")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file(tmp_path, suffix):
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(_rgb(64, 64)).save(whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(cut)


def test_tiny_image(tmp_path):
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "dot.png")
    with pytest.raises(ValueError, match="too small"):
        load_image(tmp_path / "dot.png")


def test_enormous_dimensions_are_refused_before_decoding(tmp_path):
    (tmp_path / "huge.png").write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(ValueError, match="too large"):
        load_image(tmp_path / "huge.png")
    # Under Pillow's own bomb limit, but over ours: our limit decides, from the header.
    (tmp_path / "big.png").write_bytes(_png_header(9000, 8000))
    with pytest.raises(ValueError, match="MAX_PIXELS"):
        load_image(tmp_path / "big.png")


def test_max_pixels_is_the_limit(tmp_path, monkeypatch):
    Image.fromarray(_rgb(16, 16)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png", size=None).shape == (3, 16, 16)
    monkeypatch.setattr(images, "MAX_PIXELS", 255)
    with pytest.raises(ValueError, match="too large"):
        load_image(tmp_path / "ok.png")


# --------------------------------------------------------------------------- samples


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_are_deterministic_images_in_range(name):
    x = sample_image(name)
    assert x.shape == (3, 256, 256) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0.01
    assert torch.equal(x, sample_image(name))


def test_photo_samples_are_scikit_image_data():
    import skimage.data

    x = sample_image("coffee", size=None)
    assert torch.equal(x, _as_tensor(skimage.data.coffee()))
    assert sample_image("chelsea", size=64, fit="crop").shape == (3, 64, 64)


def test_sky_is_smooth_blue_and_has_no_edges():
    sky = sample_image("sky", size=256)
    assert (sky[2] > sky[0]).all() and (sky[2] > sky[1]).all()  # blue everywhere
    assert sky[:, :16].mean() < sky[:, -16:].mean()  # darker at the top: a vertical gradient
    dy = (sky[:, 1:] - sky[:, :-1]).abs().max()
    dx = (sky[:, :, 1:] - sky[:, :, :-1]).abs().max()
    assert dy < 0.01 and dx < 0.01
    # Some variation across the width: not a pure 1-D gradient.
    assert (sky.std(dim=2)).max() > 0.005


def test_unknown_sample():
    with pytest.raises(ValueError, match="chelsea"):
        sample_image("dog")


def test_resolve_sample_and_file(tmp_path, monkeypatch):
    name, x = resolve_image("chelsea", size=32)
    assert name == "chelsea" and torch.equal(x, sample_image("chelsea", size=32))

    monkeypatch.chdir(tmp_path)
    Image.fromarray(_rgb(16, 16)).save(tmp_path / "chelsea", format="PNG")
    name, x = resolve_image("chelsea", size=None)  # an existing file wins
    assert name == "chelsea" and tuple(x.shape) == (3, 16, 16)
    name, x = resolve_image("sample:chelsea", size=32)  # unless the prefix says otherwise
    assert torch.equal(x, sample_image("chelsea", size=32))
    with pytest.raises(FileNotFoundError, match="bundled samples"):
        resolve_image("nope.jpg")


def test_load_batch(tmp_path):
    Image.fromarray(_rgb(20, 30)).save(tmp_path / "a.png")
    names, batch = load_batch([str(tmp_path / "a.png"), "coffee"], size=24)
    assert names == ["a.png", "coffee"] and tuple(batch.shape) == (2, 3, 24, 24)
    assert torch.equal(batch[1], sample_image("coffee", size=24))
    with pytest.raises(ValueError, match="differ in size"):
        load_batch([str(tmp_path / "a.png"), "coffee"], size=None)
    with pytest.raises(ValueError, match="no images"):
        load_batch([])


# --------------------------------------------------------------------------- writing


def test_to_pil_and_save_round_trip(tmp_path):
    x = torch.randint(0, 256, (3, 10, 12)).float() / 255.0
    path = save_image(x, tmp_path / "sub" / "out.png")
    assert torch.equal(load_image(path, size=None), x)
    grey = torch.rand(10, 12)
    assert to_pil(grey).mode == "L" and to_pil(grey[None]).mode == "L"
    assert np.array_equal(np.asarray(to_pil(grey)), np.asarray(to_pil(grey[None])))
    clipped = np.asarray(to_pil(torch.tensor([[-1.0, 0.5], [2.0, float("nan")]])))
    assert clipped.tolist() == [[0, 128], [255, 0]]
    with pytest.raises(ValueError, match="shape"):
        to_pil(torch.rand(2, 4, 4))


def test_save_is_atomic(tmp_path, monkeypatch):
    dest = tmp_path / "keep.png"
    dest.write_bytes(b"precious")
    with pytest.raises(ValueError, match="extension"):
        save_image(torch.rand(3, 8, 8), tmp_path / "keep.xyz")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.rand(3, 8, 8), dest)
    assert dest.read_bytes() == b"precious"
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["keep.png"]  # no temp left
