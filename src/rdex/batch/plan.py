"""Planning a run: the resume key of a unit, what is done already, what is left and in which
groups it is sent to be explained."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdex.batch.inputs import InputItem, _name, _read_bytes
from rdex.batch.manifest import _Manifest, _Verifier, read_manifest
from rdex.batch.worker import _Settings, _Unit


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


def unit_key(content_sha256: str, method: str, settings: Mapping[str, Any]) -> str:
    """The resume key of one image and method: SHA-256 of content hash, method and settings."""
    blob = json.dumps(
        {"sha256": content_sha256, "method": method, "settings": settings},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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
