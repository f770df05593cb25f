"""A static HTML gallery of a batch run (:mod:`rdex.batch`): ``index.html`` in the output folder.

One card per image, built from the latest manifest record of every (image, method): the input as
the model saw it, the explanations of all methods side by side, the predicted label (red when it
differs from the true label, green when it matches), the true label, the top-5 probabilities, the
final distortion and the runtime; failed inputs show their error, and a record's ``warnings`` are
shown on its card. Runs with ``--seeds`` show how far the seeds' pictures agree (SSIM) under
each explanation, and the cards can be ordered by it, lowest first. The page is rendered with Jinja2 with autoescaping, so names, labels and titles
are always text, never markup or template code. Plain JavaScript filters show
only misclassified images, only errors, or one class (true or predicted). The page references the
pictures by relative paths and needs no server: open it from disk.
"""

from __future__ import annotations

import functools
import json
import math
import os
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from rdex.batch import latest_records, read_manifest
from rdex.io import atomic_write_text, display_name
from rdex.methods.registry import RegistryView

__all__ = [
    "METHOD_TITLES",
    "ImageCard",
    "collect_cards",
    "render_report",
    "seed_agreement",
    "seed_agreements",
    "write_report",
]

#: Display names of the methods (a live view of :mod:`rdex.methods.registry`).
METHOD_TITLES: RegistryView[str] = RegistryView(lambda info: info.title)

REPORT_NAME = "index.html"


@dataclass
class ImageCard:
    """What one card of the report shows: an image and its records, one per method.

    Attributes:
        name: Image name relative to the input root.
        records: The latest manifest record of each method, in the order methods first appear.
    """

    name: str
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok_records(self) -> list[dict[str, Any]]:
        """Records with status ``ok``."""
        return [r for r in self.records if r.get("status") == "ok"]

    @property
    def status(self) -> str:
        """``"error"`` when some method failed on the image, else ``"ok"``."""
        return "error" if any(r.get("status") != "ok" for r in self.records) else "ok"

    @property
    def misclassified(self) -> bool:
        """Whether the prediction differs from a known true label."""
        return any(r.get("misclassified") is True for r in self.ok_records)

    @property
    def predicted(self) -> str | None:
        """Name of the predicted class (``None`` when no method succeeded)."""
        for r in self.ok_records:
            return _label(r.get("prediction_label"), r.get("prediction"))
        return None

    @property
    def true_label(self) -> str | None:
        """Name of the true class, if known."""
        for r in self.records:
            if r.get("true_label_name") is not None:
                return str(r["true_label_name"])
        return None

    @property
    def classes(self) -> list[str]:
        """Classes the class filter matches this card on (true and predicted)."""
        return sorted({c for c in (self.true_label, self.predicted) if c is not None})


def _label(name: Any, index: Any) -> str | None:
    if name:
        return str(name)
    return None if index is None else f"class {index}"


def collect_cards(records: list[dict[str, Any]]) -> list[ImageCard]:
    """Group manifest records into cards (one per image, latest record per method)."""
    cards: dict[str, ImageCard] = {}
    for r in latest_records(records):
        name = str(r.get("name"))
        cards.setdefault(name, ImageCard(name)).records.append(r)
    return list(cards.values())


#: Numeric fields of a record the report formats; a record where one is not a number is skipped.
_NUMBERS = ("target_prob", "prediction_prob", "final_distortion", "runtime_s")


def _number(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )


def _record_problem(r: Any) -> str | None:
    """Why a manifest record cannot be shown (``None`` when it can): a tampered or foreign line."""
    if not isinstance(r, dict):
        return "not a JSON object"
    if not isinstance(r.get("name"), str) or not isinstance(r.get("method"), str):
        return "no image name or method"
    for key in _NUMBERS:
        if not _number(r.get(key)):
            return f"{key} is not a number"
    top5 = r.get("top5")
    if top5 is not None and not (
        isinstance(top5, list) and all(isinstance(e, dict) and _number(e.get("prob")) for e in top5)
    ):
        return "top5 is not a list of probabilities"
    files = r.get("files")
    if files is not None and not (
        isinstance(files, dict) and all(isinstance(f, dict) for f in files.values())
    ):
        return "files is not a mapping"
    warnings = r.get("warnings")
    if warnings is not None and not isinstance(warnings, list):
        return "warnings is not a list"
    seeds = r.get("seeds")
    if seeds is not None and not (
        isinstance(seeds, dict)
        and isinstance(seeds.get("seeds"), list)
        and all(_number(seeds.get(k)) and seeds.get(k) is not None for k in _SEED_NUMBERS)
    ):
        return "seeds is not a summary of seeds"
    return None


#: Numbers of a record's ``seeds`` summary (:mod:`rdex.seeds`) that the report shows.
_SEED_NUMBERS = ("ssim_min", "ssim_mean")


def seed_agreement(record: dict[str, Any]) -> float | None:
    """The lowest SSIM between two seeds' pictures of a record made with ``--seeds`` (``None``
    for a record of one seed)."""
    seeds = record.get("seeds")
    return float(seeds["ssim_min"]) if isinstance(seeds, dict) else None


def seed_agreements(records: Iterable[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    """``(seed_agreement(r), r)`` for every successful record made with ``--seeds``."""
    return [
        (value, r)
        for r in records
        if r.get("status") == "ok" and (value := seed_agreement(r)) is not None
    ]


def _clean(value: Any) -> Any:
    """Strings made printable and valid UTF-8 (:func:`rdex.io.display_name`), recursively."""
    if isinstance(value, str):
        return display_name(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _rel_url(out: Path, rel: Any) -> str | None:
    """URL of a file of the run relative to the report, or ``None``.

    Only regular files inside the output folder are shown: an absolute path, a ``..`` step or a
    link out of the folder (a tampered manifest) gives ``None``, as does a missing file.
    """
    if not isinstance(rel, str) or not rel:
        return None
    path = Path(rel)
    if path.is_absolute() or ".." in path.parts or "\\" in rel or ":" in path.parts[0]:
        return None
    target = out / path
    try:
        inside = target.resolve().is_relative_to(out.resolve())
    except (OSError, RuntimeError):
        return None
    if not inside or not target.is_file():
        return None
    return quote(rel.encode("utf-8", "surrogateescape"), safe="/")


def _file_url(out: Path, record: dict[str, Any], kind: str) -> str | None:
    entry = (record.get("files") or {}).get(kind)
    return _rel_url(out, entry.get("path")) if isinstance(entry, dict) else None


def _percent(p: Any) -> str:
    return "" if p is None else f"{100 * float(p):.1f}%"


def _card_view(out: Path, card: ImageCard) -> dict[str, Any]:
    """What the template needs to draw one card (plain values; the template escapes them)."""
    first = card.ok_records[0] if card.ok_records else None
    figures: list[dict[str, Any]] = []
    if first is not None:
        figures.append(
            {"src": _file_url(out, first, "input"), "alt": f"input {card.name}", "input": True}
        )
    errors: list[str] = []
    warnings: list[str] = []
    for r in card.records:
        title = METHOD_TITLES.get(str(r.get("method")), str(r.get("method")))
        for w in r.get("warnings") or []:
            warnings.append(f"{title}: {w}")
        if r.get("status") != "ok":
            errors.append(f"{title}: {r.get('error') or 'failed'}")
            continue
        figures.append(
            {
                "src": _file_url(out, r, "explanation"),
                "alt": f"{title} explanation of {card.name}",
                "input": False,
                "title": title,
                "target": str(_label(r.get("target_label"), r.get("target"))),
                "distortion": f"{float(r.get('final_distortion') or 0):.3g}",
                "runtime": f"{float(r.get('runtime_s') or 0):.1f}",
                "seeds": _seeds_caption(r),
            }
        )
    prediction = None
    if card.predicted is not None and first is not None:
        correct = any(r.get("misclassified") is False for r in card.ok_records)
        prediction = {
            "label": card.predicted,
            "prob": _percent(first.get("prediction_prob")),
            "cls": "wrong" if card.misclassified else ("right" if correct else ""),
        }
    probs = []
    if first is not None:
        for entry in first.get("top5") or []:
            p = float(entry.get("prob") or 0.0)
            probs.append(
                {
                    "width": f"{100 * p:.1f}",
                    "text": f"{_label(entry.get('label'), entry.get('index'))} {_percent(p)}",
                }
            )
    path = next((str(r.get("path")) for r in card.records if r.get("path")), card.name)
    agreement = [a for a, _ in seed_agreements(card.records)]
    return {
        "name": card.name,
        "path": path,
        "status": card.status,
        "misclassified": card.misclassified,
        "classes": json.dumps(card.classes),
        "figures": figures,
        "prediction": prediction,
        "true_label": card.true_label,
        "probs": probs,
        "errors": errors,
        "warnings": warnings,
        # The card's lowest seed agreement, for sorting ("" without seeds: sorted last).
        "seed_ssim": f"{min(agreement):.4f}" if agreement else "",
    }


def _seeds_caption(record: dict[str, Any]) -> str | None:
    """``seeds 0,1,2: SSIM 0.82–0.91`` (the lowest and highest SSIM between two seeds' pictures)
    for a record made with ``--seeds``, else ``None``."""
    seeds = record.get("seeds")
    if not isinstance(seeds, dict):
        return None
    low = float(seeds["ssim_min"])
    pairs = [p.get("ssim") for p in seeds.get("ssim_pairs") or [] if isinstance(p, dict)]
    high = max([float(v) for v in pairs if v is not None and _number(v)] + [low])
    span = f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}–{high:.2f}"
    names = seeds["seeds"]
    which = "seeds " + ",".join(map(str, names)) if len(names) <= 4 else f"{len(names)} seeds"
    return f"{which}: SSIM {span}"


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    # Autoescape on for everything: names, labels and titles are data, never markup.
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    source = resources.files("rdex").joinpath("data/report.html").read_text(encoding="utf-8")
    return env.from_string(source)


def render_report(
    out_dir: str | os.PathLike[str],
    *,
    title: str | None = None,
    log: Callable[[str], None] | None = None,
) -> str:
    """The HTML of the report of a batch output folder.

    Records that cannot be shown (a tampered or foreign manifest line: a field that should be a
    number is not, no name) are skipped; the page and ``log`` say how many.

    Args:
        out_dir: Output folder of :func:`rdex.batch.run_batch` (with ``manifest.jsonl``).
        title: Page title (default: the folder's name).
        log: Called with a one-line warning per skipped record.

    Raises:
        FileNotFoundError: The folder has no manifest.
        ValueError: The manifest is a symbolic link.
    """
    out = Path(out_dir)
    from rdex.batch import MANIFEST_NAME

    manifest = out / MANIFEST_NAME
    if not manifest.is_file() and not manifest.is_symlink():
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} in {display_name(str(out))!r}: is it the --out of `rdex batch`?"
        )
    records = []
    skipped = 0
    for r in read_manifest(out):
        problem = _record_problem(r)
        if problem is None:
            records.append(_clean(r))
            continue
        skipped += 1
        if log is not None:
            name = display_name(str(r.get("name"))) if isinstance(r, dict) else "?"
            log(f"skipped a manifest record ({name!r}): {problem}")
    cards = collect_cards(records)
    models = sorted({str(r.get("model")) for r in records if r.get("model")})
    methods = list(dict.fromkeys(str(r.get("method")) for r in records))
    n_mis = sum(c.misclassified for c in cards)
    n_err = sum(c.status == "error" for c in cards)
    summary = (
        f"{len(cards)} images · {n_mis} misclassified · {n_err} with errors · "
        f"methods: {', '.join(METHOD_TITLES.get(m, m) for m in methods) or 'none'} · "
        f"model: {', '.join(models) or 'unknown'}"
    )
    if skipped:
        summary += f" · {skipped} unreadable manifest records skipped"
    classes = sorted({c for card in cards for c in card.classes}, key=str.lower)
    page_title = display_name(title or f"rdex report: {out.resolve().name}")
    views = [_card_view(out, c) for c in cards]
    agreement = [a for a, _ in seed_agreements(r for c in cards for r in c.records)]
    if agreement:
        summary += (
            f" · seed agreement (lowest SSIM between two seeds): min {min(agreement):.2f}, "
            f"median {statistics.median(agreement):.2f}"
        )
    return _template().render(
        title=page_title,
        summary=summary,
        classes=classes,
        cards=views,
        seeded=bool(agreement),
    )


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    title: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write ``index.html`` into a batch output folder (atomically) and return its path."""
    out = Path(out_dir)
    page = render_report(out, title=title, log=log)
    return atomic_write_text(out / REPORT_NAME, page)
