"""Writing explanation results to disk: atomic files, ``.npz`` masks, JSON records.

Every write goes to a temporary file in the destination folder and is renamed into place, so a run
killed at any moment leaves either the old file or the complete new one, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rdex.rde import RDEResult


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()

__all__ = [
    "MAX_INPUT_BYTES",
    "atomic_write_bytes",
    "atomic_write_text",
    "display_name",
    "finite_or_none",
    "json_dumps",
    "read_regular_file",
    "safe_stem",
    "save_npz",
    "result_record",
    "save_result",
]

#: Largest input file rdex reads (bytes): far above any photo, far below what hurts a machine.
MAX_INPUT_BYTES = 256 * 2**20

#: Longest output file-name stem rdex makes (bytes); suffixes such as ``-cartoonx-figure.png``
#: are added to it, and file systems allow 255 bytes per name.
MAX_STEM_BYTES = 120


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-Inf) replaced by ``None``, recursively.

    Dicts, lists and tuples are copied; numpy scalars become Python numbers.
    """
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON (RFC 8259): non-finite floats become ``null``, never a bare ``NaN``.

    ``allow_nan=False`` stays on as a guard, so anything that slips past raises instead of
    writing a file strict parsers reject.
    """
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_stem(name: str, *, max_bytes: int = MAX_STEM_BYTES) -> str:
    """A portable file-name stem for ``name``: ASCII letters, digits, ``_.-`` only, bounded length.

    Runs of other characters become ``_``. A stem longer than ``max_bytes`` keeps a readable
    prefix and ends in ``-`` and 12 hex digits of the SHA-256 of ``name``, so it stays unique and
    is the same on every run.
    """
    stem = _UNSAFE.sub("_", name).strip("._") or "image"
    if len(stem) <= max_bytes:
        return stem
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return stem[: max_bytes - 13].rstrip("._-") + "-" + digest


def display_name(text: str) -> str:
    """``text`` safe to print on a terminal or put in a page: control characters and bytes that
    are not UTF-8 (surrogate escapes from the file system) are shown as ``\\xNN`` escapes."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(
        c
        if c.isprintable() or unicodedata.category(c) == "Zs"
        else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def read_regular_file(path: str | os.PathLike[str], *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Devices (``/dev/zero`` never ends), FIFOs (block until a writer comes), sockets and folders
    are refused without reading; the file is opened non-blocking and checked again after opening,
    so a swap between the check and the open cannot slip through.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Not a regular file, or larger than ``limit``.
        OSError: The file could not be read.
    """
    path = Path(path)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"{display_name(str(path))}: not a regular file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{display_name(str(path))}: not a regular file")
        if info.st_size > limit:
            raise ValueError(
                f"{display_name(str(path))}: file too large ({info.st_size} bytes; the limit is "
                f"{limit})"
            )
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew while we read
        raise ValueError(f"{display_name(str(path))}: file too large (over {limit} bytes)")
    return data


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; give results the permissions any new file would get.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[io.BytesIO], Any]) -> Path:
    """Let ``writer`` fill a buffer (e.g. ``fig.savefig``, ``np.savez``), then write it atomically."""
    buffer = io.BytesIO()
    writer(buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def save_npz(result: RDEResult, path: str | os.PathLike[str], index: int = 0) -> Path:
    """Save the mask (per band and flat), explanation pictures and history of input ``index``.

    Keys: ``mask_flat``, ``mask_<i>`` per band (band names in ``band_names``), ``explanation``,
    ``explanation_rgb``, ``history_distortion``, ``history_l1``, ``history_loss``, ``history_lr``,
    ``target``, ``probs``; for a combination of seeds (:mod:`rdex.seeds`) also ``seeds`` and
    ``seed_mask_flat``, every seed's own mask ``(K, k)``.
    """
    r = result[index]
    arrays: dict[str, Any] = {
        "mask_flat": r.mask_flat[0].cpu().numpy(),
        "band_names": np.array(r.band_names),
        "explanation": r.explanation[0].cpu().numpy(),
        "explanation_rgb": r.explanation_rgb[0].cpu().numpy(),
        "target": np.array(int(r.target[0])),
        "probs": r.probs[0].cpu().numpy(),
    }
    for i, m in enumerate(r.mask):
        arrays[f"mask_{i}"] = m[0].cpu().numpy()
    if "seed_mask_flat" in r.extra:  # rdex.seeds: every seed's own mask, (K, k)
        arrays["seed_mask_flat"] = r.extra["seed_mask_flat"][0].numpy()
        arrays["seeds"] = np.array(r.extra["seeds"][0]["seeds"])
    for key, values in r.history.items():
        arrays[f"history_{key}"] = (values if values.dim() == 1 else values[:, 0]).cpu().numpy()
    return atomic_write_with(path, lambda buf: np.savez_compressed(buf, **arrays))


def result_record(
    result: RDEResult, index: int = 0, labels: list[str] | None = None
) -> dict[str, Any]:
    """A JSON-ready summary of input ``index``: settings, target, probabilities, distortion, runtime,
    and ``warnings`` (:attr:`rdex.rde.RDEResult.warnings`: an empty or doubtful explanation)."""
    r = result[index]
    probs = r.probs[0]
    top = probs.topk(min(5, probs.numel()))
    target = int(r.target[0])
    pred = int(probs.argmax())

    def name(i: int) -> str | None:
        return labels[i] if labels is not None and i < len(labels) else None

    record = {
        "method": r.method,
        "settings": {k: v for k, v in vars(r.config).items()},
        "representation": r.extra.get("representation"),
        "obfuscation": r.extra.get("obfuscation"),
        "target": target,
        "target_label": name(target),
        "target_prob": float(probs[target]),
        "prediction": pred,
        "prediction_label": name(pred),
        "prediction_prob": float(probs[pred]),
        "top5": [
            {"index": int(i), "label": name(int(i)), "prob": float(p)}
            for p, i in zip(*top, strict=True)
        ],
        "final_distortion": float(r.final_distortion[0]),
        "final_l1": float(r.history["l1"][-1, 0]) if r.config.steps else 1.0,
        "final_loss": float(r.history["loss"][-1, 0]) if r.config.steps else None,
        "retained_fraction": float((r.mask_flat[0] > 0.5).float().mean()),
        "runtime_s": r.runtime_s / max(len(result), 1),
        "warnings": list(r.warnings[0]) if r.warnings else [],
        # rdex.objective: the final mask's objective and the empty mask's, on the same 64
        # seeded draws (a warning says when the empty one scores as well).
        "objective": r.extra["objective"][0] if "objective" in r.extra else None,
        "empty_objective": r.extra["empty_objective"][0] if "empty_objective" in r.extra else None,
        "environment": r.extra.get("environment"),
    } | ({"calibration": r.extra["calibration"]} if "calibration" in r.extra else {})
    if "seeds" in r.extra:
        # rdex.seeds: the input's summary. The history is the seeds' mean; the combined mask was
        # not optimised, so its own distortion, mean and objective (64 draws) stand here.
        seeds = r.extra["seeds"][0]
        record |= {
            "final_distortion": seeds["distortion"],
            "final_l1": float(r.mask_flat[0].mean()),
            "final_loss": record["objective"],
            "seeds": seeds,
        }
    return record


def save_result(
    result: RDEResult,
    out_dir: str | os.PathLike[str],
    stem: str,
    index: int = 0,
    *,
    labels: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write ``<stem>.png`` (explanation), ``<stem>.npz`` and ``<stem>.json`` for input ``index``.

    Returns:
        The paths written (keys ``explanation``, ``npz``, ``json``) and the JSON record.
    """
    from rdex.images import save_image

    out = Path(out_dir)
    paths = {
        "explanation": out / f"{stem}.png",
        "npz": out / f"{stem}.npz",
        "json": out / f"{stem}.json",
    }
    save_image(result.explanation[index], paths["explanation"])
    save_npz(result, paths["npz"], index)
    record = result_record(result, index, labels) | (extra or {})
    atomic_write_text(paths["json"], json_dumps(record, indent=2) + "\n")
    return paths, record


@dataclass(frozen=True)
class SavedResult:
    """One input's explanation as :func:`save_npz` wrote it: the arrays without the batch dimension.

    Attributes:
        path: The file read.
        mask: Per band ``mask_0, mask_1, ...`` as saved (e.g. wavelet approximation ``(1, h, w)``,
            details ``(1, 3, h, w)``; the leading 1 is the mask dimension shared by the channels).
            Empty for a file that holds no mask (e.g. an attribution).
        mask_flat: The mask as one vector ``(k,)``.
        band_names: Name of every band.
        explanation: The explanation picture ``(1, H, W)``.
        explanation_rgb: The masked input ``(C, H, W)``.
        attribution: A pixel attribution ``(C, H, W)``, where a file holds one instead of a mask.
        target: The explained label.
        probs: The model's probabilities ``(m,)``.
        history: Per optimisation step ``distortion``, ``l1``, ``loss``, ``lr`` ``(N,)``.
    """

    path: Path
    mask: list[np.ndarray]
    mask_flat: np.ndarray | None = None
    band_names: list[str] = field(default_factory=list)
    explanation: np.ndarray | None = None
    explanation_rgb: np.ndarray | None = None
    attribution: np.ndarray | None = None
    target: int | None = None
    probs: np.ndarray | None = None
    history: dict[str, np.ndarray] = field(default_factory=dict)


def load_result(path: str | os.PathLike[str]) -> SavedResult:
    """Read an ``.npz`` written by :func:`save_npz` (``rdex explain``, ``rdex batch``).

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not an ``.npz`` archive (or is damaged).
    """
    import re
    import zipfile
    import zlib

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    try:
        data = np.load(p, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # Damaged or foreign files; OSErrors (permissions, disk) pass through as they are.
        raise ValueError(f"{p} is not an .npz file saved by rdex: {exc}") from None
    masks = sorted((k for k in arrays if re.fullmatch(r"mask_[0-9]+", k)), key=lambda k: int(k[5:]))

    return SavedResult(
        path=p,
        mask=[arrays[k] for k in masks],
        mask_flat=arrays.get("mask_flat"),
        band_names=[str(b) for b in arrays.get("band_names", [])],
        explanation=arrays.get("explanation"),
        explanation_rgb=arrays.get("explanation_rgb"),
        attribution=arrays.get("attribution"),
        target=int(arrays["target"]) if "target" in arrays else None,
        probs=arrays.get("probs"),
        history={k[8:]: v for k, v in arrays.items() if k.startswith("history_")},
    )


__all__ += ["SavedResult", "load_result"]
