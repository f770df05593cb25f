"""Writing outcomes (always in the driver): the files first, atomically, then the manifest lines."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rdex.batch.inputs import InputItem, _name
from rdex.batch.manifest import _EXPLANATION_DIR, _INPUT_DIR, _Manifest, _sha256_file
from rdex.batch.plan import BatchSummary, _Pending
from rdex.batch.worker import _Outcome, _Settings, _Unit
from rdex.io import atomic_write_with, safe_stem, save_npz


def _safe_name(name: str) -> str:
    """Output file-name stem of an input name: ``/`` becomes ``__``; long names keep a readable
    prefix and end in a hash of the whole name (:func:`rdex.io.safe_stem`), so every output name
    stays far below the 255-byte limit of file systems."""
    stem = name.rsplit(".", 1)[0] if "." in Path(name).name else name
    return safe_stem(stem.replace("/", "__"))


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
    "objective",
    "empty_objective",
    "warnings",
    "runtime_s",
    "representation",
    "obfuscation",
    "metrics",
    "seeds",
    "environment",
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
