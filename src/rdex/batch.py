"""Dataset-scale explanation runs: a crash-safe manifest, resume, and scale-out with Ray.

:func:`run_batch` explains every image of a folder, a list file or an ImageFolder tree with one or
more RDE methods and writes, per image and method, the explanation picture, the mask and history
(``.npz``) and one line of a JSON Lines manifest (``manifest.jsonl``). The input as the model saw
it is saved once per image, for the HTML report (:mod:`rdex.report`).

Layout of an output folder::

    manifest.jsonl                        one JSON object per line, appended and fsync'ed
    inputs/<name>-<sha8>.png              the resized input
    explanations/<name>-<method>-<key8>.png / .npz

Crash safety: every file is written to a temporary file and renamed into place
(:mod:`rdex.io`), and only then is the manifest line appended with a single ``write`` and an
``fsync``. A record is trusted on resume only when its line is complete JSON and every file it names
still has the SHA-256 the line recorded; a torn last line (a kill during the append) is cut off
before new lines are appended. So a run killed with SIGKILL at any moment loses no finished
explanation, and nothing half-written is ever taken as done.

Resume: the work unit is (image content, method, settings). Its key is the SHA-256 of the image
file's bytes, the method name and every setting that changes the result (model, weights, RDE
config, obfuscation, image size and fit, target, true label). A rerun skips keys that are done and
redoes what is missing or broken. Inputs that failed (not an image, truncated, unreadable) are
recorded with status ``error`` and not retried unless ``retry_errors``.

Ray: with ``ray=RayOptions(...)`` the units are sent in tasks of a few images to actors that load
the model once each; the driver alone reads inputs and writes files and the manifest, through the
same code as a local run, so the outputs are the same and resume works across both modes. Inputs
travel as bytes, so the workers need no shared file system.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rdex.io import (
    MAX_INPUT_BYTES,
    atomic_write_with,
    display_name,
    json_dumps,
    read_regular_file,
    result_record,
    safe_stem,
    save_npz,
)
from rdex.rde import RDEConfig, RDEResult, preset

__all__ = [
    "IMAGE_SUFFIXES",
    "MANIFEST_NAME",
    "InputItem",
    "RayOptions",
    "BatchSummary",
    "find_inputs",
    "read_manifest",
    "latest_records",
    "unit_key",
    "run_batch",
]

#: File suffixes taken as images when a folder is searched.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
#: Name of the manifest in an output folder.
MANIFEST_NAME = "manifest.jsonl"
_LOCK_NAME = ".rdex-batch.lock"
_INPUT_DIR = "inputs"
_EXPLANATION_DIR = "explanations"

LabelMode = Literal["auto", "folders", "none"]


@dataclass(frozen=True)
class InputItem:
    """One input image.

    Attributes:
        path: Location of the file (absolute).
        name: Name relative to the input root (POSIX separators), used in the manifest and for the
            output file names.
        true_label: True label as given (an ImageFolder class folder or a list entry): a class name
            or an index, resolved with the model's ``label_index`` when explaining.
    """

    path: Path
    name: str
    true_label: str | None = None


@dataclass(frozen=True)
class RayOptions:
    """How to run a batch on Ray.

    Attributes:
        address: Address of a running cluster (``"auto"``, ``"ray://host:10001"``, ...); ``None``
            starts a local runtime.
        num_cpus: CPUs of a local runtime (``None``: all).
        num_gpus: GPUs of a local runtime (``None``: all Ray finds).
        cpus_per_task: CPUs each worker reserves.
        gpus_per_task: GPUs each worker reserves (fractions share a GPU between workers).
        images_per_task: Images sent to a worker at once.
        workers: Number of workers (actors); ``None``: as many as the cluster's resources allow.
    """

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    images_per_task: int = 4
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.cpus_per_task < 0 or self.gpus_per_task < 0:
            raise ValueError("cpus_per_task and gpus_per_task must be non-negative")
        if self.cpus_per_task == 0 and self.gpus_per_task == 0:
            raise ValueError("a task needs some CPU or GPU (cpus_per_task or gpus_per_task > 0)")
        if self.images_per_task < 1:
            raise ValueError("images_per_task must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be at least 1")


@dataclass
class BatchSummary:
    """What a batch run did.

    Attributes:
        out_dir: The output folder.
        total: Work units (images times methods) of the input.
        explained: Units explained by this run.
        skipped: Units already done by an earlier run (or a copy of the same image).
        failed: Units whose latest record has status ``error`` (this run or an earlier one).
        not_selected: Units left out by ``only_misclassified`` (correctly classified, or no label).
        lost: Units whose worker died; not recorded, a rerun does them.
        runtime_s: Wall-clock time of the run.
    """

    out_dir: Path
    total: int = 0
    explained: int = 0
    skipped: int = 0
    failed: int = 0
    not_selected: int = 0
    lost: int = 0
    runtime_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every unit ended without error."""
        return self.failed == 0 and self.lost == 0

    @property
    def exit_code(self) -> int:
        """0 when every unit is fine, 1 when some failed (the CLI's exit code)."""
        return 0 if self.ok else 1

    def __str__(self) -> str:
        parts = [f"{self.explained} explained", f"{self.skipped} already done"]
        if self.not_selected:
            parts.append(f"{self.not_selected} not misclassified (left out)")
        parts.append(f"{self.failed} failed")
        if self.lost:
            parts.append(f"{self.lost} lost to dead workers (rerun to do them)")
        return f"{self.total} explanations: " + ", ".join(parts) + f" in {self.runtime_s:.1f} s"


# --------------------------------------------------------------------------------------------
# Inputs


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def find_inputs(source: str | os.PathLike[str], *, labels: LabelMode = "auto") -> list[InputItem]:
    """The images of a folder (recursively), of a list file, or a single image file.

    A folder whose images all lie exactly one level down, in at least two sub-folders, is read as
    an ImageFolder tree: the sub-folder names are the true labels (class names or indices).
    ``labels="folders"`` forces that reading (one sub-folder suffices), ``"none"`` disables it.

    A list file has one path per line (relative paths are relative to the list's folder), blank
    lines and ``#`` comments are ignored, and a true label may follow the path after a tab.

    Args:
        source: Folder, list file (any non-image suffix) or image file.
        labels: ``"auto"``, ``"folders"`` or ``"none"`` (see above).

    Returns:
        The inputs in a stable order (sorted by name for folders, list order for lists).

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: No images found, or ``labels="folders"`` on a tree that is not one.
    """
    if labels not in ("auto", "folders", "none"):
        raise ValueError(f"unknown label mode {labels!r}; choose auto, folders or none")
    root = Path(source).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"input {str(source)!r} does not exist")
    root = root.resolve()
    if root.is_file():
        if _is_image_name(root):
            return [InputItem(root, _name(root.name))]
        return _read_list(root)
    if not root.is_dir():
        raise ValueError(f"input {display_name(str(source))!r} is not a file or folder")
    files = sorted(
        p
        for p in root.rglob("*")
        if _is_image_name(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    files = [p for p in files if p.is_file()]
    if not files:
        raise ValueError(
            f"no images in {str(source)!r} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    rels = [p.relative_to(root) for p in files]
    depth_two = all(len(r.parts) == 2 for r in rels)
    classes = {r.parts[0] for r in rels} if depth_two else set()
    if labels == "folders" and not depth_two:
        raise ValueError(
            f"{str(source)!r} is not an ImageFolder tree: every image must lie in a class folder "
            "directly below it"
        )
    folder_labels = labels == "folders" or (labels == "auto" and len(classes) >= 2)
    return [
        InputItem(p, _name(r.as_posix()), _name(r.parts[0]) if folder_labels else None)
        for p, r in zip(files, rels, strict=True)
    ]


def _name(text: str) -> str:
    """A file name as valid Unicode for the manifest: bytes that are not UTF-8 (surrogate escapes
    from the file system) become ``\\xNN``, so the manifest and the report stay strict UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


#: Largest list file read (bytes): a million paths fit many times over.
MAX_LIST_BYTES = 64 * 2**20


def _read_list(list_file: Path) -> list[InputItem]:
    items = []
    try:
        text = read_regular_file(list_file, limit=MAX_LIST_BYTES).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"the list {display_name(str(list_file))!r} is not UTF-8 text: {exc}"
        ) from None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, _, label = line.partition("\t")
        path = Path(entry.strip()).expanduser()
        if not path.is_absolute():
            path = list_file.parent / path
        path = Path(os.path.normpath(path))
        try:
            name = path.relative_to(list_file.parent).as_posix()
        except ValueError:
            name = path.as_posix().lstrip("/")
        items.append(InputItem(path, _name(name), label.strip() or None))
    if not items:
        raise ValueError(f"the list {str(list_file)!r} names no images")
    return items


# --------------------------------------------------------------------------------------------
# Manifest


def read_manifest(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All complete records of an output folder's manifest, in the order they were written.

    A last line without its newline (a run killed while appending) and lines that are not JSON
    objects are ignored.
    """
    path = Path(out_dir) / MANIFEST_NAME
    _refuse_symlink(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records = []
    for line in data.split(b"\n")[:-1]:  # the piece after the last newline is torn or empty
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "key" in record and "status" in record:
            records.append(record)
    return records


def _refuse_symlink(path: Path) -> None:
    """A manifest that is a symbolic link could make rdex read or append to any file: refuse it."""
    if path.is_symlink():
        raise ValueError(
            f"{display_name(str(path))} is a symbolic link; rdex reads and appends only to a "
            "manifest that is a regular file in the output folder"
        )


def latest_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last record of every (image name, method), in the order of their first appearance."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        ident = (str(r.get("name")), str(r.get("method")))
        latest.pop(ident, None)
        latest[ident] = r
    order: dict[tuple[str, str], int] = {}
    for r in records:
        order.setdefault((str(r.get("name")), str(r.get("method"))), len(order))
    return sorted(latest.values(), key=lambda r: order[(str(r.get("name")), str(r.get("method")))])


def _repair_manifest(path: Path) -> None:
    """Cut a torn last line, so that the next append starts on a line of its own."""
    if not path.exists():
        return
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        keep = 0
        pos = size
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = pos + idx + 1
                break
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())


class _Manifest:
    """Append-only JSON Lines file: one ``os.write`` of a whole line, then ``fsync``."""

    def __init__(self, path: Path) -> None:
        _refuse_symlink(path)
        _repair_manifest(path)
        self.path = path
        # O_NOFOLLOW: a link put in place after the check above is refused too.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        self.fd = os.open(path, flags, 0o644)
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            raise ValueError(f"{display_name(str(path))} is not a regular file")

    def append(self, record: dict[str, Any]) -> None:
        line = (json_dumps(record, sort_keys=False) + "\n").encode("utf-8")
        view = memoryview(line)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder (one writer at a time)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(out / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(f"another rdex batch run is writing to {str(out)!r}") from None
        yield
    finally:
        os.close(fd)


def _remove_stale_temporaries(out: Path) -> None:
    """Delete temporary files a killed run left behind (never trusted, only clutter)."""
    for folder in (out, out / _INPUT_DIR, out / _EXPLANATION_DIR):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Verifier:
    """Checks that the files a record names are there with the recorded hashes (cached)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.cache: dict[str, str | None] = {}

    def file_ok(self, rel: str, sha: str) -> bool:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            return False  # a tampered record: rdex's files all lie inside the output folder
        if rel not in self.cache:
            path = self.out / rel
            try:
                self.cache[rel] = _sha256_file(path) if path.is_file() else None
            except OSError:
                self.cache[rel] = None
        return self.cache[rel] == sha

    def record_ok(self, record: dict[str, Any]) -> bool:
        files = record.get("files")
        if not isinstance(files, dict) or not files:
            return False
        return all(
            isinstance(f, dict) and self.file_ok(str(f.get("path")), str(f.get("sha256")))
            for f in files.values()
        )


# --------------------------------------------------------------------------------------------
# Keys and units


def unit_key(content_sha256: str, method: str, settings: Mapping[str, Any]) -> str:
    """The resume key of one image and method: SHA-256 of content hash, method and settings."""
    blob = json.dumps(
        {"sha256": content_sha256, "method": method, "settings": settings},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _safe_name(name: str) -> str:
    """Output file-name stem of an input name: ``/`` becomes ``__``; long names keep a readable
    prefix and end in a hash of the whole name (:func:`rdex.io.safe_stem`), so every output name
    stays far below the 255-byte limit of file systems."""
    stem = name.rsplit(".", 1)[0] if "." in Path(name).name else name
    return safe_stem(stem.replace("/", "__"))


@dataclass
class _Unit:
    """One image and method to explain (what a worker gets)."""

    name: str
    method: str
    key: str
    true_label: str | None
    data: bytes | None = None


@dataclass
class _Outcome:
    """What explaining a unit produced (what a worker returns)."""

    key: str
    status: Literal["ok", "error", "not_selected"]
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    image: Tensor | None = None
    result: RDEResult | None = None


@dataclass
class _Settings:
    """Everything a worker needs besides the model."""

    methods: tuple[str, ...]
    configs: dict[str, RDEConfig]
    obfuscation: str
    size: int
    fit: str
    target: str
    only_misclassified: bool
    batch_size: int
    model_name: str
    weights: str | None
    metrics: bool = False

    def for_key(self, method: str, true_label: str | None) -> dict[str, Any]:
        # Runs with metric values are distinct units, so asking for them later redoes the work.
        extra: dict[str, Any] = {"metrics": True} if self.metrics else {}
        return extra | {
            "model": self.model_name,
            "weights": self.weights,
            "config": dataclasses.asdict(self.configs[method]),
            "obfuscation": self.obfuscation,
            "size": self.size,
            "fit": self.fit,
            "target": self.target,
            "true_label": true_label,
        }


# --------------------------------------------------------------------------------------------
# The work: decode, classify, explain (runs in the driver or in a Ray worker)


def _decode(data: bytes, name: str, size: int, fit: str) -> Tensor:
    """Bytes of an image file to ``(3, size, size)`` in ``[0, 1]`` with :func:`rdex.images.load_image`.

    The bytes go through a private temporary file so that decoding is exactly that of
    ``rdex explain``; its name in error messages is replaced by the input's.
    """
    import tempfile

    from rdex.images import load_image

    with tempfile.TemporaryDirectory(prefix="rdex-batch-") as tmp:
        path = Path(tmp) / ("input" + Path(name).suffix.lower())
        path.write_bytes(data)
        try:
            return load_image(path, size=size, fit=fit)  # type: ignore[arg-type]
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(str(exc).replace(str(path), name)) from None


def _label_lookup(model: nn.Module, label: str | None, *, strict: bool = False) -> int | None:
    """Class index of a label (index, name, synonym or WordNet id) by :func:`rdex.models.resolve_label`.

    Unknown labels give ``None`` (a true label the model does not know), or a ``ValueError``
    when ``strict`` (a target the user asked for).
    """
    from rdex.models import resolve_label

    if label is None:
        return None
    try:
        return resolve_label(model, label)
    except (KeyError, ValueError, IndexError) as exc:
        if strict:
            raise ValueError(f"unknown target label {label!r}: {exc}") from None
        return None


def _model_labels(model: nn.Module) -> list[str] | None:
    labels = getattr(model, "labels", None)
    return list(labels) if labels is not None else None


class _Explainer:
    """Explains groups of units with one model (owned by the driver or by one Ray worker)."""

    def __init__(self, model: nn.Module, settings: _Settings, device: torch.device) -> None:
        self.model = model
        self.settings = settings
        self.device = device
        self.labels = _model_labels(model)
        self.fixed_target = (
            None
            if settings.target in ("pred", "true")
            else _label_lookup(model, settings.target, strict=True)
        )
        self._methods: dict[str, Any] = {}

    def _method(self, name: str) -> Any:
        if name not in self._methods:
            from rdex.methods import METHODS

            cls = METHODS[name]
            self._methods[name] = cls(
                self.model,
                config=self.settings.configs[name],
                obfuscation=self.settings.obfuscation,
            )
        return self._methods[name]

    def run(self, units: Sequence[_Unit]) -> list[_Outcome]:
        """Explain units of one method; bad images become error outcomes."""
        s = self.settings
        outcomes: dict[int, _Outcome] = {}
        images: dict[int, Tensor] = {}
        good: list[int] = []
        for i, unit in enumerate(units):
            if unit.data is None:
                outcomes[i] = _Outcome(unit.key, "error", "could not read the file")
                continue
            try:
                images[i] = _decode(unit.data, unit.name, s.size, s.fit)
                good.append(i)
            except Exception as exc:  # any decoder failure is a bad input, not a crashed run
                outcomes[i] = _Outcome(unit.key, "error", _reason(exc))
        for lo in range(0, len(good), s.batch_size):
            idx = good[lo : lo + s.batch_size]
            x = torch.stack([images[i] for i in idx]).to(self.device)
            try:
                for i, out in zip(idx, self._explain(x, [units[i] for i in idx]), strict=True):
                    outcomes[i] = out
            except Exception as exc:
                if isinstance(exc, torch.cuda.OutOfMemoryError):
                    torch.cuda.empty_cache()
                for i in idx:
                    outcomes[i] = _Outcome(
                        units[i].key, "error", f"explaining failed: {_reason(exc)}"
                    )
        return [outcomes[i] for i in range(len(units))]

    def _explain(self, x: Tensor, units: list[_Unit]) -> list[_Outcome]:
        s = self.settings
        method = self._method(units[0].method)
        with torch.no_grad():
            was_training = [(m, m.training) for m in self.model.modules()]
            self.model.eval()
            try:
                probs = torch.softmax(self.model(x).float(), dim=1)
            finally:
                for m, mode in was_training:
                    m.training = mode
        preds = probs.argmax(dim=1).tolist()
        true = [_label_lookup(self.model, u.true_label) for u in units]
        wrong = [t is not None and t != p for t, p in zip(true, preds, strict=True)]
        chosen = [i for i in range(len(units)) if wrong[i] or not s.only_misclassified]
        outcomes: list[_Outcome] = [_Outcome(u.key, "not_selected") for u in units]
        if not chosen:
            return outcomes
        targets: list[int] = []
        for i in chosen:
            if s.target == "pred":
                targets.append(preds[i])
            elif s.target == "true":
                known = true[i]
                targets.append(known if known is not None else preds[i])
            else:
                assert self.fixed_target is not None
                targets.append(self.fixed_target)
        xs = x[chosen]
        result = method.explain(xs, target=torch.tensor(targets, device=x.device))
        scores: list[dict[str, float] | None] = [None] * len(chosen)
        if s.metrics:
            from rdex.metrics import manifest_metrics

            # Scored where the model, the images and the masks are (CPU or GPU alike).
            scores = [
                manifest_metrics(self.model, xs, result, j, explainer=method, curves=False)
                for j in range(len(chosen))
            ]
        result = result.to("cpu")
        for j, i in enumerate(chosen):
            record = result_record(result, j, self.labels)
            known = true[i]
            record["true_label"] = known
            if known is not None and self.labels is not None and 0 <= known < len(self.labels):
                record["true_label_name"] = self.labels[known]
            record["misclassified"] = wrong[i] if known is not None else None
            record["probabilities"] = _rounded_probs(result.probs[j])
            if scores[j] is not None:
                record["metrics"] = scores[j]
            outcomes[i] = _Outcome(
                units[i].key, "ok", record=record, image=xs[j].detach().cpu(), result=result[j]
            )
        return outcomes


def _rounded_probs(probs: Tensor, limit: int = 20) -> dict[str, float]:
    """The largest probabilities, index -> value (at most ``limit``)."""
    top = probs.topk(min(limit, probs.numel()))
    return {str(int(i)): float(p) for p, i in zip(*top, strict=True)}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return display_name(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


# --------------------------------------------------------------------------------------------
# Writing outcomes (always in the driver)


def _png_writer(image: Tensor) -> Callable[[io.BytesIO], Any]:
    from PIL import Image

    arr = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    arr = arr[0] if arr.shape[0] == 1 else arr.permute(1, 2, 0)
    pil = Image.fromarray(arr.numpy())
    return lambda buf: pil.save(buf, format="PNG")


def _write_files(out: Path, unit: _Unit, sha: str, outcome: _Outcome) -> dict[str, dict[str, str]]:
    """Write the input, explanation and npz of an ok outcome atomically; their paths and hashes."""
    assert outcome.image is not None and outcome.result is not None
    safe = _safe_name(unit.name)
    rels = {
        "input": f"{_INPUT_DIR}/{safe}-{sha[:8]}.png",
        "explanation": f"{_EXPLANATION_DIR}/{safe}-{unit.method}-{unit.key[:8]}.png",
        "npz": f"{_EXPLANATION_DIR}/{safe}-{unit.method}-{unit.key[:8]}.npz",
    }
    atomic_write_with(out / rels["input"], _png_writer(outcome.image))
    atomic_write_with(out / rels["explanation"], _png_writer(outcome.result.explanation[0]))
    save_npz(outcome.result, out / rels["npz"], 0)
    return {k: {"path": rel, "sha256": _sha256_file(out / rel)} for k, rel in rels.items()}


_RECORD_FIELDS = (
    "target",
    "target_label",
    "target_prob",
    "prediction",
    "prediction_label",
    "prediction_prob",
    "true_label",
    "true_label_name",
    "misclassified",
    "probabilities",
    "top5",
    "final_distortion",
    "final_l1",
    "final_loss",
    "retained_fraction",
    "warnings",
    "runtime_s",
    "representation",
    "obfuscation",
    "metrics",
)


def _record(
    item: InputItem, unit: _Unit, sha: str | None, settings: _Settings, outcome: _Outcome
) -> dict[str, Any]:
    """The manifest line of a unit (error records carry ``None`` for what is unknown)."""
    base: dict[str, Any] = {
        "name": item.name,
        "path": _name(str(item.path)),
        "sha256": sha,
        "key": unit.key,
        "model": settings.model_name,
        "method": unit.method,
        "status": outcome.status,
        "error": outcome.error,
        "true_label_given": item.true_label,
    }
    for name in _RECORD_FIELDS:
        base[name] = outcome.record.get(name)
    if base["true_label_name"] is None:
        base["true_label_name"] = item.true_label
    base["settings"] = settings.for_key(unit.method, item.true_label)
    base["files"] = {}
    return base


# --------------------------------------------------------------------------------------------
# Running


def _resolve_configs(
    methods: Sequence[str], configs: Mapping[str, RDEConfig] | RDEConfig | None
) -> dict[str, RDEConfig]:
    from rdex.methods import METHODS

    resolved = {}
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        if isinstance(configs, RDEConfig):
            resolved[m] = configs
        elif configs is not None and m in configs:
            resolved[m] = configs[m]
        else:
            resolved[m] = preset("fast", lambda_k=getattr(METHODS[m], "default_lambda_k", None))
    return resolved


def _load_model(model: Any, weights: str | None) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, str):
        from rdex.models import load_classifier

        return load_classifier(model, weights=weights)
    if callable(model):
        built = model()
        if not isinstance(built, nn.Module):
            raise ValueError("the model factory must return a torch.nn.Module")
        return built
    raise ValueError(f"model must be a name, an nn.Module or a factory, got {type(model).__name__}")


def _model_name(model: Any, explicit: str | None) -> str:
    if explicit:
        return explicit
    if isinstance(model, str):
        return model
    name = getattr(model, "name", None)
    if isinstance(name, str) and name:
        return name
    return (
        type(model).__name__
        if isinstance(model, nn.Module)
        else getattr(model, "__name__", "model")
    )


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _read_bytes(path: Path) -> tuple[bytes | None, str | None]:
    """The bytes of an input, or why not: only regular files of at most ``MAX_INPUT_BYTES`` are
    read (a device never ends, a FIFO blocks); anything else becomes an error record."""
    try:
        return read_regular_file(path, limit=MAX_INPUT_BYTES), None
    except (OSError, ValueError) as exc:
        return None, _reason(exc)


def run_batch(
    inputs: str | os.PathLike[str] | Sequence[InputItem],
    out_dir: str | os.PathLike[str],
    *,
    model: str | nn.Module | Callable[[], nn.Module] = "efficientnet_lite0",
    weights: str | None = None,
    model_name: str | None = None,
    methods: Sequence[str] = ("cartoonx",),
    configs: Mapping[str, RDEConfig] | RDEConfig | None = None,
    obfuscation: str = "gaussian",
    size: int = 256,
    fit: str = "resize",
    target: str = "pred",
    labels: LabelMode = "auto",
    only_misclassified: bool = False,
    retry_errors: bool = False,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    ray: RayOptions | None = None,
    progress: bool = True,
    metrics: bool = False,
) -> BatchSummary:
    """Explain many images, resumably, on this machine or on Ray.

    Args:
        inputs: A folder, a list file, an image, or :class:`InputItem` objects (see
            :func:`find_inputs`).
        out_dir: Output folder; created if needed. Rerunning into it resumes.
        model: A model name for :func:`rdex.models.load_classifier`, a classifier taking images
            ``(B, 3, H, W)`` in ``[0, 1]``, or a factory returning one (called once per worker).
        weights: State-dict file for a named model.
        model_name: Name recorded in the manifest (default: the model name or ``model.name``).
        methods: RDE methods (``"cartoonx"``, ``"pixel-rde"``).
        configs: One :class:`~rdex.rde.RDEConfig` for all methods, or one per method; default
            the ``fast`` preset with each method's default ``lambda_k``.
        obfuscation: Obfuscation name (see :func:`rdex.obfuscations.make_obfuscation`).
        size: Side of the square the images are resized to.
        fit: ``"resize"`` or ``"crop"``.
        target: ``"pred"`` (the predicted label), ``"true"`` (the true label where known), or a
            label index or name explained for every image.
        labels: How folders give true labels: ``"auto"``, ``"folders"``, ``"none"``.
        only_misclassified: Explain only images whose prediction differs from their true label.
        retry_errors: Redo units recorded with status ``error`` (e.g. after fixing a file).
        batch_size: Images optimised together in one RDE loop.
        device: Device of a local run (default: the model's, or CUDA when available for a name).
        ray: Run on Ray with these options instead of locally.
        progress: Show a progress bar over the images with the estimated time left.
        metrics: Add the cheap metric values of :func:`rdex.metrics.manifest_metrics` (sparsity,
            smoothness, CP and hallucination scores) to every manifest line, under ``metrics``.

    Returns:
        A :class:`BatchSummary`; ``summary.exit_code`` is 1 when some units failed.

    Raises:
        ValueError: Bad options, no images, or another run holding the output folder.
        FileNotFoundError: ``inputs`` does not exist.
    """
    import time

    start = time.perf_counter()
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    from rdex.images import MAX_SIZE, MIN_SIDE

    if not MIN_SIDE <= size <= MAX_SIZE:
        raise ValueError(f"size must be between {MIN_SIDE} and {MAX_SIZE} pixels, got {size}")
    if fit not in ("resize", "crop"):
        raise ValueError(f"unknown fit {fit!r}; choose resize or crop")
    methods = tuple(dict.fromkeys(methods))
    if not methods:
        raise ValueError("no method given")
    resolved = _resolve_configs(methods, configs)
    items = (
        list(inputs)
        if isinstance(inputs, Sequence) and not isinstance(inputs, str)
        else find_inputs(inputs, labels=labels)
    )  # type: ignore[arg-type]
    if only_misclassified and not any(item.true_label is not None for item in items):
        raise ValueError(
            "--only-misclassified needs true labels: an ImageFolder tree (class folders) or a "
            "list file with labels"
        )
    if target == "true" and not any(item.true_label is not None for item in items):
        raise ValueError("target 'true' needs true labels (an ImageFolder tree or a labelled list)")
    settings = _Settings(
        methods=methods,
        configs=resolved,
        obfuscation=obfuscation,
        size=size,
        fit=fit,
        target=str(target),
        only_misclassified=only_misclassified,
        batch_size=batch_size,
        model_name=_model_name(model, model_name),
        weights=weights,
        metrics=metrics,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary(out_dir=out, total=len(items) * len(methods))
    with _locked(out):
        _remove_stale_temporaries(out)
        manifest = _Manifest(out / MANIFEST_NAME)
        try:
            _run_locked(
                out, items, manifest, settings, summary, model, device, ray, progress, retry_errors
            )
        finally:
            manifest.close()
    summary.runtime_s = time.perf_counter() - start
    return summary


@dataclass
class _Pending:
    """A unit to compute, the inputs that share its key (copies of one image), its content hash."""

    unit: _Unit
    items: list[InputItem]
    sha: str | None
    read_error: str | None = None


def _plan(
    out: Path,
    items: Sequence[InputItem],
    manifest: _Manifest,
    settings: _Settings,
    summary: BatchSummary,
    retry_errors: bool,
    progress: bool = False,
) -> list[_Pending]:
    """Units still to do; records already done are skipped (and copied for duplicate images)."""
    verifier = _Verifier(out)
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, dict[str, Any]] = {}
    recorded: dict[tuple[str, str], str] = {}
    for r in read_manifest(out):
        key = str(r["key"])
        if r["status"] == "ok":
            if key not in done and verifier.record_ok(r):
                done[key] = r
            failed.pop(key, None)
        elif r["status"] == "error":
            failed[key] = r
        recorded[(str(r.get("name")), str(r.get("method")))] = key
    hashes: list[tuple[str | None, str | None]] = []
    listing: Iterable[InputItem] = items
    if progress and len(items) > 200:
        from tqdm.auto import tqdm

        listing = tqdm(items, desc="hashing inputs", unit="img", leave=False)
    for item in listing:
        data, error = _read_bytes(item.path)
        hashes.append((hashlib.sha256(data).hexdigest() if data is not None else None, error))
    pending: dict[str, _Pending] = {}
    order: list[str] = []
    for method in settings.methods:
        for item, (sha, error) in zip(items, hashes, strict=True):
            content = sha if sha is not None else "unreadable:" + str(item.path)
            key = unit_key(content, method, settings.for_key(method, item.true_label))
            ident = (item.name, method)
            if key in done:
                summary.skipped += 1
                if recorded.get(ident) != key:
                    copy_record = dict(done[key], name=item.name, path=_name(str(item.path)))
                    manifest.append(copy_record)
                    recorded[ident] = key
                continue
            if key in failed and not retry_errors:
                summary.failed += 1
                if recorded.get(ident) != key:
                    manifest.append(dict(failed[key], name=item.name, path=_name(str(item.path))))
                    recorded[ident] = key
                continue
            if key in pending:
                pending[key].items.append(item)
                continue
            unit = _Unit(item.name, method, key, item.true_label)
            pending[key] = _Pending(unit, [item], sha, error)
            order.append(key)
    return [pending[k] for k in order]


def _groups(todo: list[_Pending], size: int) -> Iterator[list[_Pending]]:
    """Chunks of units of one method, at most ``size`` each."""
    for method_units in _by_method(todo):
        for lo in range(0, len(method_units), size):
            yield method_units[lo : lo + size]


def _by_method(todo: list[_Pending]) -> list[list[_Pending]]:
    groups: dict[str, list[_Pending]] = {}
    for p in todo:
        groups.setdefault(p.unit.method, []).append(p)
    return list(groups.values())


def _load_group(group: list[_Pending]) -> list[_Unit]:
    """The units of a group with their bytes read (just before they are sent off)."""
    units = []
    for p in group:
        data, error = _read_bytes(p.items[0].path) if p.read_error is None else (None, p.read_error)
        if data is not None and p.sha is not None and hashlib.sha256(data).hexdigest() != p.sha:
            data, error = None, "the file changed during the run"
        if error is not None:
            p.read_error = error
        units.append(dataclasses.replace(p.unit, data=data))
    return units


class _Writer:
    """Writes outcomes: files first, then one manifest line per input that shares the unit."""

    def __init__(
        self, out: Path, manifest: _Manifest, settings: _Settings, summary: BatchSummary, bar: Any
    ) -> None:
        self.out = out
        self.manifest = manifest
        self.settings = settings
        self.summary = summary
        self.bar = bar

    def write(self, group: list[_Pending], outcomes: list[_Outcome]) -> None:
        for p, outcome in zip(group, outcomes, strict=True):
            if p.read_error is not None and outcome.status != "ok":
                outcome = _Outcome(p.unit.key, "error", p.read_error)
            if outcome.status == "not_selected":
                self.summary.not_selected += len(p.items)
            else:
                files = (
                    _write_files(self.out, p.unit, str(p.sha), outcome)
                    if outcome.status == "ok"
                    else {}
                )
                for item in p.items:
                    record = _record(item, p.unit, p.sha, self.settings, outcome)
                    record["files"] = files
                    self.manifest.append(record)
                if outcome.status == "ok":
                    self.summary.explained += len(p.items)
                else:
                    self.summary.failed += len(p.items)
            if self.bar is not None:
                self.bar.update(len(p.items))
                self.bar.set_postfix(failed=self.summary.failed, refresh=False)

    def lost(self, group: list[_Pending], reason: str) -> None:
        n = sum(len(p.items) for p in group)
        self.summary.lost += n
        print(f"rdex batch: {n} images lost ({reason}); rerun to do them", file=sys.stderr)
        if self.bar is not None:
            self.bar.update(n)


def _run_locked(
    out: Path,
    items: Sequence[InputItem],
    manifest: _Manifest,
    settings: _Settings,
    summary: BatchSummary,
    model: Any,
    device: str | torch.device | None,
    ray_options: RayOptions | None,
    progress: bool,
    retry_errors: bool,
) -> None:
    todo = _plan(out, items, manifest, settings, summary, retry_errors, progress)
    n_todo = sum(len(p.items) for p in todo)
    bar = None
    if progress and n_todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_todo, desc="rdex batch", unit="img", dynamic_ncols=True)
    writer = _Writer(out, manifest, settings, summary, bar)
    try:
        if not todo:
            return
        if ray_options is None:
            _run_local(todo, writer, settings, model, device)
        else:
            _run_ray(todo, writer, settings, model, ray_options)
    finally:
        if bar is not None:
            bar.close()


def _run_local(
    todo: list[_Pending],
    writer: _Writer,
    settings: _Settings,
    model: Any,
    device: str | torch.device | None,
) -> None:
    net = _load_model(model, settings.weights)
    if device is None:
        dev = (
            _model_device(net)
            if isinstance(model, nn.Module)
            else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
    else:
        dev = torch.device(device)
    if _model_device(net) != dev:
        # Never move the caller's model: work on a copy when it lives elsewhere.
        net = (copy.deepcopy(net) if isinstance(model, nn.Module) else net).to(dev)
    explainer = _Explainer(net, settings, dev)
    for group in _groups(todo, settings.batch_size):
        units = _load_group(group)
        writer.write(group, explainer.run(units))


# --------------------------------------------------------------------------------------------
# Ray


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "running on Ray needs the 'dist' extra: pip install 'rdex[dist]' (or pip install 'ray[default]')"
        ) from None
    return ray


class _RayWorker:
    """A Ray actor: loads the model once, then explains the groups it is sent."""

    def __init__(self, model: Any, settings: _Settings) -> None:
        import ray

        from rdex.inference import keep_freed_memory

        keep_freed_memory()  # the worker process is rdex's own, as the rdex command's is
        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        gpus = ray.get_gpu_ids()
        device = torch.device("cuda") if gpus and torch.cuda.is_available() else torch.device("cpu")
        net = _load_model(model, settings.weights).to(device)
        self.explainer = _Explainer(net, settings, device)

    def run(self, units: list[_Unit]) -> list[_Outcome]:
        return self.explainer.run(units)


def _worker_count(ray: Any, options: RayOptions) -> int:
    if options.workers is not None:
        return options.workers
    resources = ray.cluster_resources()
    counts = []
    if options.cpus_per_task > 0:
        counts.append(int(resources.get("CPU", 1) // options.cpus_per_task))
    if options.gpus_per_task > 0:
        counts.append(int(resources.get("GPU", 0) // options.gpus_per_task))
        if counts[-1] == 0:
            raise ValueError(
                f"--gpus-per-task {options.gpus_per_task:g} but the Ray cluster has "
                f"{resources.get('GPU', 0):g} GPUs"
            )
    return max(1, min(counts))


def _run_ray(
    todo: list[_Pending],
    writer: _Writer,
    settings: _Settings,
    model: Any,
    options: RayOptions,
) -> None:
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        if options.address is not None:
            ray.init(address=options.address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=options.num_cpus,
                num_gpus=options.num_gpus,
                include_dashboard=False,
                log_to_driver=False,
            )
        started = True
    try:
        n_workers = _worker_count(ray, options)
        model_arg = ray.put(model) if isinstance(model, nn.Module) else model
        actor_cls = ray.remote(_RayWorker).options(
            num_cpus=options.cpus_per_task, num_gpus=options.gpus_per_task
        )
        actors = [actor_cls.remote(model_arg, settings) for _ in range(n_workers)]
        _drive(ray, actors, todo, writer, options.images_per_task)
        for actor in actors:
            ray.kill(actor)
    finally:
        if started:
            ray.shutdown()


def _ray_cause(exc: BaseException) -> str:
    """The root cause in a Ray error's text (its last ``SomeError: message`` line)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    causes = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    return causes[-1] if causes else _reason(exc)


def _drive(
    ray: Any, actors: list[Any], todo: list[_Pending], writer: _Writer, per_task: int
) -> None:
    """Keep two tasks per actor in flight; write each result as soon as it arrives."""
    from ray.exceptions import RayActorError, WorkerCrashedError

    groups = _groups(todo, per_task)
    load = {id(a): 0 for a in actors}
    alive = list(actors)
    in_flight: dict[Any, tuple[Any, list[_Pending]]] = {}
    exhausted = False
    succeeded = False
    cause: str | None = None
    while True:
        while not exhausted and alive:
            actor = min(alive, key=lambda a: load[id(a)])
            if load[id(actor)] >= 2:
                break
            group = next(groups, None)
            if group is None:
                exhausted = True
                break
            ref = actor.run.remote(_load_group(group))
            in_flight[ref] = (actor, group)
            load[id(actor)] += 1
        if not in_flight:
            if not exhausted and not alive:
                for group in groups:
                    writer.lost(group, "no Ray workers left")
            if not succeeded and cause is not None:
                # Not one task ran: a setup problem (model not loadable on the workers, ...).
                raise ValueError(f"the Ray workers could not start: {cause}")
            return
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            actor, group = in_flight.pop(ref)
            load[id(actor)] -= 1
            try:
                outcomes = ray.get(ref)
            except (RayActorError, WorkerCrashedError) as exc:
                if actor in alive:
                    alive.remove(actor)
                cause = _ray_cause(exc)
                writer.lost(group, f"worker died: {cause}")
                continue
            succeeded = True
            writer.write(group, outcomes)
