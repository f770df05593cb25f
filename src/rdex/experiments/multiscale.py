"""ShearletX and WaveletX against CartoonX and Pixel RDE: hallucination and CP scores.

Kolek et al. (CVPR 2023) claim that ShearletX and WaveletX explanations hallucinate fewer edges
than Pixel RDE's (lower hallucination score, :func:`rdex.metrics.hallucination_score`) and are
more concise and precise than the other mask methods (higher CP scores,
:func:`rdex.metrics.cp_scores`: pixel l1, l1 of the db3 wavelet coefficients and entropy). Here
the four methods explain the sample set and both scores are computed on each method's masked
image (``explanation_rgb``, what the paper scores).

Each method runs with its own choices: ShearletX and WaveletX with the ShearletX paper's
optimiser (:data:`rdex.methods.shearletx.PAPER_SCHEDULE`: Adam lr 0.1, constant, 300 steps, 16
noise samples; ``--steps``/``--samples`` override the steps and samples), adaptive uniform noise,
the ``max-label`` distortion and their default ``lambda_1``/``lambda_2``; CartoonX and Pixel RDE
with the shared preset and Gaussian noise, as in the other experiments. ShearletX costs about four
times CartoonX per step on CPU, so this experiment runs at most at :data:`MAX_SIZE` (96 px) whatever
the shared image size; the report states it in the experiment's section.

Verdicts compare the mean over images (for CP, the mean of ``log10 CP``: CP is a ratio and an
almost empty mask makes it huge) with a two-seed noise floor: the largest change of that mean
when Pixel RDE, CartoonX and WaveletX are rerun with the next seed (ShearletX is not rerun: it
would double the experiment's cost).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from rdex import metrics as M
from rdex.experiments._core import (
    Claim,
    Context,
    ExperimentResult,
    Settings,
    fmt,
    markdown_table,
    mean,
    write_csv,
)
from rdex.experiments.figures import bars_figure, image_grid, method_label
from rdex.methods.shearletx import PAPER_SCHEDULE

NAME = "multiscale"
TITLE = "ShearletX and WaveletX vs CartoonX and Pixel RDE: hallucination and CP scores"

#: The largest image side this experiment runs at (ShearletX's cost on CPU); larger shared sizes
#: are reduced to it.
MAX_SIZE = 96


def own_settings(shared: Settings) -> dict[str, Any]:
    """The settings this experiment changes: the image side at most :data:`MAX_SIZE`."""
    return {"size": MAX_SIZE} if shared.size > MAX_SIZE else {}


METHODS = ("shearletx", "waveletx", "cartoonx", "pixel-rde")
#: The methods with a spatial penalty, run with the ShearletX paper's optimiser and noise.
SPATIAL = ("shearletx", "waveletx")
#: Methods rerun with the next seed for the noise floor.
FLOOR_METHODS = ("pixel-rde", "cartoonx", "waveletx")
CP = ("cp_pixel_l1", "cp_coeff_l1", "cp_entropy")
METRICS = ("hallucination", *CP, "retained_prob_ratio")


def method_overrides(ctx: Context, method: str) -> dict[str, Any]:
    """Keyword arguments of :meth:`Context.explain` for ``method`` (its own optimiser and noise)."""
    if method not in SPATIAL:
        return {}
    s = ctx.settings
    return {
        "obfuscation": "uniform",
        "distortion": "max-label",
        "lr": PAPER_SCHEDULE["lr"],
        "schedule": PAPER_SCHEDULE["schedule"],
        "steps": s.steps if s.steps is not None else PAPER_SCHEDULE["steps"],
        "samples": s.samples if s.samples is not None else PAPER_SCHEDULE["samples"],
    }


def scale(metric: str, value: float) -> float:
    """The value a verdict compares: ``log10`` for CP scores (ratios), the value otherwise."""
    if metric in CP:
        return math.log10(max(value, 1e-30))
    return value


def compare_verdict(
    mine: float, other: float, floor: float, *, lower_is_better: bool
) -> tuple[bool | None, str]:
    """Whether ``mine`` beats ``other`` by more than the two-seed ``floor``.

    Returns:
        ``True`` when better by more than the floor, ``False`` when worse by more than the floor,
        ``None`` (undecided) when within it; and the difference in words.
    """
    diff = (other - mine) if lower_is_better else (mine - other)
    if abs(diff) <= floor:
        return None, f"differ by {fmt(abs(diff))}, within the floor {fmt(floor)}"
    return diff > 0, f"{'better' if diff > 0 else 'worse'} by {fmt(abs(diff))} > floor {fmt(floor)}"


def combine(verdicts: Sequence[bool | None]) -> bool | None:
    """One verdict from several comparisons: did not hold if any did not, held if all held."""
    if any(v is False for v in verdicts):
        return False
    if verdicts and all(v is True for v in verdicts):
        return True
    return None


def lost_class_note(rows: Sequence[dict[str, Any]], seed: int, threshold: float = 0.1) -> str:
    """A remark on the masked images that lose the class (``retained_prob_ratio`` below
    ``threshold``): they keep little of the image, so their CP is tiny and their hallucination
    score says little (an almost empty image has few edges to hallucinate)."""
    lost = [r for r in rows if r["seed"] == seed and r["retained_prob_ratio"] < threshold]
    if not lost:
        return ""
    items = ", ".join(
        f"{method_label(r['method'])} on {r['image']} ({fmt(r['retained_prob_ratio'])}, "
        f"{int(r['explanation_edges'])} of {int(r['input_edges'])} edges)"
        for r in lost
    )
    return (
        f"\nMasked images that lose the class (probability ratio below {threshold}; edges of the "
        f"masked image vs the input's): {items}. Their CP is tiny and their low hallucination "
        "score partly reflects how little they keep.\n"
    )


def _scores(ctx: Context, res: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
    masked = res.explanation_rgb.to(ctx.device)
    xd = x.to(ctx.device)
    cp = M.cp_scores(ctx.model, xd, masked, target=res.target.to(ctx.device))
    hal = M.hallucination_score(x, res.explanation_rgb)
    return {k: v.cpu() for k, v in (cp | hal).items()}


def run(ctx: Context) -> ExperimentResult:
    out = ctx.out / NAME
    out.mkdir(parents=True, exist_ok=True)
    names = list(ctx.settings.images)
    seed = ctx.settings.seed
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    x = ctx.batch(names).cpu()
    for method in METHODS:
        ex, res, x = ctx.explain(method, names, **method_overrides(ctx, method))
        results[method] = res
        scores = _scores(ctx, res, x)
        cfg = ex.config
        for i, name in enumerate(names):
            rows.append(
                {"image": name, "method": method, "seed": seed}
                | {k: float(v[i]) for k, v in scores.items()}
                | {"steps": cfg.steps, "samples": cfg.samples, "lr": cfg.lr,
                   "lambda_k": cfg.lambda_k, "spatial_l1": cfg.spatial_l1,
                   "runtime_s": float(res.runtime_s)}
            )  # fmt: skip
    for method in FLOOR_METHODS:
        kw = method_overrides(ctx, method) | {"seed": seed + 1}
        ex, res, x = ctx.explain(method, names, **kw)
        scores = _scores(ctx, res, x)
        for i, name in enumerate(names):
            rows.append(
                {"image": name, "method": method, "seed": seed + 1}
                | {k: float(v[i]) for k, v in scores.items()}
            )
    csv_path = write_csv(out / "scores.csv", rows)

    def agg(method: str, metric: str, s: int = seed) -> float:
        return mean(
            [scale(metric, r[metric]) for r in rows if r["method"] == method and r["seed"] == s]
        )

    floors = {
        m: max(abs(agg(f, m) - agg(f, m, seed + 1)) for f in FLOOR_METHODS)
        for m in ("hallucination", *CP)
    }
    lower = {"hallucination": True} | {m: False for m in CP}

    claims = []
    for method in SPATIAL:
        v, why = compare_verdict(
            agg(method, "hallucination"), agg("pixel-rde", "hallucination"),
            floors["hallucination"], lower_is_better=True,
        )  # fmt: skip
        claims.append(
            Claim(
                f"{method_label(method)} hallucinates fewer edges than Pixel RDE (lower "
                "hallucination score; CVPR 2023, section 5).",
                v,
                f"hallucination {method_label(method)} {fmt(agg(method, 'hallucination'))}, Pixel "
                f"RDE {fmt(agg('pixel-rde', 'hallucination'))} (mean over {len(names)} images): "
                f"{why} (two-seed floor)",
            )
        )
    for method in SPATIAL:
        verdicts, parts = [], []
        for other in ("cartoonx", "pixel-rde"):
            for metric in CP:
                v, why = compare_verdict(
                    agg(method, metric), agg(other, metric), floors[metric],
                    lower_is_better=lower[metric],
                )  # fmt: skip
                verdicts.append(v)
                parts.append(f"{metric} vs {method_label(other)}: {why}")
        claims.append(
            Claim(
                f"{method_label(method)} is more concise and precise than CartoonX and Pixel RDE "
                "(higher CP scores: pixel l1, coefficient l1, entropy).",
                combine(verdicts),
                "mean log10 CP over the images; " + "; ".join(parts) + " (held when all six "
                "comparisons are better beyond the floor, did not hold when one is worse beyond it)",
            )
        )

    summary = []
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method and r["seed"] == seed]
        summary.append(
            {"method": method_label(method)}
            | {"hallucination": mean([r["hallucination"] for r in mine])}
            | {f"log10 {m}": agg(method, m) for m in CP}
            | {"retained_prob_ratio": mean([r["retained_prob_ratio"] for r in mine])}
        )
    floor_row = (
        {"method": "two-seed floor"}
        | {"hallucination": floors["hallucination"]}
        | {f"log10 {m}": floors[m] for m in CP}
    )

    probs = ctx.probs(x.to(ctx.device)).cpu()
    grid = []
    for i, name in enumerate(names):
        t = int(results["cartoonx"].target[i])
        row = [(x[i], "gray", f"{name}: {ctx.label(t)} {float(probs[i, t]):.2f}")]
        for method in METHODS:
            r = next(
                r
                for r in rows
                if r["method"] == method and r["image"] == name and r["seed"] == seed
            )
            row.append(
                (
                    results[method].explanation_rgb[i].clamp(0, 1),
                    "gray",
                    f"{method_label(method)} H {r['hallucination']:.2f}",
                )
            )
        grid.append(row)
    bar_rows = [
        {"method": method_label(r["method"]), "hallucination": r["hallucination"]}
        | {f"log10 {m}": scale(m, r[m]) for m in CP}
        for r in rows
        if r["seed"] == seed
    ]
    figs = [
        image_grid(
            grid, out / "explanations.png",
            title="masked images (what the scores see); H: hallucination score",
        ),
        bars_figure(
            bar_rows, ["hallucination", *(f"log10 {m}" for m in CP)], out / "scores.png",
            title="hallucination (lower is better) and log10 CP (higher is better), mean over images",
        ),
    ]  # fmt: skip

    spatial = {r["method"]: r for r in rows if r["seed"] == seed and r["image"] == names[0]}
    md = (
        f"Images: {', '.join(names)}. Scores of each method's masked image (the mask applied to "
        "the input's coefficients, as the paper scores them). ShearletX and WaveletX: the "
        f"ShearletX paper's optimiser (Adam lr {PAPER_SCHEDULE['lr']}, constant, "
        f"{spatial['shearletx']['steps']} steps, L = {spatial['shearletx']['samples']}), adaptive "
        "uniform noise, max-label distortion, lambda_1 = "
        f"{fmt(spatial['shearletx']['lambda_k'])} / {fmt(spatial['waveletx']['lambda_k'])} and "
        f"lambda_2 = {fmt(spatial['shearletx']['spatial_l1'])} / "
        f"{fmt(spatial['waveletx']['spatial_l1'])}; CartoonX and Pixel RDE: the shared schedule "
        f"({spatial['cartoonx']['steps']} steps, L = {spatial['cartoonx']['samples']}, lr "
        f"{fmt(spatial['cartoonx']['lr'])}), Gaussian noise. Means over the images; CP as mean "
        "log10 (per-image values in the CSV). The two-seed floor is the largest change of a mean "
        f"when {', '.join(method_label(m) for m in FLOOR_METHODS)} are rerun with seed "
        f"{seed + 1}.\n\n"
        + markdown_table([*summary, floor_row], list(summary[0]))
        + lost_class_note(rows, seed)
    )
    return ExperimentResult(
        name=NAME,
        title=TITLE,
        claims=claims,
        tables={"scores": str(csv_path.relative_to(ctx.out))},
        figures=[str(f.relative_to(ctx.out)) for f in figs],
        markdown=md,
    )
