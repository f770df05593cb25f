"""MkDocs hook: every figure of the site's pages is drawn by running rdex while the site builds.

The tutorials are executed by mkdocs-jupyter; the figures the other pages show are made here, in
``on_files``, and added to the site as generated files under ``figures/generated/``. Sizes and
schedules are small so that the whole build stays within a few minutes on one CPU thread.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.rdex")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = "figures/generated"


def _savefig(fig, path: Path) -> None:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def _demo(tmp: Path) -> dict[str, Path]:
    """`rdex demo` at 128 px: the home page's picture and the Getting started figure."""
    from rdex.cli import main

    out = tmp / "demo"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["demo", "--size", "128", "--out", str(out), "--quiet"])
    if code != 0:
        raise RuntimeError(f"rdex demo exited with {code}")
    return {
        "demo.png": out / "demo.png",
        "chelsea-cartoonx-figure.png": out / "chelsea-cartoonx-figure.png",
        "chelsea-pixel-rde-figure.png": out / "chelsea-pixel-rde-figure.png",
        "_npz": out / "chelsea-cartoonx.npz",
    }


def _dwt(tmp: Path, npz: Path) -> Path:
    """Figure 4 with the demo's CartoonX mask in coefficient space (`rdex dwt --mask`)."""
    from rdex.figures import mask_from_npz
    from rdex.plots import dwt_figure
    from rdex.images import sample_image

    mask, explanation = mask_from_npz(npz)
    fig = dwt_figure(sample_image("chelsea", size=128), mask=mask, explanation=explanation)
    _savefig(fig, tmp / "dwt-mask.png")
    return tmp / "dwt-mask.png"


def _baselines(tmp: Path) -> Path:
    """The four baselines on chelsea at 128 px: LRP refuses on EfficientNet-Lite0."""
    import warnings

    from rdex.figures import compare_methods
    from rdex.plots import compare_figure
    from rdex.images import sample_image
    from rdex.models import load_classifier

    model = load_classifier()
    x = sample_image("chelsea", size=128).unsqueeze(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comparison = compare_methods(
            model,
            x,
            ["integrated-gradients", "smoothgrad", "guided-backprop", "lrp"],
            names=["chelsea"],
        )
    _savefig(compare_figure(comparison), tmp / "baselines.png")
    return tmp / "baselines.png"


def _polar(tmp: Path) -> Path:
    """Figure 2: RDE in polar coordinates keeps the angle and drops the radius."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    sys.path.insert(0, str(HERE))
    try:
        from polar_example import Polar, PolarUniform, explain_point
    finally:
        sys.path.remove(str(HERE))
    x = torch.tensor([[0.5, 0.5]])
    result = explain_point(x)
    s_angle, s_radius = result.mask[0][0].tolist()

    rep, obf = Polar(), PolarUniform()
    (h,) = rep.encode(x)
    state = obf.prepare(x, [h], rep)
    g = torch.Generator().manual_seed(0)
    (v,) = obf.sample(state, 300, [g])
    v = v[0]

    def obfuscate(keep: torch.Tensor) -> torch.Tensor:
        y = keep * h + (1 - keep) * v
        return rep.decode([y], shape=(2,))

    keep_angle = obfuscate(torch.tensor([1.0, 0.0]))
    keep_radius = obfuscate(torch.tensor([0.0, 1.0]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    ax = axes[0]
    t = torch.linspace(0, 1.1, 2)
    for a in (math.pi / 4 - 0.3, math.pi / 4 + 0.3):
        ax.plot(t * math.cos(a), t * math.sin(a), color="grey", lw=1)
    ax.fill(
        [0, 1.1 * math.cos(math.pi / 4 - 0.3), 1.1 * math.cos(math.pi / 4 + 0.3)],
        [0, 1.1 * math.sin(math.pi / 4 - 0.3), 1.1 * math.sin(math.pi / 4 + 0.3)],
        color="#cde3f5",
        label="class 0 (a cone of angles)",
    )
    ax.scatter(*keep_radius.T, s=6, color="#d95f02", label="radius kept, angle random")
    ax.scatter(*keep_angle.T, s=6, color="#1b9e77", label="angle kept, radius random")
    ax.scatter([0.5], [0.5], s=60, color="k", zorder=3, label="x = (0.5, 0.5)")
    ax.set_aspect("equal")
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("obfuscations in polar coordinates")
    axes[1].bar(["angle", "radius"], [s_angle, s_radius], color=["#1b9e77", "#d95f02"])
    axes[1].set_ylim(0, 1)
    axes[1].set_title("RDE mask s (lambda_k = 0.2, 300 steps)")
    fig.tight_layout()
    _savefig(fig, tmp / "polar.png")
    return tmp / "polar.png"


def _performance(tmp: Path) -> dict[str, Path]:
    """The performance study's figures, redrawn from its measured JSON by rdex.bench."""
    import json

    from rdex.bench import plot_quality, plot_speed

    results = ROOT / "benchmarks" / "results"
    out = {}
    studies = ROOT / "benchmarks" / "studies" / "results"
    quality = json.loads((studies / "quality-128" / "bench-quality.json").read_text())
    plot_quality(quality, tmp / "quality-128.png", title="CartoonX time to quality, 128x128")
    out["quality-128.png"] = tmp / "quality-128.png"
    from rdex.bench.repeat import load_records, plot_repeatability, plot_seed_curves

    repeat = studies / "repeat-128"
    scores = json.loads((repeat / "bench-repeat.json").read_text())
    plot_seed_curves(scores, tmp / "repeat-128-curve.png")
    out["repeat-128-curve.png"] = tmp / "repeat-128-curve.png"
    records = load_records(results / "paper-128") + load_records(repeat / "records")
    plot_repeatability(records, scores, tmp / "repeat-128.png")
    out["repeat-128.png"] = tmp / "repeat-128.png"
    for threads in ("2threads", "1thread"):
        name = f"speed-cpu-256-L64-{threads}-idle-default-malloc"
        speed = json.loads((results / name / "bench-speed.json").read_text())
        count = threads.removesuffix("threads").removesuffix("thread")
        plot_speed(
            speed, tmp / f"speed-{threads}.png", title=f"CPU, 256x256, L = 64, {count} thread(s)"
        )
        out[f"speed-{threads}.png"] = tmp / f"speed-{threads}.png"
    return out


_TMP: tempfile.TemporaryDirectory[str] | None = None


def _environment_for_the_tutorials() -> None:
    # The tutorials' Jupyter kernels inherit this environment. A non-interactive backend (set by
    # tests, CI, or rdex's command line when the demo figure ran) would leave them without inline
    # figures; this hook chooses Agg for its own figures with matplotlib.use instead.
    os.environ.pop("MPLBACKEND", None)
    # tqdm.auto inside a kernel wants ipywidgets for its bars; the tutorials show none.
    warnings = os.environ.get("PYTHONWARNINGS", "")
    if "IProgress" not in warnings:
        os.environ["PYTHONWARNINGS"] = ",".join(
            filter(None, [warnings, "ignore:IProgress not found"])
        )


def on_files(files: Files, config) -> Files:
    global _TMP
    import matplotlib

    matplotlib.use("Agg")
    _TMP = tempfile.TemporaryDirectory(prefix="rdex-docs-")
    tmp = Path(_TMP.name)
    made: dict[str, Path] = {}
    for name, step in [
        ("demo", lambda: _demo(tmp)),
        ("dwt", lambda: {"dwt-mask.png": _dwt(tmp, made["_npz"])}),
        ("baselines", lambda: {"baselines.png": _baselines(tmp)}),
        ("polar", lambda: {"polar.png": _polar(tmp)}),
        ("performance", lambda: _performance(tmp)),
    ]:
        start = time.perf_counter()
        made.update(step())
        log.info("rdex figures: %s in %.0f s", name, time.perf_counter() - start)
    _environment_for_the_tutorials()
    for name, path in made.items():
        if not name.startswith("_"):
            files.append(File.generated(config, f"{OUT}/{name}", abs_src_path=str(path)))
    return files


def on_post_build(config) -> None:
    global _TMP
    if _TMP is not None:
        _TMP.cleanup()
        _TMP = None
