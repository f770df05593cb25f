"""Loading and validating images; bundled samples; saving.

Images are tensors of shape ``(3, H, W)`` (or batches ``(B, 3, H, W)``) with float32 values in
``[0, 1]``, as in the paper. :func:`load_image` reads anything Pillow reads, applies the EXIF
orientation, converts every mode to RGB (transparent pixels are composited on white; 16-bit images
are scaled by 65535, not clipped) and turns every way a file can be bad into a one-line
:class:`ValueError` or :class:`FileNotFoundError`.

The samples need no files: four photographs that scikit-image ships (``chelsea``: a cat,
``coffee``: an espresso cup, ``astronaut``, ``rocket``) and ``sky``, a smooth synthetic blue sky
without edges, used to show that pixel-space explanations produce artifacts where CartoonX does
not.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022 (images of 256 x 256 in
    [0, 1]).
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

__all__ = [
    "MAX_PIXELS",
    "MAX_SIZE",
    "MIN_SIDE",
    "SAMPLES",
    "Fit",
    "load_batch",
    "load_image",
    "resolve_image",
    "sample_image",
    "save_image",
    "to_pil",
]

Fit = Literal["resize", "crop"]
"""How to bring an image to ``size x size``: ``"resize"`` squashes it (the paper's 256 x 256);
``"crop"`` keeps the aspect ratio, scales the shorter side to ``size`` and cuts the centre."""

MAX_PIXELS = 64_000_000
"""Largest image (width x height) rdex decodes: about 8000 x 8000, 768 MB as float32 RGB."""

MIN_SIDE = 8
"""Smallest width or height rdex accepts."""

MAX_SIZE = 2048
"""Largest ``size`` (output side) rdex resizes to: eight times the paper's 256. An RDE run holds
``samples`` obfuscated copies of the image, so memory grows with ``size**2 * samples``; 2048 with
the paper's 64 samples is already about 3 GB of input copies alone."""

SAMPLES: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket", "sky")


def _check_size(size: int | None) -> None:
    if size is not None and (isinstance(size, bool) or int(size) < MIN_SIDE):
        raise ValueError(f"size must be at least {MIN_SIDE} pixels, got {size}")
    if size is not None and int(size) > MAX_SIZE:
        raise ValueError(f"size must be at most {MAX_SIZE} pixels (MAX_SIZE), got {size}")


def _check_fit(fit: str) -> None:
    if fit not in ("resize", "crop"):
        raise ValueError(f"fit must be 'resize' or 'crop', got {fit!r}")


def _to_float_array(img: Image.Image) -> np.ndarray:
    """An ``(H, W, 3)`` float32 array in ``[0, 1]`` from any Pillow mode."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F":
            # Float images have no fixed range: treat them as [0, 1] unless clearly 8/16-bit.
            peak = float(np.nanmax(arr)) if arr.size else 0.0
            scale = 1.0 if peak <= 1.0 else (255.0 if peak <= 255.0 else 65535.0)
        else:
            # 16-bit data (I;16*, and 16-bit PNG/TIFF that Pillow opens as "I").
            scale = 65535.0
        grey = np.clip(np.nan_to_num(arr / scale), 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
    else:
        rgb = img.convert("RGB")
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _fit_tensor(x: Tensor, size: int | None, fit: Fit) -> Tensor:
    """Resize ``x`` ``(3, H, W)`` to ``size x size`` (squash or shorter side + centre crop)."""
    if size is None:
        return x
    _check_size(size)
    _check_fit(fit)
    h, w = x.shape[-2:]
    if fit == "resize":
        out_h, out_w = size, size
    else:
        scale = size / min(h, w)
        out_h, out_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (out_h, out_w) != (h, w):
        # Antialiased bilinear: no ringing, so values stay in [0, 1] without clipping artefacts.
        x = F.interpolate(
            x[None], size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False
        )[0]
    if fit == "crop":
        top, left = (out_h - size) // 2, (out_w - size) // 2
        x = x[:, top : top + size, left : left + size]
    return x.clamp(0.0, 1.0).contiguous()


def load_image(
    path: str | os.PathLike[str], *, size: int | None = 256, fit: Fit = "resize"
) -> Tensor:
    """Read an image file as a tensor in ``[0, 1]``.

    Args:
        path: Any file Pillow reads (JPEG, PNG, WebP, TIFF, BMP, GIF: first frame, ...).
        size: Output side length; None keeps the native size.
        fit: ``"resize"`` squashes to ``size x size``; ``"crop"`` scales the shorter side to
            ``size`` and crops the centre.

    Returns:
        Tensor of shape ``(3, H, W)``, float32, values in ``[0, 1]``.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Not a readable image (not an image, truncated, empty), smaller than
            ``MIN_SIDE`` on a side, or larger than ``MAX_PIXELS``.
    """
    _check_size(size)
    _check_fit(fit)
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"no such image file: {p}")
    if p.is_dir():
        raise ValueError(f"{p}: is a directory, not an image")
    if not p.is_file():  # a FIFO would block the reader, a device (/dev/zero) never ends
        raise ValueError(f"{p}: not a regular file (a device, FIFO or socket), not an image")
    if p.stat().st_size == 0:
        raise ValueError(f"{p}: not a readable image (empty file)")
    problem: str | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                width, height = img.size  # from the header: nothing decoded yet
                if width * height > MAX_PIXELS:
                    problem = (
                        f"{p}: image too large ({width} x {height} = {width * height} pixels; "
                        f"the limit is MAX_PIXELS = {MAX_PIXELS})"
                    )
                elif min(width, height) < MIN_SIDE:
                    problem = (
                        f"{p}: image too small ({width} x {height}; "
                        f"at least {MIN_SIDE} x {MIN_SIDE} needed)"
                    )
                else:
                    img.load()  # decode fully now, so that truncated files fail here
                    try:
                        oriented = ImageOps.exif_transpose(img)
                    except Exception:  # noqa: BLE001 - a broken EXIF block is no reason to fail
                        oriented = img
                    arr = _to_float_array(oriented)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"{p}: image too large ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad data
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{p}: not a readable image ({reason})") from exc
    if problem is not None:
        raise ValueError(problem)
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
    return _fit_tensor(x, size, fit)


def _smooth_sky(size: int) -> Tensor:
    """A deterministic blue sky: vertical gradient plus soft, low-frequency variation."""
    ys = torch.linspace(0.0, 1.0, size, dtype=torch.float64)[:, None]
    xs = torch.linspace(0.0, 1.0, size, dtype=torch.float64)[None, :]
    # Wavelengths of about half to a whole image: no edges, no fine texture.
    haze = (
        0.5 * torch.sin(2 * math.pi * (0.8 * xs + 0.3 * ys) + 0.4)
        + 0.3 * torch.sin(2 * math.pi * (0.5 * ys - 0.6 * xs) + 1.9)
        + 0.2 * torch.cos(2 * math.pi * (1.1 * xs + 0.7 * ys) + 2.7)
    )
    top = torch.tensor([0.22, 0.42, 0.80], dtype=torch.float64)[:, None, None]
    bottom = torch.tensor([0.70, 0.82, 0.96], dtype=torch.float64)[:, None, None]
    t = ys**1.3
    sky = top * (1 - t) + bottom * t + 0.03 * haze * torch.tensor([0.6, 0.8, 1.0])[:, None, None]
    return sky.clamp(0.0, 1.0).to(torch.float32).contiguous()


def sample_image(name: str, *, size: int | None = 256, fit: Fit = "resize") -> Tensor:
    """A bundled sample image (no download).

    Args:
        name: One of :data:`SAMPLES`.
        size: Output side length; None keeps the native size (``sky`` is then 256).
        fit: As in :func:`load_image`.

    Returns:
        Tensor of shape ``(3, H, W)``, float32, values in ``[0, 1]``.

    Raises:
        ValueError: Unknown sample name.
    """
    _check_size(size)
    _check_fit(fit)
    key = name.strip().lower()
    if key not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; samples: {', '.join(SAMPLES)}")
    if key == "sky":
        return _smooth_sky(size or 256)
    import skimage.data

    arr = np.asarray(getattr(skimage.data, key)())
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    x = torch.from_numpy(arr[:, :, :3].astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
    return _fit_tensor(x, size, fit)


def resolve_image(spec: str, *, size: int | None = 256, fit: Fit = "resize") -> tuple[str, Tensor]:
    """An image from a file path or a sample name.

    An existing file wins over a sample of the same name; ``sample:NAME`` always means the
    sample.

    Args:
        spec: A file path, a name in :data:`SAMPLES`, or ``sample:NAME``.
        size: As in :func:`load_image`.
        fit: As in :func:`load_image`.

    Returns:
        ``(display name, image)``: the sample name or the file name, and a ``(3, H, W)`` tensor.
    """
    spec = str(spec)
    if spec.startswith("sample:"):
        name = spec.split(":", 1)[1]
        return name, sample_image(name, size=size, fit=fit)
    path = Path(spec).expanduser()
    if not path.exists() and spec.strip().lower() in SAMPLES:
        name = spec.strip().lower()
        return name, sample_image(name, size=size, fit=fit)
    if not path.exists():
        raise FileNotFoundError(
            f"no such image file: {path} (bundled samples: {', '.join(SAMPLES)})"
        )
    return path.name, load_image(path, size=size, fit=fit)


def load_batch(
    specs: Sequence[str], *, size: int | None = 256, fit: Fit = "resize"
) -> tuple[list[str], Tensor]:
    """Several images (paths or sample names) as one batch.

    Args:
        specs: As in :func:`resolve_image`.
        size: As in :func:`load_image`; with None all images must share their native size.
        fit: As in :func:`load_image`.

    Returns:
        Display names and a tensor of shape ``(B, 3, H, W)``.

    Raises:
        ValueError: No images, or images of different sizes.
    """
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise ValueError("no images given")
    names: list[str] = []
    images: list[Tensor] = []
    for spec in specs:
        name, x = resolve_image(spec, size=size, fit=fit)
        names.append(name)
        images.append(x)
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        listing = ", ".join(
            f"{n}: {tuple(x.shape[-2:])}" for n, x in zip(names, images, strict=True)
        )
        raise ValueError(f"images differ in size ({listing}); pass a size to resize them")
    return names, torch.stack(images)


def to_pil(x: Tensor) -> Image.Image:
    """A Pillow image from a tensor in ``[0, 1]``.

    Args:
        x: Shape ``(3, H, W)`` (RGB), ``(1, H, W)`` or ``(H, W)`` (greyscale); values are clipped
            to ``[0, 1]``, NaN becomes 0.

    Returns:
        An ``"RGB"`` or ``"L"`` image.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a tensor, got {type(x).__name__}")
    t = x.detach().to("cpu", torch.float32)
    if t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 3 and t.shape[0] != 3 or t.ndim not in (2, 3):
        raise ValueError(f"expected shape (3, H, W), (1, H, W) or (H, W), got {tuple(x.shape)}")
    arr = (torch.nan_to_num(t, nan=0.0).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()
    if arr.ndim == 3:
        return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)), mode="RGB")
    return Image.fromarray(arr, mode="L")


def save_image(x: Tensor, path: str | os.PathLike[str]) -> Path:
    """Save a tensor in ``[0, 1]`` as an image file, atomically.

    The image is written to a temporary file next to ``path`` and moved over it only when
    complete, so a failure never leaves a half-written file or destroys an existing one.

    Args:
        x: As in :func:`to_pil`.
        path: Destination; the format follows the extension (``.png``, ``.jpg``, ...). Missing
            parent folders are created.

    Returns:
        The destination path.

    Raises:
        ValueError: Unknown file extension or a tensor of the wrong shape.
    """
    dest = Path(path).expanduser()
    fmt = Image.registered_extensions().get(dest.suffix.lower())
    if fmt is None:
        raise ValueError(f"{dest}: unknown image file extension {dest.suffix!r} (use .png or .jpg)")
    img = to_pil(x)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            options = {"quality": 95} if fmt == "JPEG" else {}
            img.save(fh, format=fmt, **options)
        # mkstemp creates the file private (0600); give it the permissions open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
