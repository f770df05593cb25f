"""What every experiment shares: settings, a cache of RDE runs, results with claims, CSV output."""

from __future__ import annotations

import csv
import io
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rdex.rde import RDEConfig, RDEResult, preset

__all__ = [
    "Settings",
    "Context",
    "Claim",
    "ExperimentResult",
    "write_csv",
    "mean",
    "fmt",
    "markdown_table",
    "on_device",
]


@dataclass(frozen=True)
class Settings:
    """Settings shared by the experiments (recorded in every summary and in the report).

    Attributes:
        model: Classifier name for :func:`rdex.models.load_classifier`.
        size: Image side in pixels (the paper: 256; the committed report uses less, see docs/how-to/reproduce-paper.md).
        preset: Optimiser schedule from :data:`rdex.rde.PRESETS` (``"paper"`` is appendix A.2).
        steps: Override of the preset's number of steps (``None``: the preset's).
        samples: Override of the preset's noise samples ``L``.
        seed: Seed of the noise.
        images: Sample names or image files for the sample-set experiments.
        device: ``"cpu"``, ``"cuda"``, ...
        eval_samples: Obfuscation draws per point of the rate-distortion curves.
        eval_steps: Steps of the deletion and insertion curves.
    """

    model: str = "efficientnet_lite0"
    size: int = 128
    preset: str = "preview"
    steps: int | None = None
    samples: int | None = None
    seed: int = 0
    images: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket")
    device: str = "cpu"
    eval_samples: int = 8
    eval_steps: int = 24

    def config(self, **overrides: Any) -> RDEConfig:
        """The RDE configuration of a run: the preset, the step/sample overrides, then ``overrides``."""
        cfg = preset(self.preset, steps=self.steps, samples=self.samples, seed=self.seed)
        return cfg.replace(**overrides)

    def describe(self) -> dict[str, Any]:
        cfg = self.config()
        return asdict(self) | {
            "effective_steps": cfg.steps,
            "effective_samples": cfg.samples,
            "lr": cfg.lr,
            "schedule": cfg.schedule,
            "lr_final": cfg.lr_final,
        }


@dataclass
class Claim:
    """A claim of the paper and whether the measurement supports it.

    Attributes:
        text: The claim, in the paper's words where possible.
        held: True/False, or ``None`` when the measurement cannot decide.
        evidence: The numbers behind the verdict.
    """

    text: str
    held: bool | None
    evidence: str


@dataclass
class ExperimentResult:
    """What an experiment produced (also saved as ``summary.json`` in its folder).

    Attributes:
        name: Experiment name.
        title: Heading in the report.
        claims: The paper's claims and verdicts.
        tables: CSV files written, by short name (paths relative to the output root).
        figures: Figures written (paths relative to the output root).
        markdown: Tables and remarks in Markdown, for the report.
        settings: The settings used.
        seconds: Wall-clock time of the experiment.
    """

    name: str
    title: str
    claims: list[Claim] = field(default_factory=list)
    tables: dict[str, str] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    markdown: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ExperimentResult:
        data = json.loads(text)
        data["claims"] = [Claim(**c) for c in data.get("claims", [])]
        return cls(**data)


class Context:
    """Model, images and a cache of RDE runs shared by the experiments of one command.

    Runs are cached per (method, settings, image): asking for the same explanation twice (the
    sensitivity and smoothness experiments share their default runs) costs one optimisation.
    Batched runs give the masks of per-image runs (see :mod:`rdex.rde`), so images of one batch
    are cached one by one.

    Args:
        settings: The shared settings.
        out: Output root (``experiments/`` by default).
        model: A model to use instead of loading ``settings.model`` (tests pass a tiny one).
        progress: Show progress bars.
    """

    def __init__(
        self,
        settings: Settings,
        out: str | Path,
        *,
        model: nn.Module | None = None,
        progress: bool = False,
    ) -> None:
        self.settings = settings
        self.out = Path(out)
        self.device = torch.device(settings.device)
        self.progress = progress
        if model is None:
            from rdex.models import load_classifier

            model = load_classifier(settings.model)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._images: dict[str, Tensor] = {}
        self._cache: dict[tuple[Any, ...], tuple[Any, RDEResult]] = {}

    def with_settings(self, **changes: Any) -> Context:
        """A context with some settings changed, sharing the model (images and runs are not shared)."""
        import dataclasses

        if not changes:
            return self
        return Context(
            dataclasses.replace(self.settings, **changes),
            self.out,
            model=self.model,
            progress=self.progress,
        )

    # -- inputs ---------------------------------------------------------------------------------
    def image(self, name: str) -> Tensor:
        """Image ``(3, S, S)`` for a sample name or file, at the settings' size, on the device."""
        if name not in self._images:
            from rdex.images import resolve_image

            _, x = resolve_image(name, size=self.settings.size)
            self._images[name] = x.to(self.device)
        return self._images[name]

    def batch(self, names: Sequence[str]) -> Tensor:
        return torch.stack([self.image(n) for n in names])

    def label(self, index: int) -> str:
        name = getattr(self.model, "label_name", None)
        return str(name(index)) if callable(name) else f"class {index}"

    @torch.no_grad()
    def probs(self, x: Tensor) -> Tensor:
        return torch.softmax(self.model(x).float(), dim=1)

    # -- RDE runs -------------------------------------------------------------------------------
    def explainer(self, method: str, *, obfuscation: str = "gaussian", **overrides: Any) -> Any:
        """An RDE method (``cartoonx``/``pixel-rde``) with the settings' schedule and overrides."""
        from rdex.methods import METHODS

        cls: Any = METHODS[method]
        overrides.setdefault("lambda_k", cls.default_lambda_k)
        config = self.settings.config(**overrides)
        return cls(self.model, config=config, obfuscation=obfuscation, distortion=config.distortion)

    def cached(
        self, method: str, names: Sequence[str], *, obfuscation: str = "gaussian", **overrides: Any
    ) -> tuple[Any, RDEResult, Tensor] | None:
        """Like :meth:`explain` when every image's run is cached, else ``None`` (nothing runs)."""
        explainer = self.explainer(method, obfuscation=obfuscation, **overrides)
        key = (method, obfuscation, repr(explainer.config), None)
        if any((key, n) not in self._cache for n in names):
            return None
        return self.explain(method, names, obfuscation=obfuscation, **overrides)

    def explain(
        self,
        method: str,
        names: Sequence[str],
        *,
        obfuscation: str = "gaussian",
        reference_output: Tensor | None = None,
        reference_key: str | None = None,
        **overrides: Any,
    ) -> tuple[Any, RDEResult, Tensor]:
        """Explain images by name (cached); returns the explainer, the result and the images."""
        explainer = self.explainer(method, obfuscation=obfuscation, **overrides)
        key = (method, obfuscation, repr(explainer.config), reference_key)
        missing = [n for n in dict.fromkeys(names) if (key, n) not in self._cache]
        if reference_output is not None and reference_key is None:
            raise ValueError("give a reference_key with a reference_output (cache key)")
        if missing:
            x = self.batch(missing)
            desc = f"{method} λk={explainer.config.lambda_k:g} {obfuscation} {explainer.config.distortion}"
            result = explainer.explain(
                x, reference_output=reference_output, progress=self.progress, desc=desc
            )
            result = result.to("cpu")
            for i, n in enumerate(missing):
                one = result[i]
                one.runtime_s = result.runtime_s / len(missing)
                one.extra = dict(one.extra, batch_images=len(missing))
                self._cache[(key, n)] = (explainer, one)
        parts = [self._cache[(key, n)][1] for n in names]
        return explainer, _concat(parts), self.batch(names).cpu()


def _concat(parts: Sequence[RDEResult]) -> RDEResult:
    """One result from single-image results of the same run settings."""
    import dataclasses

    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return dataclasses.replace(
        first,
        mask=[torch.cat([p.mask[b] for p in parts]) for b in range(len(first.mask))],
        explanation=torch.cat([p.explanation for p in parts]),
        explanation_rgb=torch.cat([p.explanation_rgb for p in parts]),
        target=torch.cat([p.target for p in parts]),
        probs=torch.cat([p.probs for p in parts]),
        history={
            k: (v if v.dim() == 1 else torch.cat([p.history[k] for p in parts], dim=1))
            for k, v in first.history.items()
        },
        runtime_s=sum(p.runtime_s for p in parts),
    )


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write rows (dicts; the union of keys in first-seen order) as CSV, atomically."""
    from rdex.io import atomic_write_text

    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in keys})
    return atomic_write_text(path, buf.getvalue())


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def mean(values: Sequence[float]) -> float:
    vals = [float(v) for v in values]
    return sum(vals) / len(vals) if vals else float("nan")


def fmt(value: float, digits: int = 3) -> str:
    """A number for a Markdown table."""
    if value != value:  # NaN
        return "n/a"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 10 ** (-digits)):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as a Markdown table; floats formatted with :func:`fmt`."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        cells = [fmt(v) if isinstance(v, float) else str(v) for v in (row.get(c, "") for c in cols)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine() -> str:
    """One line about the machine the numbers were measured on."""
    import os

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores visible, "
        f"torch {torch.__version__} (threads: {torch.get_num_threads()}), "
        f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}"
    )


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def on_device(ex: Any, device: torch.device | str) -> Any:
    """A copy of a :class:`rdex.metrics.Explanation` with its tensors on ``device``."""
    import dataclasses

    def move(t: object) -> object:
        if isinstance(t, Tensor):
            return t.to(device)
        if isinstance(t, list):
            return [move(b) for b in t]
        return t

    return dataclasses.replace(
        ex,
        **{f.name: move(getattr(ex, f.name)) for f in dataclasses.fields(ex) if f.name != "method"},
    )
