"""Time to quality of CartoonX schedules (``rdex bench --mode quality``): snapshots of the mask
along a run with their wall-clock times, scored afterwards by one common evaluator of the RDE
objective, plus SSIM and retained-set overlap against the paper-schedule explanation."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rdex.distortions import get_distortion
from rdex.methods import CartoonX
from rdex.metrics.similarity import ssim
from rdex.obfuscations import make_obfuscation, obfuscate
from rdex.rde import RDEConfig, frozen
from rdex.representations import Wavelet
from rdex.results import greyscale_picture

#: Rates (fractions of mask entries kept) of the benchmark's rate-distortion score.
RD_FRACTIONS = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)


class ObjectiveEvaluator:
    """One common scorer of the RDE objective for any CartoonX mask of one image.

    ``evaluator(mask)`` returns ``distortion + lambda_k * mean(s)``, the distortion averaged over
    a fixed set of ``samples`` obfuscations (drawn once from ``seed``), so two masks are compared
    on the same noise and the same mask always gets the same score.

    Args:
        model: Classifier on images in ``[0, 1]``.
        x: One image ``(1, C, H, W)``.
        lambda_k: Sparsity ``lambda * k``.
        target: Explained label (default: the prediction).
        samples: Noise samples (default 256).
        seed: Seed of the fixed noise.
        chunk: Obfuscations per forward pass.
        wavelet, levels, mode, obfuscation, distortion: The method (CartoonX's defaults).
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        *,
        lambda_k: float = 20.0,
        target: int | None = None,
        samples: int = 256,
        seed: int = 12345,
        chunk: int = 32,
        wavelet: str = "db3",
        levels: int = 5,
        mode: str = "zero",
        obfuscation: str = "gaussian",
        distortion: str = "label",
    ) -> None:
        if x.dim() != 4 or x.shape[0] != 1:
            raise ValueError(
                f"the evaluator scores masks of one image (1, C, H, W), got {tuple(x.shape)}"
            )
        if samples < 1 or chunk < 1:
            raise ValueError("samples and chunk must be at least 1")
        self.model = model
        self.x = x
        self.lambda_k = float(lambda_k)
        self.samples = samples
        self.seed = seed
        self.chunk = chunk
        self.representation = Wavelet(wavelet, levels=levels, mode=mode)
        self._distortion = get_distortion(distortion)
        obf = make_obfuscation(obfuscation)
        with frozen(model), torch.no_grad():
            self.reference = torch.softmax(model(x).float(), dim=1)
            self.target = int(self.reference.argmax(dim=1)) if target is None else int(target)
            self.bands = [b.detach() for b in self.representation.encode(x)]
            state = obf.prepare(x, self.bands, self.representation)
            generator = torch.Generator(device=x.device).manual_seed(seed)
            n = 1 if obf.deterministic else samples
            self.noise = [v[0] for v in obf.sample(state, n, [generator])]

    def _masks(self, mask: Sequence[Tensor]) -> list[Tensor]:
        if len(mask) != len(self.bands):
            raise ValueError(f"{len(mask)} mask bands for {len(self.bands)} wavelet bands")
        out = []
        for m, b in zip(mask, self.bands, strict=True):
            m = m.detach().to(device=b.device, dtype=b.dtype)
            want = (1, 1, *b.shape[2:])
            if m.numel() != math.prod(want):
                raise ValueError(f"mask band of shape {tuple(m.shape)} does not fit {want}")
            out.append(m.reshape(want))
        return out

    @torch.no_grad()
    def distortion(self, mask: Sequence[Tensor]) -> float:
        """Distortion of ``mask`` (per band, rdex's layout) averaged over the fixed noise."""
        masks = self._masks(mask)
        total = 0.0
        count = self.noise[0].shape[0]
        target = torch.tensor([self.target], device=self.x.device)
        with frozen(self.model):
            for lo in range(0, count, self.chunk):
                out = obfuscate(
                    self.representation,
                    self.bands,
                    shape=tuple(self.x.shape[1:]),
                    mask=masks,
                    noise=[v[None, lo : lo + self.chunk] for v in self.noise],
                    clip=(0.0, 1.0),
                    model=lambda y: torch.softmax(self.model(y).float(), dim=1),
                ).unsqueeze(0)
                total += float(self._distortion(self.reference, out, target).sum())
        return total / count

    def __call__(self, mask: Sequence[Tensor]) -> float:
        """The objective ``distortion + lambda_k * mean(s)`` of ``mask``."""
        masks = self._masks(mask)
        l1 = float(torch.cat([m.flatten() for m in masks]).mean())
        return self.distortion(masks) + self.lambda_k * l1

    def rate_distortion_auc(
        self, mask: Sequence[Tensor], *, samples: int = 64, soft: bool = False
    ) -> float:
        """Faithfulness of ``mask``: mean distortion when only its top entries are kept.

        The rate-distortion curve (:func:`rdex.metrics.rate_distortion_curve`: keep the highest
        ``fraction`` of the mask entries, obfuscate the rest) at :data:`RD_FRACTIONS`, the rates
        where CartoonX's explanations live (they retain about 1 % of the entries), averaged over
        the rates (trapezoid rule). Lower is more faithful. ``soft`` keeps the top entries at
        their mask values instead of 1 (see the curve's ``soft``): the measure to compare two
        masks of one objective by, since the binary curve moves with entries the mask all but
        deleted.
        """
        from rdex.metrics import rate_distortion_curve

        masks = self._masks(mask)
        curve = rate_distortion_curve(
            self.model,
            self.x,
            masks,
            representation=self.representation,
            target=self.target,
            fractions=RD_FRACTIONS,
            samples=samples,
            seed=self.seed,
            soft=soft,
        )
        return float(curve.area[0])

    def picture(self, mask: Sequence[Tensor]) -> np.ndarray:
        """The CartoonX picture of ``mask`` (see :func:`cartoon_picture`), ``(H, W)``."""
        return cartoon_picture(self.x, self._masks(mask), self.representation)


def cartoon_picture(x: Tensor, mask: Sequence[Tensor], representation: Wavelet) -> np.ndarray:
    """CartoonX's explanation image: the mask on the greyscale image's DWT, inverted and clipped.

    Args:
        x: One image ``(1, C, H, W)``.
        mask: Per band, rdex's layout.
        representation: The wavelet representation the mask lives in.

    Returns:
        ``(H, W)`` float array in ``[0, 1]``.
    """
    with torch.no_grad():
        pic = greyscale_picture(x, [m.to(x) for m in mask], representation, clip=(0.0, 1.0))
    return pic[0, 0].cpu().numpy()


def retained_overlap(a: Sequence[Tensor], b: Sequence[Tensor], threshold: float = 0.5) -> float:
    """Intersection over union of the retained mask entries (those above ``threshold``).

    Two masks that retain nothing overlap fully (1.0).
    """
    fa = torch.cat([m.flatten() for m in a]) > threshold
    fb = torch.cat([m.flatten() for m in b]) > threshold
    union = int((fa | fb).sum())
    return 1.0 if union == 0 else int((fa & fb).sum()) / union


def checkpoint_steps(steps: int, count: int = 24) -> list[int]:
    """Steps (0-based, ascending, the last one included) at which to snapshot a run of ``steps``.

    Roughly log-spaced early and linear late, so both fast and slow schedules get a curve.
    """
    if steps <= 0:
        return []
    grid = {steps - 1}
    for i in range(1, count + 1):
        grid.add(min(steps - 1, round(steps ** (i / count)) - 1))
        grid.add(min(steps - 1, round(steps * i / count) - 1))
    return sorted(s for s in grid if s >= 0)


def run_schedule(
    model: nn.Module,
    x: Tensor,
    config: RDEConfig,
    *,
    checkpoints: Sequence[int] | None = None,
    target: Tensor | int | None = None,
    save_path: str | os.PathLike[str] | None = None,
    save_every: int = 0,
    meta: dict[str, Any] | None = None,
    init_mask: Sequence[Tensor] | None = None,
) -> dict[str, Any]:
    """Run CartoonX with ``config`` and snapshot the mask at ``checkpoints`` with wall-clock times.

    The time of a snapshot is the optimiser's wall-clock time from the end of the first step to the
    end of that step, with the time spent copying snapshots (and saving partial results)
    subtracted (:func:`score_runs` adds back one mean step for the first).

    Args:
        model: Classifier on images in ``[0, 1]``.
        x: One image, ``(1, C, H, W)``.
        config: Hyperparameters of the run.
        checkpoints: 0-based steps to snapshot (default :func:`checkpoint_steps`).
        target: Explained label (default: the prediction).
        save_path: If given, the record is written there with ``torch.save`` at the end and every
            ``save_every`` steps (atomically), so a long run leaves a partial curve behind.
        save_every: Steps between partial saves (0: only at the end).
        meta: Extra fields stored in the record.
        init_mask: Warm start (per band), as :meth:`rdex.rde.RDE.explain` takes it.

    Returns:
        A record: ``steps`` (list), ``time_s`` (list), ``masks`` (per checkpoint, per band, CPU),
        ``loss`` (the optimiser's Monte-Carlo loss per step), ``config``, ``runtime_s``,
        ``loadavg`` (before and after), ``threads``, ``finished``.
    """
    from rdex.io import atomic_write_with

    points = set(checkpoint_steps(config.steps) if checkpoints is None else checkpoints)
    explainer = CartoonX(model, config=config)
    record: dict[str, Any] = {
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "steps": [],
        "time_s": [],
        "masks": [],
        "loadavg_start": list(os.getloadavg()),
        "threads": torch.get_num_threads(),
        "finished": False,
        **(meta or {}),
    }
    clock = {"start": time.perf_counter(), "overhead": 0.0}

    def save() -> None:
        if save_path is not None:
            atomic_write_with(save_path, lambda fh: torch.save(record, fh))

    def on_step(step: int, masks: list[Tensor]) -> None:
        if step == 0:
            clock["start"] = time.perf_counter()
            clock["overhead"] = 0.0
        now = time.perf_counter()
        if step in points:
            record["steps"].append(step + 1)
            record["time_s"].append(now - clock["start"] - clock["overhead"])
            record["masks"].append([m.detach().to("cpu", copy=True) for m in masks])
        if save_every and step and step % save_every == 0:
            save()
        clock["overhead"] += time.perf_counter() - now

    explainer.callback = on_step
    t0 = time.perf_counter()
    result = explainer.explain(x, target=target, init_mask=init_mask)
    record["runtime_s"] = time.perf_counter() - t0
    record["loss"] = result.history["loss"][:, 0].tolist()
    record["target"] = int(result.target[0])
    record["loadavg_end"] = list(os.getloadavg())
    record["finished"] = True
    save()
    return record


def score_runs(
    records: dict[str, dict[str, Any]],
    evaluator: ObjectiveEvaluator,
    *,
    reference: str = "paper-s0",
    floor: str | None = "paper-s1",
    max_points: int = 10,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score the snapshots of runs (from :func:`run_schedule`) with one evaluator.

    Every run gets a curve (steps, wall-clock time, objective, objective relative to the reference
    run's final objective, SSIM of the CartoonX picture to the reference's final picture, IoU of
    the retained entries) and a summary of its last snapshot.

    Args:
        records: Run name -> record.
        evaluator: The common scorer (its image and lambda_k must be those of the runs).
        reference: Name of the paper-schedule run everything is compared with.
        floor: Name of a second paper-schedule run with another seed: its final snapshot against
            the reference is the two-seed floor of the similarity scores.
        max_points: Most snapshots scored per run (evenly thinned; the last one always).
        log: Progress printer.

    Returns:
        ``{"reference": ..., "objective_ref": ..., "floor": ..., "runs": {name: {...}}}``.
    """
    say = log or (lambda _msg: None)
    if reference not in records:
        raise ValueError(f"no reference run {reference!r} among {sorted(records)}")
    ref = records[reference]
    ref_mask = ref["masks"][-1]
    ref_obj = evaluator(ref_mask)
    ref_pic = evaluator.picture(ref_mask)
    ref_rd = evaluator.rate_distortion_auc(ref_mask)
    ref_soft = evaluator.rate_distortion_auc(ref_mask, soft=True)
    out: dict[str, Any] = {
        "reference": reference,
        "reference_steps": ref["steps"][-1],
        "reference_finished": bool(ref.get("finished", False)),
        "objective_ref": ref_obj,
        "rd_auc_ref": ref_rd,
        "rd_soft_auc_ref": ref_soft,
        "evaluator": {
            "samples": evaluator.samples,
            "seed": evaluator.seed,
            "lambda_k": evaluator.lambda_k,
        },
        "runs": {},
    }
    for name, rec in records.items():
        n = len(rec["steps"])
        if n == 0:
            continue
        keep = sorted(
            {round(i * (n - 1) / max(1, max_points - 1)) for i in range(max_points)} | {n - 1}
        )
        curve: dict[str, list[float]] = {
            k: [] for k in ("steps", "time_s", "objective", "ratio", "ssim", "overlap")
        }
        # Snapshot times start at the end of step 1: add one mean step for it.
        first = rec["time_s"][-1] / max(1, rec["steps"][-1] - 1)
        for i in keep:
            mask = rec["masks"][i]
            obj = evaluator(mask)
            curve["steps"].append(int(rec["steps"][i]))
            curve["time_s"].append(float(rec["time_s"][i]) + first)
            curve["objective"].append(obj)
            curve["ratio"].append(obj / ref_obj)
            curve["ssim"].append(ssim(evaluator.picture(mask), ref_pic))
            curve["overlap"].append(retained_overlap(mask, ref_mask))
        final: dict[str, float] = {k: v[-1] for k, v in curve.items()}
        for key, soft, ref_value in (("rd", False, ref_rd), ("rd_soft", True, ref_soft)):
            value = (
                ref_value
                if name == reference
                else evaluator.rate_distortion_auc(rec["masks"][-1], soft=soft)
            )
            final[f"{key}_auc"] = value
            final[f"{key}_ratio"] = value / ref_value if ref_value > 0 else float("nan")
        say(
            f"{name}: {final['steps']} steps, {final['time_s']:.1f} s, objective x{final['ratio']:.3f}, "
            f"SSIM {final['ssim']:.3f}, overlap {final['overlap']:.3f}, "
            f"rate-distortion x{final['rd_soft_ratio']:.3f} (binary x{final['rd_ratio']:.3f})"
        )
        out["runs"][name] = {
            "config": rec.get("config"),
            "finished": bool(rec.get("finished", False)),
            "loadavg_start": rec.get("loadavg_start"),
            "loadavg_end": rec.get("loadavg_end"),
            "threads": rec.get("threads"),
            "curve": curve,
            "final": final,
        }
    if floor is not None and floor in out["runs"]:
        out["floor"] = {
            k: out["runs"][floor]["final"][k]
            for k in ("ratio", "ssim", "overlap", "rd_ratio", "rd_soft_ratio")
        }
    return out


def plot_quality(scores: dict[str, Any], path: str | os.PathLike[str], *, title: str = "") -> None:
    """Objective (relative to the paper schedule) and SSIM against wall-clock time, one line per run."""
    import matplotlib.pyplot as plt

    from rdex.io import atomic_write_with

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, run in scores["runs"].items():
        c = run["curve"]
        t = [max(v, 1e-3) for v in c["time_s"]]
        style = "-" if name.startswith("paper") else "-o"
        axes[0].plot(t, c["ratio"], style, ms=3, label=name)
        axes[1].plot(t, c["ssim"], style, ms=3, label=name)
    axes[0].axhline(1.02, color="grey", ls="--", lw=1, label="1.02 x paper")
    axes[0].set_ylabel("objective / paper schedule's final")
    axes[0].set_ylim(
        0.9, min(3.0, max(max(r["curve"]["ratio"]) for r in scores["runs"].values()) * 1.05)
    )
    axes[1].axhline(0.95, color="grey", ls="--", lw=1, label="SSIM 0.95")
    if "floor" in scores:
        axes[1].axhline(scores["floor"]["ssim"], color="k", ls=":", lw=1, label="two-seed floor")
    axes[1].set_ylabel("SSIM to paper-schedule explanation")
    axes[1].set_ylim(0, 1.02)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("wall-clock time of the optimisation (s)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title or "CartoonX time to quality", fontsize=10)
    fig.tight_layout()
    atomic_write_with(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
