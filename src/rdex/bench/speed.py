"""The speed benchmark of ``rdex bench``: per-step time of a plain Algorithm 1
(:func:`rdex.bench.reference_cartoonx`) and of rdex at identical settings, interleaved in one
process, with peak memory."""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rdex.bench.reference import reference_cartoonx
from rdex.inference import freed_memory_kept
from rdex.methods import CartoonX


def peak_memory_mb(device: torch.device | str = "cpu") -> float:
    """Peak memory of this process so far in MiB: CUDA's max allocated, or the peak RSS on CPU.

    On Linux the peak RSS is ``VmHWM`` of ``/proc/self/status``, the high-water mark of this
    process's own memory: ``ru_maxrss`` of a process started by ``multiprocessing``'s spawn
    carries its parent's resident size over the ``exec`` (measured: a parent holding 2 GiB gave
    a fresh child ``ru_maxrss`` 2 GiB and ``VmHWM`` 15 MiB), so it is only the fallback.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: Variants of the speed benchmark: what runs, and which rdex settings it uses.
SPEED_VARIANTS: dict[str, str] = {
    "reference": "plain Algorithm 1 (reference_cartoonx: NCHW, per-band noise, .item() per step)",
    "rdex": "rdex.CartoonX, default settings (channels-last model copy with BatchNorms folded, "
    "fused noise, no sync, "
    "CPU: obfuscations in chunks of at most 16 images of 256x256)",
    "rdex-nchw": "rdex.CartoonX with channels_last=False (the channels-last lever off)",
    "rdex-nofold": "rdex.CartoonX with fold_batchnorm=False (the BatchNorm-folding lever off)",
    "rdex-onepass": "rdex.CartoonX with all B*L obfuscations in one pass (the chunking lever off)",
}


def _run_variant(
    variant: str, model: nn.Module, x: Tensor, *, steps: int, samples: int, lambda_k: float
) -> tuple[float, float]:
    """Run ``steps`` steps of ``variant`` on ``x`` (``(B, C, H, W)``): wall and CPU seconds from
    the start to the end of the last step.

    For rdex this is setup and steps: the check against the empty mask that follows the last
    step (:mod:`rdex.objective`, 128 forward passes per image) is not a step and the reference
    loop has none, so the clock stops at the last step's callback.
    """
    device = x.device
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    if variant == "reference":
        for i in range(x.shape[0]):
            reference_cartoonx(model, x[i : i + 1], lambda_k=lambda_k, steps=steps, samples=samples)
        _sync(device)
        return time.perf_counter() - start, time.process_time() - cpu_start
    levers: dict[str, dict[str, Any]] = {
        "rdex-nchw": {"channels_last": False},
        "rdex-nofold": {"fold_batchnorm": False},
        "rdex-onepass": {"sample_chunk": samples * x.shape[0]},
    }
    changes = levers.get(variant, {})
    if variant not in SPEED_VARIANTS:
        raise ValueError(
            f"unknown speed variant {variant!r}; choose from {', '.join(SPEED_VARIANTS)}"
        )
    explainer = CartoonX(
        model, preset="paper", lambda_k=lambda_k, steps=steps, samples=samples, **changes
    )
    end: list[tuple[float, float]] = []

    def last_step(step: int, _masks: Any) -> None:
        if step == steps - 1:  # no synchronisation in the other steps (rdex makes none)
            _sync(device)
            end[:] = [(time.perf_counter(), time.process_time())]

    explainer.callback = last_step
    explainer.explain(x)
    return end[0][0] - start, end[0][1] - cpu_start


def _memory_child(
    variant: str, model: nn.Module, x: Tensor, steps: int, samples: int, lambda_k: float, queue: Any
) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        _run_variant(variant, model, x, steps=steps, samples=samples, lambda_k=lambda_k)
        queue.put(peak_memory_mb(x.device))
    except Exception as exc:  # reported to the parent, which raises
        queue.put(f"{type(exc).__name__}: {exc}")


def _peak_rss_in_child(
    variant: str, model: nn.Module, x: Tensor, *, steps: int, samples: int, lambda_k: float
) -> float:
    """Peak RSS (MiB) of a fresh process that runs ``variant``: one number per variant on CPU."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_memory_child, args=(variant, model, x, steps, samples, lambda_k, queue)
    )
    proc.start()
    value = queue.get()
    proc.join()
    if isinstance(value, str):
        raise RuntimeError(f"memory measurement of {variant} failed: {value}")
    return float(value)


def speed_benchmark(
    model: nn.Module,
    x: Tensor,
    *,
    samples: int = 64,
    steps: int = 5,
    repeats: int = 3,
    lambda_k: float = 20.0,
    variants: Sequence[str] = ("reference", "rdex"),
    memory: bool = True,
    full_steps: int = 2000,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Per-step time of the reference loop and of rdex, interleaved in one process.

    Every variant runs once as warm-up, then ``repeats`` rounds run all variants in turn (A, B,
    A, B, ...), so load from other processes hits them alike; ratios are taken within a round.

    Args:
        model: Classifier (already on ``x``'s device).
        x: Images ``(B, C, H, W)``; the reference explains them one after the other, rdex in one
            batched loop.
        samples: Noise samples ``L`` per step (paper: 64).
        steps: Optimisation steps per timed run.
        repeats: Rounds.
        lambda_k: Sparsity.
        variants: Keys of :data:`SPEED_VARIANTS`; the first is the baseline of the ratios.
        memory: Also measure peak memory per variant (CUDA: peak allocated, reset per variant;
            CPU: peak RSS of a fresh child process per variant).
        full_steps: Steps of a whole explanation, for ``images_per_s`` (paper: 2000).
        log: Progress printer.

    Returns:
        A JSON-ready dict with per-variant per-step times (median and min over rounds), ratios
        to the baseline, images per second, peak memory, load averages and the settings.
    """
    say = log or (lambda _msg: None)
    device = x.device
    batch = x.shape[0]
    kwargs: dict[str, Any] = {"steps": steps, "samples": samples, "lambda_k": lambda_k}
    for v in variants:
        _run_variant(v, model, x, **{**kwargs, "steps": 1})
    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu_times: dict[str, list[float]] = {v: [] for v in variants}
    loads: list[list[float]] = []
    for r in range(repeats):
        for v in variants:
            loads.append(list(os.getloadavg()))
            wall, cpu = _run_variant(v, model, x, **kwargs)
            cpu_times[v].append(cpu / steps)
            times[v].append(wall / steps)
            say(f"round {r + 1}/{repeats} {v}: {wall / steps:.3f} s/step (load {loads[-1][0]:.1f})")
    base = variants[0]
    out: dict[str, Any] = {
        "settings": {
            "batch": batch,
            "shape": list(x.shape[1:]),
            "samples": samples,
            "steps_per_run": steps,
            "repeats": repeats,
            "lambda_k": lambda_k,
            "full_steps": full_steps,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "keep_freed_memory": freed_memory_kept(),
        },
        "loadavg": loads,
        "variants": {},
    }
    for v in variants:
        med = float(np.median(times[v]))
        ratios = [b / t for b, t in zip(times[base], times[v], strict=True)]
        entry: dict[str, Any] = {
            "description": SPEED_VARIANTS[v],
            "step_s": times[v],
            "step_s_median": med,
            "step_s_min": min(times[v]),
            "cpu_s_per_step_median": float(np.median(cpu_times[v])),
            f"speedup_vs_{base}_median": float(np.median(ratios)),
            f"speedup_vs_{base}_of_min": min(times[base]) / min(times[v]),
            "images_per_s": batch / (med * full_steps),
            "image_steps_per_s": batch / med,
        }
        if memory:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                _run_variant(v, model, x, **{**kwargs, "steps": 2})
                entry["peak_memory_mb"] = peak_memory_mb(device)
                entry["memory_kind"] = "torch.cuda.max_memory_allocated"
            else:
                entry["peak_memory_mb"] = _peak_rss_in_child(v, model, x, **{**kwargs, "steps": 2})
                entry["memory_kind"] = "peak RSS of a fresh process (VmHWM on Linux)"
        out["variants"][v] = entry
    return out


def plot_speed(result: dict[str, Any], path: str | os.PathLike[str], *, title: str = "") -> None:
    """Bar chart of the per-step time of every speed variant (median, with the rounds as dots)."""
    import matplotlib.pyplot as plt

    from rdex.io import atomic_write_with

    names = list(result["variants"])
    med = [result["variants"][n]["step_s_median"] for n in names]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.6))
    ax.bar(range(len(names)), med, color=["#999999"] + ["#3b7dd8"] * (len(names) - 1))
    for i, n in enumerate(names):
        pts = result["variants"][n]["step_s"]
        ax.plot([i] * len(pts), pts, "k.", ms=4)
        key = next(
            k
            for k in result["variants"][n]
            if k.startswith("speedup_vs_") and k.endswith("_median")
        )
        ax.text(
            i, med[i], f"x{result['variants'][n][key]:.2f}", ha="center", va="bottom", fontsize=8
        )
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("seconds per step")
    s = result["settings"]
    ax.set_title(
        title or f"{s['device']}, {s['shape']}, L={s['samples']}, batch {s['batch']}", fontsize=9
    )
    fig.tight_layout()
    atomic_write_with(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
