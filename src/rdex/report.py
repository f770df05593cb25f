"""A static HTML gallery of a batch run (:mod:`rdex.batch`): ``index.html`` in the output folder.

One card per image, built from the latest manifest record of every (image, method): the input as
the model saw it, the explanations of all methods side by side, the predicted label (red when it
differs from the true label, green when it matches), the true label, the top-5 probabilities, the
final distortion and the runtime; failed inputs show their error. Plain JavaScript filters show
only misclassified images, only errors, or one class (true or predicted). The page references the
pictures by relative paths and needs no server: open it from disk.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rdex.batch import latest_records, read_manifest
from rdex.io import atomic_write_text

__all__ = ["METHOD_TITLES", "ImageCard", "collect_cards", "render_report", "write_report"]

#: Display names of the methods.
METHOD_TITLES = {
    "cartoonx": "CartoonX",
    "pixel-rde": "Pixel RDE",
    "shearletx": "ShearletX",
    "waveletx": "WaveletX",
}

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


def _rel_url(out: Path, rel: str | None) -> str | None:
    """URL of a file relative to the report, or ``None`` if it is missing."""
    if not rel or not (out / rel).is_file():
        return None
    return quote(rel, safe="/")


def _figure(src: str | None, alt: str, caption: str) -> str:
    picture = (
        f'<img src="{html.escape(src)}" alt="{html.escape(alt)}" loading="lazy">'
        if src
        else '<div class="missing">file missing</div>'
    )
    return f"<figure>{picture}<figcaption>{caption}</figcaption></figure>"


def _percent(p: Any) -> str:
    return "" if p is None else f"{100 * float(p):.1f}%"


def _card_html(out: Path, card: ImageCard) -> str:
    esc = html.escape
    figures: list[str] = []
    first = card.ok_records[0] if card.ok_records else None
    if first is not None:
        src = _rel_url(out, (first.get("files") or {}).get("input", {}).get("path"))
        figures.append(_figure(src, f"input {card.name}", "input"))
    errors = []
    for r in card.records:
        title = METHOD_TITLES.get(str(r.get("method")), str(r.get("method")))
        if r.get("status") != "ok":
            errors.append(f"{esc(title)}: {esc(str(r.get('error') or 'failed'))}")
            continue
        src = _rel_url(out, (r.get("files") or {}).get("explanation", {}).get("path"))
        target = _label(r.get("target_label"), r.get("target"))
        caption = (
            f"<b>{esc(title)}</b> for {esc(str(target))}<br>"
            f"distortion {float(r.get('final_distortion') or 0):.3g} · "
            f"{float(r.get('runtime_s') or 0):.1f} s"
        )
        figures.append(_figure(src, f"{title} explanation of {card.name}", caption))

    labels = []
    if card.predicted is not None and first is not None:
        correct = any(r.get("misclassified") is False for r in card.ok_records)
        cls = "wrong" if card.misclassified else ("right" if correct else "")
        labels.append(
            f'<span class="pred {cls}">predicted: {esc(card.predicted)} '
            f"({_percent(first.get('prediction_prob'))})</span>"
        )
    if card.true_label is not None:
        labels.append(f'<span class="true">true: {esc(card.true_label)}</span>')

    probs = ""
    if first is not None and first.get("top5"):
        items = []
        for entry in first["top5"]:
            p = float(entry.get("prob") or 0.0)
            name = _label(entry.get("label"), entry.get("index"))
            items.append(
                f'<li><span class="bar" style="width:{100 * p:.1f}%"></span>'
                f'<span class="text">{esc(str(name))} {_percent(p)}</span></li>'
            )
        probs = '<ol class="probs">' + "".join(items) + "</ol>"

    path = next((str(r.get("path")) for r in card.records if r.get("path")), card.name)
    attrs = (
        f'class="card{" misclassified" if card.misclassified else ""}" '
        f'data-name="{esc(card.name)}" '
        f'data-status="{card.status}" '
        f'data-misclassified="{1 if card.misclassified else 0}" '
        f'data-classes="{esc(json.dumps(card.classes))}"'
    )
    error_html = "".join(f'<p class="error">{e}</p>' for e in errors)
    return (
        f"<article {attrs}>\n"
        f'  <h2 title="{esc(path)}">{esc(card.name)}</h2>\n'
        f'  <div class="pictures">{"".join(figures)}</div>\n'
        f'  <p class="labels">{" · ".join(labels)}</p>\n'
        f"  {probs}{error_html}\n"
        f"</article>"
    )


def render_report(out_dir: str | os.PathLike[str], *, title: str | None = None) -> str:
    """The HTML of the report of a batch output folder.

    Args:
        out_dir: Output folder of :func:`rdex.batch.run_batch` (with ``manifest.jsonl``).
        title: Page title (default: the folder's name).

    Raises:
        FileNotFoundError: The folder has no manifest.
    """
    out = Path(out_dir)
    from rdex.batch import MANIFEST_NAME

    if not (out / MANIFEST_NAME).is_file():
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} in {str(out)!r}: is it the --out of `rdex batch`?"
        )
    records = read_manifest(out)
    cards = collect_cards(records)
    esc = html.escape
    models = sorted({str(r.get("model")) for r in records if r.get("model")})
    methods = list(dict.fromkeys(str(r.get("method")) for r in records))
    n_mis = sum(c.misclassified for c in cards)
    n_err = sum(c.status == "error" for c in cards)
    summary = (
        f"{len(cards)} images · {n_mis} misclassified · {n_err} with errors · "
        f"methods: {', '.join(METHOD_TITLES.get(m, m) for m in methods) or 'none'} · "
        f"model: {', '.join(models) or 'unknown'}"
    )
    classes = sorted({c for card in cards for c in card.classes}, key=str.lower)
    options = "".join(f'<option value="{esc(c)}">{esc(c)}</option>' for c in classes)
    body = "\n".join(_card_html(out, c) for c in cards) or '<p class="empty">No images yet.</p>'
    template = resources.files("rdex").joinpath("data/report.html").read_text(encoding="utf-8")
    page_title = title or f"rdex report: {out.resolve().name}"
    return (
        template.replace("{{TITLE}}", esc(page_title))
        .replace("{{SUMMARY}}", esc(summary))
        .replace("{{CLASS_OPTIONS}}", options)
        .replace("{{CARDS}}", body)
    )


def write_report(out_dir: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Write ``index.html`` into a batch output folder (atomically) and return its path."""
    out = Path(out_dir)
    page = render_report(out, title=title)
    return atomic_write_text(out / REPORT_NAME, page)
