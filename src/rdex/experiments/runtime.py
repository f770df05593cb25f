"""Runtime of CartoonX, Pixel RDE and Integrated Gradients on this machine (section 5.2).

The paper reports, for MobileNetV3-Small, a 256 x 256 image and 2001 steps on an NVIDIA Titan RTX:
CartoonX 81.56 s, Pixel RDE 70.53 s, Integrated Gradients 0.48 s. Here each RDE method is timed
twice: a full run with the settings' schedule (the run of an earlier experiment in the same
command is reused when it explained this image alone with the same settings), and a few steps of the paper's schedule
(``L = 64``) whose time per step is extrapolated to 2000 steps (stated as an extrapolation).
Integrated Gradients uses captum with 100 steps (A.2). All runs use one image, after a warm-up
pass; on a machine shared with other jobs the numbers are upper bounds.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from rdex.experiments._core import (
    Claim,
    Context,
    ExperimentResult,
    fmt,
    machine,
    markdown_table,
    write_csv,
)

NAME = "runtime"
TITLE = "Runtime: CartoonX, Pixel RDE and Integrated Gradients"

PAPER_SECONDS = {"cartoonx": 81.56, "pixel-rde": 70.53, "integrated-gradients": 0.48}
#: Steps of the paper schedule timed for the extrapolation.
PROBE_STEPS = 4
PAPER_STEPS = 2000


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(ctx: Context) -> ExperimentResult:
    from rdex.baselines import integrated_gradients

    out = ctx.out / NAME
    out.mkdir(parents=True, exist_ok=True)
    name = ctx.settings.images[0]
    x = ctx.batch([name])
    with torch.no_grad():
        ctx.model(x)  # warm-up
    rows: list[dict[str, Any]] = []
    for method in ("cartoonx", "pixel-rde"):
        explainer = ctx.explainer(method)
        cfg = explainer.config
        # A run of this image alone that an earlier experiment timed is reused (same settings).
        _, cached, _ = ctx.cached(method, [name]) or (None, None, None)
        if cached is not None and cached.extra.get("batch_images") == 1:
            full = cached.runtime_s
        else:
            full = _timed(lambda e=explainer: e.explain(x))
        probe = ctx.explainer(
            method,
            lambda_k=cfg.lambda_k,
            steps=PROBE_STEPS,
            samples=64,
            lr=1e-3,
            schedule="constant",
        )
        per_step = _timed(lambda e=probe: e.explain(x)) / PROBE_STEPS
        rows.append(
            {
                "method": method,
                "settings": f"{ctx.settings.preset}: {cfg.steps} steps, L={cfg.samples}",
                "seconds": full,
                "paper_schedule_s_per_step": per_step,
                "paper_schedule_s_extrapolated": per_step * PAPER_STEPS,
                "paper_reported_s": PAPER_SECONDS[method],
            }
        )
    ig = _timed(lambda: integrated_gradients(ctx.model, x, n_steps=100))
    rows.append(
        {
            "method": "integrated-gradients",
            "settings": "captum, 100 steps, internal batch 16",
            "seconds": ig,
            "paper_schedule_s_per_step": float("nan"),
            "paper_schedule_s_extrapolated": ig,
            "paper_reported_s": PAPER_SECONDS["integrated-gradients"],
        }
    )
    csv_path = write_csv(out / "runtime.csv", rows)
    cx, px, igr = rows
    ratio = cx["paper_schedule_s_extrapolated"] / px["paper_schedule_s_extrapolated"]
    ratio_full = cx["seconds"] / px["seconds"]
    claims = [
        Claim(
            "CartoonX is not significantly slower than Pixel RDE (paper: 81.56 s vs 70.53 s, ratio 1.16).",
            ratio <= 1.5,
            f"CartoonX / Pixel RDE: {fmt(ratio)} at the paper schedule (per-step time), "
            f"{fmt(ratio_full)} at the {ctx.settings.preset} schedule (threshold 1.5)",
        ),
        Claim(
            "Integrated Gradients is far faster than CartoonX (paper: 0.48 s vs 81.56 s).",
            igr["seconds"] * 10 < cx["paper_schedule_s_extrapolated"],
            f"IG {fmt(igr['seconds'])} s vs CartoonX {fmt(cx['paper_schedule_s_extrapolated'])} s "
            f"(paper schedule, extrapolated) and {fmt(cx['seconds'])} s ({ctx.settings.preset} schedule)",
        ),
    ]
    md = (
        f"Image `{name}` at {ctx.settings.size} px, model `{ctx.settings.model}`, device "
        f"`{ctx.settings.device}` ({machine()}). The paper's numbers are for MobileNetV3-Small at "
        f"256 px on an NVIDIA Titan RTX. 'extrapolated' = time per step of {PROBE_STEPS} steps at "
        f"the paper's L = 64 times {PAPER_STEPS}.\n\n" + markdown_table(rows)
    )
    return ExperimentResult(
        name=NAME,
        title=TITLE,
        claims=claims,
        tables={"runtime": str(csv_path.relative_to(ctx.out))},
        figures=[],
        markdown=md,
    )
