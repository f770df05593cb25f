"""Repeatability of CartoonX schedules (``rdex bench --mode repeat``): several seeds of a schedule
on several images, scored against committed paper-schedule explanations.

A run is kept as a :class:`RunRecord`: its final mask (and a few snapshots along the way) in a
compressed ``.npz`` and its settings in a ``.json`` beside it, so that the paper-schedule runs a
study rests on (about 20 CPU minutes each at 128 px) can be committed and every new schedule scored
against them on a fresh clone. Nothing is unpickled: the arrays load with ``allow_pickle=False``.

The score of a schedule on an image (:func:`score_repeatability`), all with one
:class:`~rdex.bench.quality.ObjectiveEvaluator` per image (fixed noise):

* ``seed_ssim_min``: the lowest SSIM between the CartoonX pictures of any two of its seeds;
* ``objective_ratio_max``: its worst final objective over the best any run (any schedule, the
  paper's included) found on that image;
* ``rd_soft_ratio_max``: its worst rate-distortion area over the paper schedule's seed 0, beside
  the paper schedule's own two-seed spread (``rd_soft_floor``), with the top entries kept at their
  mask values (``soft``); ``rd_ratio_max`` and ``rd_floor`` are the same for the binary curve,
  which keeps them whole and so moves with entries a mask all but deleted (two seeds at SSIM
  0.994 can differ 2.5x in it). Faithfulness is judged on the soft curve;
* ``paper_ssim_min``: its lowest SSIM to the paper schedule's explanation (seed 0), judged only
  where the paper schedule converged (its objective within 2 % of the best found).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rdex.bench.quality import ObjectiveEvaluator, checkpoint_steps, run_schedule
from rdex.config import RDEConfig
from rdex.metrics.similarity import ssim
from rdex.results import environment

__all__ = [
    "REPEAT_IMAGES",
    "TARGETS",
    "RunRecord",
    "load_records",
    "run_record",
    "score_repeatability",
    "plot_repeatability",
    "plot_seed_curves",
    "repeat_table",
]

#: The bundled samples the study runs on (``sky`` is left out: its explanation is nearly empty).
REPEAT_IMAGES: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket")

#: Targets of a schedule at 128 px: two-seed SSIM, objective over the best found, SSIM to a
#: converged paper-schedule explanation, and when the paper schedule counts as converged.
TARGETS: dict[str, float] = {
    "seed_ssim": 0.97,
    "objective_ratio": 1.02,
    "paper_ssim": 0.95,
    "paper_converged": 1.02,
}

_FORMAT = "rdex-run-record/1"


@dataclass
class RunRecord:
    """One CartoonX run: settings, final mask and snapshots, per band.

    Attributes:
        name: Unique name, e.g. ``paper-chelsea-s0``.
        schedule: The schedule's name (``paper``, ``fast``, ...): records of one schedule and
            image with different seeds are compared with each other.
        image: Bundled sample name (or an image spec :func:`rdex.images.resolve_image` reads).
        size: Image side in pixels.
        seed: The run's seed.
        config: The :class:`~rdex.config.RDEConfig` fields.
        target: Explained class index.
        steps: Steps (1-based) of the snapshots in ``masks``; the last is the final mask.
        masks: Per snapshot, per band, the mask (float32 arrays).
        time_s: Wall-clock seconds of the optimisation at each snapshot.
        loss: The optimiser's own Monte-Carlo loss, every step.
        meta: Machine, versions, load, runtime.
    """

    name: str
    schedule: str
    image: str
    size: int
    seed: int
    config: dict[str, Any]
    target: int
    steps: list[int]
    masks: list[list[np.ndarray]]
    time_s: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> list[np.ndarray]:
        """The final mask, per band."""
        return self.masks[-1]

    @property
    def rdex_config(self) -> RDEConfig:
        """The run's settings as an :class:`~rdex.config.RDEConfig` (fields it lacks: defaults)."""
        fields = RDEConfig.__dataclass_fields__
        return RDEConfig(**{k: v for k, v in self.config.items() if k in fields})

    @property
    def evaluations(self) -> int:
        """Model evaluations of the run (:attr:`rdex.config.RDEConfig.evaluations`)."""
        return self.rdex_config.evaluations

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``NAME.npz`` (compressed masks) and ``NAME.json`` (everything else) to ``folder``."""
        from rdex.io import atomic_write_text, atomic_write_with, json_dumps

        folder = Path(folder)
        arrays: dict[str, Any] = {
            f"s{j}_b{k}": np.asarray(band, dtype=np.float32)
            for j, mask in enumerate(self.masks)
            for k, band in enumerate(mask)
        }
        atomic_write_with(folder / f"{self.name}.npz", lambda fh: np.savez_compressed(fh, **arrays))
        info = {
            "format": _FORMAT,
            "name": self.name,
            "schedule": self.schedule,
            "image": self.image,
            "size": self.size,
            "seed": self.seed,
            "config": self.config,
            "target": self.target,
            "steps": self.steps,
            "bands": len(self.masks[-1]),
            "time_s": [round(t, 3) for t in self.time_s],
            "loss": [round(v, 6) for v in self.loss],
            "meta": self.meta,
        }
        return atomic_write_text(folder / f"{self.name}.json", json_dumps(info, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunRecord:
        """Read a record written by :meth:`save` (``path``: its ``.json``; the ``.npz`` beside it).

        Raises:
            ValueError: Not a run record, or its arrays do not match its settings.
        """
        from rdex.io import read_regular_file

        path = Path(path)
        try:
            info = json.loads(read_regular_file(path, limit=64 * 2**20))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a run record ({exc})") from None
        if not isinstance(info, dict) or info.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a run record (format {_FORMAT!r})")
        npz = path.with_suffix(".npz")
        import io as _io

        try:
            with np.load(_io.BytesIO(read_regular_file(npz)), allow_pickle=False) as data:
                arrays = {k: np.asarray(data[k], dtype=np.float32) for k in data.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{npz}: not a readable mask archive ({exc})") from None
        steps = [int(s) for s in info["steps"]]
        bands = int(info["bands"])
        try:
            masks = [[arrays[f"s{j}_b{k}"] for k in range(bands)] for j in range(len(steps))]
        except KeyError as exc:
            raise ValueError(f"{npz}: missing mask {exc}") from None
        return cls(
            name=str(info["name"]),
            schedule=str(info["schedule"]),
            image=str(info["image"]),
            size=int(info["size"]),
            seed=int(info["seed"]),
            config=dict(info["config"]),
            target=int(info["target"]),
            steps=steps,
            masks=masks,
            time_s=[float(t) for t in info.get("time_s", [])],
            loss=[float(v) for v in info.get("loss", [])],
            meta=dict(info.get("meta", {})),
        )

    def as_run(self) -> dict[str, Any]:
        """The record in :func:`~rdex.bench.quality.run_schedule`'s form (the inverse of
        :meth:`from_run`, with the kept snapshots), for :func:`~rdex.bench.quality.score_runs`."""
        return {
            "config": self.config,
            "steps": self.steps,
            "time_s": self.time_s,
            "masks": [[torch.from_numpy(b) for b in mask] for mask in self.masks],
            "finished": bool(self.meta.get("finished", True)),
            "image": self.image,
            "size": self.size,
            **{k: self.meta.get(k) for k in ("loadavg_start", "loadavg_end", "threads")},
        }

    @classmethod
    def from_run(
        cls, run: dict[str, Any], *, name: str, schedule: str, image: str, size: int, keep: int = 8
    ) -> RunRecord:
        """A record from :func:`~rdex.bench.quality.run_schedule`'s output, keeping ``keep``
        snapshots (evenly thinned, the final one always)."""
        n = len(run["masks"])
        idx = sorted({round(i * (n - 1) / max(1, keep - 1)) for i in range(keep)} | {n - 1})
        config = dict(run["config"])
        return cls(
            name=name,
            schedule=schedule,
            image=image,
            size=size,
            seed=int(config["seed"]),
            config=config,
            target=int(run["target"]),
            steps=[int(run["steps"][i]) for i in idx],
            masks=[[m.detach().cpu().float().numpy() for m in run["masks"][i]] for i in idx],
            time_s=[float(run["time_s"][i]) for i in idx],
            loss=[float(v) for v in run["loss"]],
            meta={
                "runtime_s": float(run.get("runtime_s", float("nan"))),
                "threads": run.get("threads"),
                "loadavg_start": run.get("loadavg_start"),
                "loadavg_end": run.get("loadavg_end"),
                "finished": bool(run.get("finished", False)),
                **{k: run[k] for k in ("machine", "torch", "rdex") if k in run},
            },
        )


def load_records(folder: str | os.PathLike[str]) -> list[RunRecord]:
    """Every run record (``*.json`` with an ``.npz`` beside it) in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder of run records: {folder}")
    out = []
    for path in sorted(folder.glob("*.json")):
        if path.with_suffix(".npz").is_file():
            out.append(RunRecord.load(path))
    return out


def run_record(
    model: nn.Module,
    image: str,
    size: int,
    config: RDEConfig,
    *,
    schedule: str,
    name: str | None = None,
    device: torch.device | str = "cpu",
    keep: int = 8,
    init_mask: Sequence[Tensor] | None = None,
) -> RunRecord:
    """Run CartoonX with ``config`` on a bundled sample (or image file) and keep a record
    (``init_mask``: a warm start, as :meth:`rdex.rde.RDE.explain` takes it)."""
    from rdex.images import resolve_image

    _, picture = resolve_image(image, size=size)
    x = picture.unsqueeze(0).to(device)
    checkpoints = checkpoint_steps(config.steps, count=keep)
    run = run_schedule(model, x, config, checkpoints=checkpoints, init_mask=init_mask)
    env = environment(device)
    run.update(machine=env["machine"], torch=env["torch"], rdex=env["rdex"])
    return RunRecord.from_run(
        run,
        name=name or f"{schedule}-{image}-s{config.seed}",
        schedule=schedule,
        image=image,
        size=size,
        keep=keep,
    )


def _pairs(values: Sequence[Any]) -> Iterable[tuple[Any, Any]]:
    return itertools.combinations(values, 2)


def score_repeatability(
    records: Sequence[RunRecord],
    model: nn.Module,
    *,
    reference: str = "paper",
    eval_samples: int = 256,
    device: torch.device | str = "cpu",
    targets: dict[str, float] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score every schedule's seeds per image against each other and the reference schedule.

    Args:
        records: Runs of one or more schedules on one or more images (one size and lambda_k per
            image); records of ``reference`` (two seeds or more for a floor) are the yardstick.
        model: The classifier the runs explained.
        reference: Schedule name of the reference (the paper schedule).
        eval_samples: Noise draws of the common evaluator.
        targets: Thresholds (default :data:`TARGETS`).
        log: Progress printer.

    Returns:
        ``{"targets", "images": {image: {...}}, "schedules": {name: summary}}``, JSON-ready; each
        image holds per-run scores (``runs``), per-schedule aggregates and the reference's.
    """
    from rdex.images import resolve_image

    say = log or (lambda _msg: None)
    goal = {**TARGETS, **(targets or {})}
    by_image: dict[str, list[RunRecord]] = {}
    for r in records:
        by_image.setdefault(r.image, []).append(r)
    images: dict[str, Any] = {}
    for image, recs in sorted(by_image.items()):
        sizes = {r.size for r in recs}
        lambdas = {float(r.config["lambda_k"]) for r in recs}
        targets_ = {r.target for r in recs}
        if len(sizes) != 1 or len(lambdas) != 1 or len(targets_) != 1:
            raise ValueError(
                f"{image}: runs differ in size {sorted(sizes)}, lambda_k {sorted(lambdas)} or "
                f"target {sorted(targets_)}; score them separately"
            )
        _, picture = resolve_image(image, size=sizes.pop())
        x = picture.unsqueeze(0).to(device)
        evaluator = ObjectiveEvaluator(
            model, x, lambda_k=lambdas.pop(), target=targets_.pop(), samples=eval_samples
        )
        runs: dict[str, Any] = {}
        by_name = {r.name: r for r in recs}
        pictures: dict[str, np.ndarray] = {}
        for r in recs:
            mask = [torch.from_numpy(b) for b in r.final]
            pictures[r.name] = evaluator.picture(mask)
            runs[r.name] = {
                "schedule": r.schedule,
                "seed": r.seed,
                "evaluations": r.evaluations,
                "runtime_s": r.meta.get("runtime_s"),
                "objective": evaluator(mask),
                "rd_auc": evaluator.rate_distortion_auc(mask),
                "rd_soft_auc": evaluator.rate_distortion_auc(mask, soft=True),
                "mean_mask": float(np.mean(np.concatenate([b.ravel() for b in r.final]))),
            }
            say(f"{image} {r.name}: objective {runs[r.name]['objective']:.4f}")
        best = min(v["objective"] for v in runs.values())
        refs = sorted((n for n, v in runs.items() if v["schedule"] == reference),
                      key=lambda n: runs[n]["seed"])  # fmt: skip
        ref0: str | None = refs[0] if refs else None
        floors: dict[str, float | None] = {"rd": None, "rd_soft": None}
        converged = False
        for v in runs.values():
            v.update(
                objective_ratio=v["objective"] / best, rd_ratio=None, rd_soft_ratio=None,
                paper_ssim=None,
            )  # fmt: skip
        if ref0 is not None:
            for kind in floors:
                ref_rd = runs[ref0][f"{kind}_auc"]
                if len(refs) > 1 and ref_rd > 0:
                    floors[kind] = max(runs[n][f"{kind}_auc"] for n in refs) / ref_rd
                for v in runs.values():
                    v[f"{kind}_ratio"] = v[f"{kind}_auc"] / ref_rd if ref_rd > 0 else None
            converged = runs[ref0]["objective"] <= goal["paper_converged"] * best
            for name, v in runs.items():
                v["paper_ssim"] = ssim(pictures[name], pictures[ref0])
        schedules: dict[str, Any] = {}
        for sched in sorted({v["schedule"] for v in runs.values()}):
            names = sorted((n for n, v in runs.items() if v["schedule"] == sched), key=str)
            pair_ssim = [ssim(pictures[a], pictures[b]) for a, b in _pairs(names)]
            summary: dict[str, Any] = {
                "runs": names,
                "seeds": [runs[n]["seed"] for n in names],
                "evaluations": max(runs[n]["evaluations"] for n in names),
                "seed_ssim": pair_ssim,
                "seed_ssim_min": min(pair_ssim) if pair_ssim else None,
                "objective_ratio_max": max(runs[n]["objective_ratio"] for n in names),
                **{
                    f"{kind}_ratio_max": max((runs[n][f"{kind}_ratio"] or math.nan) for n in names)
                    if ref0
                    else None
                    for kind in floors
                },
                "paper_ssim_min": min(runs[n]["paper_ssim"] for n in names if n != ref0)
                if ref0 and any(n != ref0 for n in names)
                else None,
            }
            soft_floor = floors["rd_soft"]
            rd_limit = max(1.0, soft_floor) if soft_floor is not None else 1.0
            summary["meets"] = {
                "seed_ssim": None
                if summary["seed_ssim_min"] is None
                else summary["seed_ssim_min"] >= goal["seed_ssim"],
                "objective": summary["objective_ratio_max"] <= goal["objective_ratio"],
                "faithfulness": None
                if summary["rd_soft_ratio_max"] is None
                else summary["rd_soft_ratio_max"] <= rd_limit,
                "paper_ssim": None
                if not converged or summary["paper_ssim_min"] is None
                else summary["paper_ssim_min"] >= goal["paper_ssim"],
            }
            summary["curve"] = _seed_curve([by_name[n] for n in names], evaluator)
            schedules[sched] = summary
            say(
                f"{image} {sched}: seeds SSIM min {summary['seed_ssim_min']}, objective "
                f"x{summary['objective_ratio_max']:.3f}, rd soft x{summary['rd_soft_ratio_max']} "
                f"binary x{summary['rd_ratio_max']}, "
                f"to paper {summary['paper_ssim_min']}"
            )
        images[image] = {
            "best_objective": best,
            "reference": ref0,
            "reference_converged": converged,
            "rd_floor": floors["rd"],
            "rd_soft_floor": floors["rd_soft"],
            "runs": runs,
            "schedules": schedules,
        }
    overall: dict[str, Any] = {}
    for sched in sorted({s for img in images.values() for s in img["schedules"]}):
        per = [img["schedules"][sched] for img in images.values() if sched in img["schedules"]]

        def worst(key: str, fn: Callable[..., float], rows: list[dict[str, Any]] = per) -> Any:
            vals = [p[key] for p in rows if p[key] is not None and not math.isnan(p[key])]
            return fn(vals) if vals else None

        overall[sched] = {
            "images": sum(1 for img in images.values() if sched in img["schedules"]),
            "evaluations": max(p["evaluations"] for p in per),
            "seed_ssim_min": worst("seed_ssim_min", min),
            "objective_ratio_max": worst("objective_ratio_max", max),
            "rd_ratio_max": worst("rd_ratio_max", max),
            "rd_soft_ratio_max": worst("rd_soft_ratio_max", max),
            "paper_ssim_min": worst("paper_ssim_min", min),
            "meets": {
                k: all(p["meets"][k] for p in per if p["meets"][k] is not None)
                if any(p["meets"][k] is not None for p in per)
                else None
                for k in ("seed_ssim", "objective", "faithfulness", "paper_ssim")
            },
        }
    return {
        "targets": goal,
        "reference": reference,
        "eval_samples": eval_samples,
        "scored_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "images": images,
        "schedules": overall,
    }


def _seed_curve(recs: Sequence[RunRecord], evaluator: ObjectiveEvaluator) -> dict[str, list[float]]:
    """Mean SSIM between the pictures of any two seeds at every snapshot step they share, with
    the model evaluations spent by then: where along a run the seeds part ways."""
    curve: dict[str, list[float]] = {"steps": [], "evaluations": [], "seed_ssim": []}
    if len(recs) < 2:
        return curve
    common = sorted(set.intersection(*(set(r.steps) for r in recs)))
    config = recs[0].rdex_config
    for step in common:
        pics = [
            evaluator.picture([torch.from_numpy(b) for b in r.masks[r.steps.index(step)]])
            for r in recs
        ]
        values = [ssim(a, b) for a, b in _pairs(pics)]
        curve["steps"].append(step)
        curve["evaluations"].append(config.replace(steps=step).evaluations)
        curve["seed_ssim"].append(float(np.mean(values)))
    return curve


def plot_repeatability(
    records: Sequence[RunRecord],
    scores: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    schedules: Sequence[str] | None = None,
) -> None:
    """One row per image: the CartoonX picture of every seed of each schedule, with its objective
    ratio and SSIM to the reference in the title."""
    import matplotlib.pyplot as plt

    from rdex.bench.quality import cartoon_picture
    from rdex.images import resolve_image
    from rdex.io import atomic_write_with
    from rdex.representations import Wavelet

    images = sorted({r.image for r in records})
    order = list(
        schedules
        or sorted({r.schedule for r in records}, key=lambda s: (s != scores["reference"], s))
    )
    columns: list[tuple[str, int]] = sorted(
        {(r.schedule, r.seed) for r in records if r.schedule in order},
        key=lambda t: (order.index(t[0]), t[1]),
    )
    rep = Wavelet("db3", levels=5, mode="zero")  # CartoonX's, as the evaluator's
    fig, axes = plt.subplots(
        len(images), len(columns), figsize=(1.9 * len(columns), 2.1 * len(images)), squeeze=False
    )
    for row, image in enumerate(images):
        recs = {(r.schedule, r.seed): r for r in records if r.image == image}
        _, picture = resolve_image(image, size=next(iter(recs.values())).size)
        x = picture.unsqueeze(0)
        for col, key in enumerate(columns):
            ax = axes[row][col]
            ax.axis("off")
            r = recs.get(key)
            if r is None:
                continue
            pic = cartoon_picture(x, [torch.from_numpy(b) for b in r.final], rep)
            ax.imshow(pic, cmap="gray", vmin=0, vmax=1)
            run = scores["images"][image]["runs"][r.name]
            ax.set_title(
                f"{r.schedule} s{r.seed}\nobj x{run['objective_ratio']:.3f}"
                + (f" SSIM {run['paper_ssim']:.2f}" if run.get("paper_ssim") is not None else ""),
                fontsize=7,
            )
        axes[row][0].text(
            -0.1, 0.5, image, transform=axes[row][0].transAxes, rotation=90, va="center",
            ha="right", fontsize=9,
        )  # fmt: skip
    fig.tight_layout()
    atomic_write_with(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    plt.close(fig)


def plot_seed_curves(scores: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Mean two-seed SSIM against model evaluations spent, one panel per image, one line per
    schedule: where the seeds part ways, and where each schedule ends."""
    import matplotlib.pyplot as plt

    from rdex.io import atomic_write_with

    images = sorted(scores["images"])
    names = sorted({n for img in scores["images"].values() for n in img["schedules"]})
    colours = {n: f"C{i}" for i, n in enumerate(names)}  # one colour per schedule in every panel
    shown: set[str] = set()  # schedules with a curve in some panel: the legend's
    lowest = min(
        (v for img in scores["images"].values() for sched in img["schedules"].values()
         for v in sched["curve"]["seed_ssim"]),
        default=1.0,
    )  # fmt: skip
    bottom = min(0.5, math.floor(20 * lowest) / 20)  # every curve in view (preview on astronaut)
    fig, axes = plt.subplots(1, len(images), figsize=(3.4 * len(images), 3.2), squeeze=False)
    for ax, image in zip(axes[0], images, strict=True):
        for name, sched in scores["images"][image]["schedules"].items():
            c = sched["curve"]
            if c["evaluations"]:
                ax.plot(c["evaluations"], c["seed_ssim"], "-o", ms=3, color=colours[name])
                shown.add(name)
        ax.axhline(scores["targets"]["seed_ssim"], color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_ylim(bottom, 1.005)
        ax.set_title(image, fontsize=9)
        ax.set_xlabel("model evaluations spent")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean SSIM between seeds")
    from matplotlib.lines import Line2D

    labels = [n for n in names if n in shown]
    handles = [Line2D([], [], color=colours[n], marker="o", ms=3) for n in labels]
    axes[0][0].legend(handles, labels, fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_write_with(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    plt.close(fig)


def repeat_table(scores: dict[str, Any]) -> str:
    """A Markdown table of :func:`score_repeatability`'s scores: one row per image and schedule,
    then one per schedule over all images, each judged against the targets."""

    def f(value: float | None, digits: int = 3) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"

    def mark(ok: bool | None) -> str:
        return "" if ok is None else (" ✓" if ok else " ✗")

    goal = scores["targets"]
    lines = [
        f"| image | schedule | evaluations | seeds | two-seed SSIM min (≥ {goal['seed_ssim']}) "
        f"| objective / best found, max (≤ {goal['objective_ratio']}) "
        "| rate-distortion / paper, max: soft (paper's two-seed spread); binary "
        f"| SSIM to paper, min (≥ {goal['paper_ssim']} where it converged) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for image, data in scores["images"].items():
        spread, soft_spread = data["rd_floor"], data["rd_soft_floor"]
        converged = data["reference_converged"]
        for name, s in data["schedules"].items():
            ok = s["meets"]
            paper = f(s["paper_ssim_min"])
            if s["paper_ssim_min"] is not None and not converged:
                paper += " (paper not converged)"
            lines.append(
                f"| {image} | {name} | {s['evaluations']} | {len(s['seeds'])} "
                f"| {f(s['seed_ssim_min'])}{mark(ok['seed_ssim'])} "
                f"| {f(s['objective_ratio_max'])}{mark(ok['objective'])} "
                f"| {f(s['rd_soft_ratio_max'])}{mark(ok['faithfulness'])}"
                f"{'' if soft_spread is None else f' ({f(soft_spread)})'}"
                f"; {f(s['rd_ratio_max'])}{'' if spread is None else f' ({f(spread)})'} "
                f"| {paper}{mark(ok['paper_ssim'])} |"
            )
    for name, s in scores["schedules"].items():
        ok = s["meets"]
        lines.append(
            f"| **all {s['images']}** | **{name}** | {s['evaluations']} | "
            f"| {f(s['seed_ssim_min'])}{mark(ok['seed_ssim'])} "
            f"| {f(s['objective_ratio_max'])}{mark(ok['objective'])} "
            f"| {f(s['rd_soft_ratio_max'])}{mark(ok['faithfulness'])}; "
            f"{f(s['rd_ratio_max'])} "
            f"| {f(s['paper_ssim_min'])}{mark(ok['paper_ssim'])} |"
        )
    return "\n".join(lines) + "\n"
