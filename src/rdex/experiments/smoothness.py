"""Smoothness and faithfulness of every method on the sample set.

The paper's pictures argue that CartoonX explanations are piece-wise smooth ("cartoon-like") where
Pixel RDE's are jittery. Here the claim is measured: total variation and wavelet-domain sparsity
(Gini index of the db3 detail coefficients) of the explanation picture and of the masked image.
The same run scores all methods, the gradient and propagation baselines included, on every metric
of :mod:`rdex.metrics` (rate-distortion, deletion and insertion areas, CP, hallucination).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from rdex import metrics as M
from rdex.experiments._core import (
    Claim,
    Context,
    ExperimentResult,
    fmt,
    markdown_table,
    mean,
    on_device,
    write_csv,
)
from rdex.experiments.figures import bars_figure, curves_figure, image_grid, method_label
from rdex.methods.registry import paper_methods

NAME = "smoothness"
TITLE = "Smoothness of CartoonX vs Pixel RDE, and all metrics for all methods"

RDE_METHODS = tuple(paper_methods("rde"))
BASELINES = tuple(paper_methods("attribution"))
TABLE = (
    "rd_auc", "deletion_auc", "insertion_auc", "cp_pixel_l1", "cp_coeff_l1", "cp_entropy",
    "hallucination", "retained_fraction", "tv", "tv_retained", "wavelet_gini", "wavelet_l1",
)  # fmt: skip


def _baseline_explanations(
    ctx: Context, x: torch.Tensor, target: torch.Tensor
) -> tuple[dict, list[str]]:
    """Pixel attributions of the baselines that work for this model; notes on those that do not."""
    from rdex.baselines import ATTRIBUTIONS

    out: dict[str, M.Explanation] = {}
    notes = []
    for name in BASELINES:
        fn = ATTRIBUTIONS.get(name)
        if fn is None:
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                attr = fn(ctx.model, x.to(ctx.device), target=target.to(ctx.device)).cpu()
            for w in caught:
                notes.append(f"{method_label(name)}: {str(w.message).splitlines()[0]}")
        except (ValueError, RuntimeError) as exc:
            notes.append(f"{method_label(name)} skipped: {str(exc).splitlines()[0]}")
            continue
        out[name] = M.Explanation.from_attribution(name, x, attr, target=target)
    return out, notes


def run(ctx: Context) -> ExperimentResult:
    out = ctx.out / NAME
    out.mkdir(parents=True, exist_ok=True)
    names = list(ctx.settings.images)
    explanations: dict[str, M.Explanation] = {}
    x = ctx.batch(names).cpu()
    target = None
    for method in RDE_METHODS:
        explainer, result, x = ctx.explain(method, names)
        explanations[method] = M.Explanation.from_rde(explainer, x, result)
        target = result.target
    assert target is not None
    baseline_ex, notes = _baseline_explanations(ctx, x, target)
    explanations.update(baseline_ex)

    evals: dict[str, M.Evaluation] = {}
    rows: list[dict[str, Any]] = []
    for method, ex in explanations.items():
        ev = M.evaluate(
            ctx.model, x.to(ctx.device), on_device(ex, ctx.device), samples=ctx.settings.eval_samples,
            steps=ctx.settings.eval_steps, seed=ctx.settings.seed,
        )  # fmt: skip
        evals[method] = ev
        rows.extend(ev.rows(names))
    csv_path = write_csv(out / "metrics.csv", rows)

    grid = []
    probs = ctx.probs(x.to(ctx.device)).cpu()
    for i, name in enumerate(names):
        t = int(target[i])
        row = [(x[i], "gray", f"{name}: {ctx.label(t)} {float(probs[i, t]):.2f}")]
        for method, ex in explanations.items():
            cmap = "gray" if method == "cartoonx" else "viridis"
            row.append((ex.picture[i], cmap, method_label(method)))
        grid.append(row)
    figs = [
        image_grid(grid, out / "explanations.png", title="explanations on the sample set"),
        curves_figure(evals, out / "curves.png", title="mean curves over the sample set"),
        bars_figure(rows, TABLE, out / "metrics.png", title="metrics (mean over images)"),
    ]

    summary = []
    for method in explanations:
        mine = [r for r in rows if r["method"] == method]
        summary.append(
            {"method": method_label(method)} | {k: mean([r[k] for r in mine]) for k in TABLE}
        )
    by = {m: [r for r in rows if r["method"] == m] for m in RDE_METHODS}

    def compare(metric: str) -> tuple[float, float, int]:
        c = [r[metric] for r in by["cartoonx"]]
        p = [r[metric] for r in by["pixel-rde"]]
        sign = M.METRIC_DIRECTIONS[metric]
        wins = sum((a > b) if sign > 0 else (a < b) for a, b in zip(c, p, strict=True))
        return mean(c), mean(p), wins

    claims = []
    for metric, text in (
        (
            "tv",
            "CartoonX explanations are smoother than Pixel RDE's (lower total variation of the picture).",
        ),
        (
            "tv_retained",
            "What CartoonX keeps of the image is smoother (lower total variation of the masked image).",
        ),
        (
            "wavelet_gini",
            "CartoonX explanations are sparser in the wavelet domain (higher Gini index of db3 details).",
        ),
    ):
        c, p, wins = compare(metric)
        claims.append(
            Claim(
                text,
                None if 2 * wins == len(names) else wins > len(names) / 2,
                f"{metric}: CartoonX {fmt(c)}, Pixel RDE {fmt(p)} (mean over {len(names)} images); "
                f"CartoonX better on {wins} of {len(names)} images (held on a majority, undecided "
                "on a tie)",
            )
        )
    md = (
        f"Images: {', '.join(names)}. Means over the images (per-image values in the CSV). "
        "Lower is better for rd_auc, deletion_auc, hallucination, retained_fraction, tv, tv_retained "
        "and wavelet_l1; higher for insertion_auc, the CP scores and wavelet_gini. Rate-distortion "
        "curves use each method's own obfuscation (baselines: pixels with adaptive Gaussian noise, as "
        "Pixel RDE); deletion replaces pixels by black, insertion starts from a blurred copy "
        "(sigma 5 px); baselines' masked image is the input times the attribution's positive part "
        "normalised to [0, 1].\n\n"
        + markdown_table(summary, ["method", *TABLE])
        + ("\nNotes: " + "; ".join(dict.fromkeys(notes)) + "\n" if notes else "")
    )
    return ExperimentResult(
        name=NAME,
        title=TITLE,
        claims=claims,
        tables={"metrics": str(csv_path.relative_to(ctx.out))},
        figures=[str(f.relative_to(ctx.out)) for f in figs],
        markdown=md,
    )
