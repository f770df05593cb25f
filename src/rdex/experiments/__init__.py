"""The paper's claims as experiments, and the report that collects them.

``run_experiment(name, ctx)`` runs one experiment (``artifacts``, ``sensitivity``, ``smoothness``,
``runtime``, ``multiscale``), writes its CSV tables and figures under ``ctx.out / name`` and a ``summary.json``;
:func:`write_report` renders ``REPORT.md`` from the summaries, with every claim marked as held or
not held by the measured numbers.

Example::

    from rdex.experiments import Context, Settings, run_all
    ctx = Context(Settings(size=128, preset="fast"), "experiments", progress=True)
    run_all(ctx)          # all experiments, then experiments/REPORT.md

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, section 5.2 and
    appendices A.3 and A.4.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rdex.experiments import artifacts, multiscale, runtime, sensitivity, smoothness
from rdex.experiments._core import Claim, Context, ExperimentResult, Settings, machine
from rdex.io import atomic_write_text

__all__ = [
    "EXPERIMENTS",
    "Claim",
    "Context",
    "ExperimentResult",
    "Settings",
    "run_experiment",
    "run_all",
    "load_summary",
    "write_report",
    "stated_settings",
    "context_for",
    "OWN_SETTINGS",
]

#: Experiment name -> function running it on a :class:`Context`.
EXPERIMENTS: dict[str, Callable[[Context], ExperimentResult]] = {
    artifacts.NAME: artifacts.run,
    sensitivity.NAME: sensitivity.run,
    smoothness.NAME: smoothness.run,
    runtime.NAME: runtime.run,
    multiscale.NAME: multiscale.run,
}

#: Settings an experiment always uses instead of the shared ones (stated in its report section).
OWN_SETTINGS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    multiscale.NAME: multiscale.own_settings,
}


def context_for(name: str, ctx: Context) -> Context:
    """The context experiment ``name`` runs in: ``ctx`` with the experiment's own settings."""
    own = OWN_SETTINGS.get(name)
    return ctx.with_settings(**own(ctx.settings)) if own else ctx


def run_experiment(name: str, ctx: Context) -> ExperimentResult:
    """Run one experiment, write its outputs and ``<out>/<name>/summary.json``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    ctx = context_for(name, ctx)
    start = time.perf_counter()
    result = EXPERIMENTS[name](ctx)
    result.seconds = time.perf_counter() - start
    result.settings = ctx.settings.describe()
    atomic_write_text(ctx.out / name / "summary.json", result.to_json())
    return result


def load_summary(out: str | Path, name: str) -> ExperimentResult | None:
    """The saved result of an experiment, or ``None`` if it has not run."""
    path = Path(out) / name / "summary.json"
    if not path.exists():
        return None
    return ExperimentResult.from_json(path.read_text())


def run_all(
    ctx: Context, names: Sequence[str] | None = None, *, reuse: bool = False
) -> list[ExperimentResult]:
    """Run experiments (all by default) and write ``REPORT.md``.

    Args:
        ctx: The shared context.
        names: Experiments to run.
        reuse: Keep experiments whose ``summary.json`` exists instead of running them again.
    """
    results = []
    for name in names or list(EXPERIMENTS):
        wanted = _jsonable(context_for(name, ctx).settings.describe())
        saved = load_summary(ctx.out, name) if reuse else None
        # A summary measured with other settings is not reused: the report states one setting.
        if saved is not None and saved.settings != wanted:
            saved = None
        results.append(saved if saved is not None else run_experiment(name, ctx))
    write_report(ctx.out)
    return results


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _differences(mine: dict[str, Any], shared: dict[str, Any]) -> str:
    """The settings in which ``mine`` differs from ``shared``, as ``key value`` pairs."""
    return ", ".join(f"{k} {mine[k]}" for k in mine if k in shared and mine[k] != shared[k])


def _verdict(held: bool | None) -> str:
    return {True: "**held**", False: "**did not hold**", None: "**undecided**"}[held]


def write_report(out: str | Path, *, command: str | None = None) -> Path:
    """Render ``<out>/REPORT.md`` from the experiments' saved summaries."""
    out = Path(out)
    results = [r for r in (load_summary(out, n) for n in EXPERIMENTS) if r is not None]
    if not results:
        raise FileNotFoundError(
            f"no experiment summaries under {out}; run `rdex experiment all` first"
        )
    settings = results[0].settings
    mixed = [r.name for r in results if r.settings != settings]
    lines = [
        "# rdex: the paper's claims, measured",
        "",
        "Generated by `rdex experiment report` (" + (command or "see the settings below") + "). "
        "Every number below was measured by the experiment code in `src/rdex/experiments/`; "
        "the tables are also saved as CSV next to the figures.",
        "",
        "## Settings",
        "",
        f"- model: `{settings.get('model')}`; images {settings.get('size')} x {settings.get('size')} px "
        "(the paper: 256 px)",
        f"- RDE schedule: preset `{settings.get('preset')}` = {settings.get('effective_steps')} steps, "
        f"L = {settings.get('effective_samples')} noise samples, Adam lr {settings.get('lr')} "
        f"({settings.get('schedule')}"
        + (f" down to {settings.get('lr_final')}" if settings.get("schedule") == "cosine" else "")
        + "); the paper's A.2 schedule is 2000 steps, L = 64, lr 0.001 (`--preset paper`)",
        f"- seed {settings.get('seed')}, device `{settings.get('device')}`; sample set: "
        + ", ".join(f"`{n}`" for n in settings.get("images", [])),
        f"- metrics: {settings.get('eval_samples')} obfuscation draws per rate-distortion point, "
        f"{settings.get('eval_steps')} deletion/insertion steps",
        f"- machine: {machine()}",
        "",
        *(
            [
                f"- **other settings**: {', '.join(mixed)} ran with settings that differ from these, stated in their sections "
                "(see their `summary.json`)",
            ]
            if mixed
            else []
        ),
        "",
        "Because of the short schedule and the small images, these runs test the claims at a cheaper "
        "operating point than the paper's; a claim that fails here may still hold at the paper's "
        "settings (rerun with `--preset paper --size 256`).",
        "",
        "Verdicts: **held** and **did not hold** when the measured difference is larger than the "
        "test's margin or noise floor (stated with each claim); **undecided** when it is not, so "
        "that the test cannot tell the two outcomes apart (the reason is given with the claim).",
        "",
        "## Claims at a glance",
        "",
        "| experiment | claim | verdict |",
        "|---|---|---|",
    ]
    for r in results:
        for c in r.claims:
            lines.append(f"| {r.name} | {c.text} | {_verdict(c.held)} |")
    for r in results:
        own = _differences(r.settings, settings)
        lines += [
            "",
            f"## {r.title}",
            "",
            f"Experiment `{r.name}`, {r.seconds:.0f} s"
            + (f"; its own settings: {own}" if own else "")
            + ".",
            "",
        ]
        for c in r.claims:
            lines.append(f"- {c.text} → {_verdict(c.held)}: {c.evidence}.")
        lines += ["", r.markdown.rstrip(), ""]
        for fig in r.figures:
            lines.append(f"![{r.name}]({fig})")
            lines.append("")
        if r.tables:
            lines.append("Tables: " + ", ".join(f"[{k}]({v})" for k, v in r.tables.items()))
    path = out / "REPORT.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


#: The schedule line of ``REPORT.md`` (written by :func:`write_report`, read by
#: :func:`stated_settings`).
_SCHEDULE_LINE = re.compile(
    r"^- RDE schedule: preset `(?P<preset>[^`]+)` = (?P<steps>\d+) steps, L = (?P<samples>\d+) "
    r"noise samples, Adam lr (?P<lr>[0-9.eE+-]+) \((?P<schedule>\w+)"
    r"(?: down to (?P<lr_final>[0-9.eE+-]+))?\)",
    re.MULTILINE,
)


def stated_settings(report: str) -> dict[str, Any]:
    """The RDE schedule a ``REPORT.md`` states: preset, steps, samples, lr, schedule, lr_final.

    Lets a test compare the committed report with :data:`rdex.rde.PRESETS` without running it.

    Raises:
        ValueError: The text has no schedule line.
    """
    m = _SCHEDULE_LINE.search(report)
    if m is None:
        raise ValueError("no '- RDE schedule: preset ...' line in the report")
    return {
        "preset": m["preset"],
        "steps": int(m["steps"]),
        "samples": int(m["samples"]),
        "lr": float(m["lr"]),
        "schedule": m["schedule"],
        "lr_final": None if m["lr_final"] is None else float(m["lr_final"]),
    }
