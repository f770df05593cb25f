"""How the cost of an explanation grows (``rdex bench --mode cost``): seconds per step and peak
memory of CartoonX under the CLI's default preset over image sizes and batch sizes, and the wall
time of ``rdex batch`` on one folder locally and on Ray workers.

Every cell (size x batch) runs in a fresh process, so its peak memory is its own: peak RSS on
CPU (the process's high-water mark, which includes the interpreter, torch and the model: the
baseline before the explanation is reported beside it), ``torch.cuda.max_memory_allocated`` on CUDA. A cell runs one
explanation of ``warmup + steps`` steps; the step times are read between consecutive steps (the
explainer's ``callback``), so set-up and the first, warm-up, step are not in them.

Cells whose predicted memory (or time) exceeds a bound are skipped with a reason instead of run:
the prediction extends the measured smaller batches of the same size (a fixed part and a part
per image), or scales the nearest measured smaller size by pixels and images (by the growth seen
between the last two sizes where that was worse than linear).
"""

from __future__ import annotations

import os
import queue as queue_mod
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdex.bench.speed import peak_memory_mb

__all__ = [
    "cli_default_preset",
    "cost_benchmark",
    "batch_cost",
    "write_batch_folder",
    "cost_markdown",
]


def cli_default_preset() -> str:
    """The preset the ``rdex`` commands use when ``--preset`` is not given (read from the CLI's
    own argument definition, so the benchmark follows it when it changes)."""
    import argparse

    from rdex.cli._common import add_rde_args

    parser = argparse.ArgumentParser()
    add_rde_args(parser)
    return str(parser.get_default("preset"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure_cell(
    model: nn.Module | str,
    weights: str | None,
    image: str,
    size: int,
    batch: int,
    preset_name: str,
    lambda_k: float | None,
    warmup: int,
    steps: int,
    device_name: str,
    threads: int | None,
    keep_freed: bool,
) -> dict[str, Any]:
    """One cell, in the current (fresh) process: explain ``batch`` copies of the image."""
    from rdex.images import resolve_image
    from rdex.methods import CartoonX

    if threads:
        torch.set_num_threads(threads)
    if keep_freed:
        from rdex.inference import keep_freed_memory

        keep_freed_memory()
    device = torch.device(device_name)
    if isinstance(model, str):
        from rdex.models import load_classifier

        model = load_classifier(model, weights=weights)
    model = model.to(device)
    _, img = resolve_image(image, size=size)
    x = img.unsqueeze(0).expand(batch, -1, -1, -1).contiguous().to(device)
    # Lazy imports and one-off allocations (wavelets, folding) at a small size first, so that the
    # baseline is the process before the explanation's own memory.
    small = min(size, 32)
    CartoonX(model, preset=preset_name, lambda_k=lambda_k, steps=1).explain(
        x[:1, :, :small, :small]
    )
    explainer = CartoonX(model, preset=preset_name, lambda_k=lambda_k, steps=warmup + steps)
    stamps: list[float] = []
    cpu_stamps: list[float] = []

    def stamp(_step: int, _masks: list[torch.Tensor]) -> None:
        _sync(device)
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())

    explainer.callback = stamp
    if device.type == "cuda":
        _sync(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        before = peak_memory_mb()
    load = os.getloadavg()[0]
    cpu0 = time.process_time()
    _sync(device)
    start = time.perf_counter()
    explainer.explain(x)
    _sync(device)
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else peak_memory_mb()
    )
    step_s = [b - a for a, b in zip(stamps[warmup - 1 : -1], stamps[warmup:], strict=True)]
    cpu_step_s = [
        b - a for a, b in zip(cpu_stamps[warmup - 1 : -1], cpu_stamps[warmup:], strict=True)
    ]
    return {
        "step_s": step_s,
        "cpu_step_s": cpu_step_s,
        "setup_and_warmup_s": stamps[warmup - 1] - start,
        "total_s": total,
        "cpu_s_per_step": cpu / (warmup + steps),
        "chunk": explainer._chunk_size(x, explainer.config.samples),
        "baseline_mb": before,
        "peak_mb": peak,
        "loadavg_1min": [load, os.getloadavg()[0]],
        "threads": torch.get_num_threads(),
    }


def _cell_child(args: tuple[Any, ...], out: Any) -> None:
    try:
        out.put(_measure_cell(*args))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which records it
        out.put(f"{type(exc).__name__}: {exc}")


def _run_cell_in_child(args: tuple[Any, ...], timeout: float | None) -> dict[str, Any] | str:
    """Run :func:`_measure_cell` in a spawned process; a dict, or the reason it failed."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_cell_child, args=(args, out), daemon=True)
    proc.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    value: dict[str, Any] | str | None = None
    try:
        while value is None:
            try:
                value = out.get(timeout=1.0)
            except queue_mod.Empty:
                if not proc.is_alive():
                    code = proc.exitcode
                    why = " (killed: out of memory?)" if code is not None and code < 0 else ""
                    value = f"the measuring process ended with exit code {code}{why}"
                elif deadline is not None and time.monotonic() > deadline:
                    value = f"took longer than {timeout:g} s; stopped"
    finally:
        if proc.is_alive() and not isinstance(value, dict):  # failed, timed out or interrupted
            proc.kill()
        proc.join()
    return value


def _predict(
    rows: list[dict[str, Any]], size: int, batch: int, key: str
) -> tuple[float, str] | None:
    """Predicted ``key`` (``extra_mb`` or ``step_s_median``) of a cell from the measured ones.

    At the same size from the measured smaller batches: on the line through the two largest (a
    part per image plus a fixed part), or in proportion to the images from one. Otherwise from
    the largest smaller size with no more images: in proportion to the images, and to the pixels
    raised to the exponent seen between that batch's last two sizes where that growth was worse
    than linear (never optimistic about pixels).
    """
    import math

    done = [r for r in rows if key in r]
    same = sorted((r for r in done if r["size"] == size and r["batch"] < batch), key=_batch_of)
    if len(same) >= 2:
        a, b = same[-2], same[-1]
        per_image = max(0.0, (b[key] - a[key]) / (b["batch"] - a["batch"]))
        return b[key] + per_image * (
            batch - b["batch"]
        ), f"{size} px x {a['batch']} and {b['batch']}"
    if same:
        return same[0][key] * batch / same[0]["batch"], f"{size} px x {same[0]['batch']}"
    below = [r for r in done if r["size"] < size and r["batch"] <= batch]
    if not below:
        return None
    ref = max(below, key=lambda r: (r["size"], r["batch"]))
    exponent = 1.0
    line = sorted((r for r in done if r["batch"] == ref["batch"]), key=lambda r: r["size"])
    if len(line) >= 2 and line[-1] is ref:
        prev = line[-2]
        if prev[key] > 0 and ref[key] > 0:
            seen = math.log(ref[key] / prev[key]) / math.log((ref["size"] / prev["size"]) ** 2)
            exponent = max(1.0, seen)
    value = ref[key] * ((size / ref["size"]) ** 2) ** exponent * batch / ref["batch"]
    return value, f"{ref['size']} px x {ref['batch']}"


def _batch_of(row: dict[str, Any]) -> int:
    return int(row["batch"])


def cost_benchmark(
    model: nn.Module | str,
    *,
    image: str = "chelsea",
    sizes: Sequence[int] = (128, 256, 512, 1024),
    batches: Sequence[int] = (1, 4, 16),
    preset_name: str | None = None,
    lambda_k: float | None = None,
    warmup: int = 1,
    steps: int = 2,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    max_memory_gb: float | None = 16.0,
    max_cell_s: float | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Seconds per step and peak memory of CartoonX over image sizes and batch sizes.

    Args:
        model: A classifier (pickled to each measuring process) or a name for
            :func:`rdex.models.load_classifier` (loaded there, as the CLI would).
        image: Bundled sample name or image file; a batch is copies of it (the cost of an image
            does not depend on its content: every image gets its own forward passes).
        sizes: Image sides in pixels, measured in increasing order.
        batches: Images explained together (``CartoonX(...).explain(x)``, ``x`` of ``B`` images).
        preset_name: Schedule; default the CLI's (:func:`cli_default_preset`). Its ``samples``
            (``L``) is what a step costs; its ``steps`` is replaced by ``warmup + steps``.
        lambda_k: Sparsity (default: CartoonX's).
        warmup: Steps run before the timed ones (at least 1).
        steps: Timed steps per cell.
        weights: State-dict file for a named model.
        device: Where the cells run (CPU or CUDA).
        threads: torch CPU threads of each measuring process (default: torch's).
        max_memory_gb: Skip cells whose predicted peak memory exceeds this (``None``: no bound).
        max_cell_s: Skip cells whose predicted run time exceeds this (``None``: no bound).
        log: Progress printer.

    Returns:
        A JSON-ready dict: ``settings`` and ``rows``, one per cell, or ``skipped`` / ``error``
        with the reason. A measured row has the timed steps' wall and process CPU seconds
        (``step_s``, ``cpu_step_s``; medians ``step_s_median``, per image ``image_step_s``,
        ``cpu_image_step_s``), ``time_vs_linear``, ``setup_and_warmup_s``, ``cpu_s_per_step``
        (CPU time of the whole explanation, set-up included, per step), ``chunk`` (obfuscations
        per forward pass), ``baseline_mb``, ``peak_mb``, ``extra_mb`` and the load averages.
    """
    say = log or (lambda _msg: None)
    if warmup < 1 or steps < 1:
        raise ValueError("warmup and steps must be at least 1")
    if any(s < 1 for s in sizes) or any(b < 1 for b in batches):
        raise ValueError("sizes and batches must be positive")
    device = torch.device(device)
    name = preset_name or cli_default_preset()
    from rdex.config import preset
    from rdex.inference import freed_memory_kept

    config = preset(name)
    if isinstance(model, nn.Module):
        model = model.cpu()
    rows: list[dict[str, Any]] = []
    limit_mb = None if max_memory_gb is None else max_memory_gb * 1024
    baseline = 0.0
    for size in sorted(set(sizes)):
        for batch in sorted(set(batches)):
            row: dict[str, Any] = {"size": size, "batch": batch}
            mem = _predict(rows, size, batch, "extra_mb")
            tim = _predict(rows, size, batch, "step_s_median")
            if mem is not None:
                row["predicted_peak_mb"] = baseline + mem[0]
            if tim is not None:
                row["predicted_total_s"] = tim[0] * (warmup + steps)
            if limit_mb is not None and mem is not None and baseline + mem[0] > limit_mb:
                row["skipped"] = (
                    f"predicted peak memory {(baseline + mem[0]) / 1024:.1f} GiB (from {mem[1]}) "
                    f"exceeds --max-memory-gb {max_memory_gb:g}"
                )
            elif (
                max_cell_s is not None and tim is not None and row["predicted_total_s"] > max_cell_s
            ):
                row["skipped"] = (
                    f"predicted {row['predicted_total_s']:.0f} s (from {tim[1]}) exceeds "
                    f"{max_cell_s:g} s per cell"
                )
            if "skipped" in row:
                say(f"{size} px x {batch}: skipped: {row['skipped']}")
                rows.append(row)
                continue
            say(f"{size} px x {batch}: measuring {warmup} + {steps} steps ...")
            args = (
                model, weights, image, size, batch, name, lambda_k, warmup, steps, str(device),
                threads, freed_memory_kept(),
            )  # fmt: skip
            value = _run_cell_in_child(args, timeout=None if max_cell_s is None else 3 * max_cell_s)
            if isinstance(value, str):
                row["error"] = value
                say(f"{size} px x {batch}: failed: {value}")
                rows.append(row)
                continue
            step = float(statistics.median(value["step_s"]))
            row.update(value)
            row["step_s_median"] = step
            row["image_step_s"] = step / batch
            row["cpu_image_step_s"] = float(statistics.median(value["cpu_step_s"])) / batch
            row["extra_mb"] = max(0.0, value["peak_mb"] - value["baseline_mb"])
            baseline = max(baseline, value["baseline_mb"])
            say(
                f"{size} px x {batch}: {step:.3f} s/step ({step / batch:.3f} s, "
                f"{row['cpu_image_step_s']:.3f} CPU s per image-step), "
                f"peak {value['peak_mb']:.0f} MiB (baseline {value['baseline_mb']:.0f}), "
                f"load {value['loadavg_1min'][0]:.1f}"
            )
            rows.append(row)
    first = next((r for r in rows if "image_step_s" in r), None)
    for r in rows:
        if first is not None and "image_step_s" in r:
            pixels = (r["size"] / first["size"]) ** 2
            # Time per image-step relative to the first cell, divided by the pixel ratio: 1 is
            # linear in pixels and images, above 1 worse than linear. Process CPU time: other
            # processes' load changes the wall time of a single-threaded cell, hardly its CPU time
            # (on CUDA the wall time: the host's CPU time is not the work).
            key = "cpu_image_step_s" if device.type == "cpu" else "image_step_s"
            r["time_vs_linear"] = r[key] / first[key] / pixels
    return {
        "settings": {
            "preset": name,
            "samples": config.samples,
            "preset_steps": config.steps,
            "warmup": warmup,
            "steps": steps,
            "image": image,
            "device": str(device),
            "threads": threads or torch.get_num_threads(),
            "max_memory_gb": max_memory_gb,
            "max_cell_s": max_cell_s,
            "memory_kind": "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "peak RSS of a fresh process (VmHWM)",
            "keep_freed_memory": freed_memory_kept(),
            "torch": torch.__version__,
        },
        "rows": rows,
    }


def write_batch_folder(folder: str | os.PathLike[str], *, count: int = 8, size: int = 128) -> Path:
    """``count`` images in ``folder``: the bundled samples, then their mirror images."""
    from rdex.images import SAMPLES, sample_image, save_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = SAMPLES[i % len(SAMPLES)]
        img = sample_image(name, size=size)
        if (i // len(SAMPLES)) % 2:
            img = img.flip(-1)
        save_image(img, folder / f"{i:03d}-{name}.png")
    return folder


def batch_cost(
    folder: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model: str = "efficientnet_lite0",
    weights: str | None = None,
    size: int = 128,
    steps: int = 20,
    workers: Sequence[int] = (1, 2),
    threads: int | None = None,
    device: str = "cpu",
    timeout_s: float = 3600.0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Wall time of ``rdex batch FOLDER`` run locally and with ``--ray`` on each worker count.

    Each run is the command a user types, in its own process, into a fresh output folder, with
    the CLI's default preset and ``--steps``: the wall time includes start-up, model loading and,
    for Ray, starting the runtime. Ray workers reserve one CPU each (one torch thread, Ray's
    default); the local run uses ``threads`` torch threads (default: torch's).

    Returns:
        A JSON-ready dict: ``settings`` and ``runs`` (``local``, ``ray-1``, ...), each with the
        command, wall seconds, images per second, the exit code and the speed-up over local.
    """
    say = log or (lambda _msg: None)
    images = sorted(p for p in Path(folder).iterdir() if p.is_file())
    if not images:
        raise ValueError(f"no images in {folder}")
    out_dir = Path(out_dir)
    import rdex

    src = str(Path(rdex.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([src, os.getcwd(), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    base = [sys.executable, "-m", "rdex", "batch", str(folder), "--model", model]
    base += ["--size", str(size), "--steps", str(steps), "--quiet", "--no-report"]
    if weights:
        base += ["--weights", weights]
    plans: list[tuple[str, list[str], dict[str, str]]] = []
    local_env = dict(env)
    if threads:
        local_env["OMP_NUM_THREADS"] = str(threads)
    plans.append(("local", ["--device", device], local_env))
    for n in workers:
        extra = ["--ray", "--workers", str(n), "--ray-cpus", str(n)]
        if device.startswith("cuda"):
            extra += ["--gpus-per-task", f"{1 / n:g}"]
        plans.append((f"ray-{n}", extra, env))
    runs: dict[str, Any] = {}
    for name, extra, run_env in plans:
        out = out_dir / name
        if out.exists():
            shutil.rmtree(out)
        cmd = [*base, "--out", str(out), *extra]
        say(f"batch {name}: {' '.join(cmd[1:])}")
        load = os.getloadavg()[0]
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, env=run_env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
            code, err = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            code, err = None, f"timed out after {timeout_s:g} s"
        wall = time.perf_counter() - start
        entry: dict[str, Any] = {
            "command": " ".join(["rdex", *cmd[3:]]),
            "wall_s": wall,
            "exit_code": code,
            "loadavg_1min": [load, os.getloadavg()[0]],
        }
        if code == 0:
            entry["images_per_s"] = len(images) / wall
        else:
            entry["error"] = (err or "").strip().splitlines()[-1:] or ["failed"]
        runs[name] = entry
        rate = (
            f", {entry['images_per_s']:.3f} images/s"
            if code == 0
            else f": failed {entry.get('error')}"
        )
        say(f"batch {name}: {wall:.1f} s{rate} (load {load:.1f})")
    local = runs["local"].get("wall_s") if runs["local"]["exit_code"] == 0 else None
    for entry in runs.values():
        if local and entry["exit_code"] == 0:
            entry["speedup_vs_local"] = local / entry["wall_s"]
    return {
        "settings": {
            "images": len(images),
            "size": size,
            "steps": steps,
            "preset": cli_default_preset(),
            "model": model,
            "threads_local": threads or torch.get_num_threads(),
            "threads_per_ray_worker": 1,
            "cpu_count": os.cpu_count(),
        },
        "runs": runs,
    }


def _mib(value: float) -> str:
    return f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:.0f} MiB"


def cost_markdown(result: dict[str, Any]) -> str:
    """The cost benchmark's result (``cost`` and optional ``batch`` parts) as Markdown tables."""
    lines: list[str] = []
    cost = result.get("cost")
    if cost is not None:
        s = cost["settings"]
        lines += [
            f"CartoonX, preset `{s['preset']}` (L = {s['samples']}), {s['device']}, "
            f"{s['threads']} thread(s), {s['warmup']} warm-up + {s['steps']} timed steps per "
            f"cell; memory: {s['memory_kind']}.",
            "",
            "| size | images | s / step | s / image-step | CPU s / image-step | vs linear (CPU) | "
            "peak memory | above baseline | obfuscations per pass | load |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in cost["rows"]:
            head = f"| {r['size']} | {r['batch']} |"
            if "skipped" in r or "error" in r:
                why = r.get("skipped") or f"failed: {r['error']}"
                lines.append(f"{head} — | — | — | — | — | — | — | {why} |")
                continue
            lines.append(
                f"{head} {r['step_s_median']:.3f} | {r['image_step_s']:.3f} | "
                f"{r['cpu_image_step_s']:.3f} | {r['time_vs_linear']:.2f} | "
                f"{_mib(r['peak_mb'])} | {_mib(r['extra_mb'])} | "
                f"{r['chunk']} | {r['loadavg_1min'][0]:.1f} |"
            )
        lines.append("")
    batch = result.get("batch")
    if batch is not None:
        s = batch["settings"]
        lines += [
            f"`rdex batch` of {s['images']} images at {s['size']} px, `--steps {s['steps']}` "
            f"(preset `{s['preset']}`), wall time of the whole command; local: "
            f"{s['threads_local']} thread(s), Ray: one CPU (thread) per worker.",
            "",
            "| run | wall s | images / s | vs local | load |",
            "|---|---|---|---|---|",
        ]
        for name, e in batch["runs"].items():
            if e["exit_code"] != 0:
                lines.append(f"| {name} | — | — | — | failed: {e.get('error')} |")
                continue
            lines.append(
                f"| {name} | {e['wall_s']:.1f} | {e['images_per_s']:.3f} | "
                f"{e.get('speedup_vs_local', float('nan')):.2f}x | {e['loadavg_1min'][0]:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)
