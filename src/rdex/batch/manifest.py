"""The output folder's manifest (an append-only JSON Lines file), its lock, and the check that
the files a record names are still there (resume trusts nothing else)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rdex.io import display_name, json_dumps

#: Name of the manifest in an output folder.
MANIFEST_NAME = "manifest.jsonl"
_LOCK_NAME = ".rdex-batch.lock"
_INPUT_DIR = "inputs"
_EXPLANATION_DIR = "explanations"


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
