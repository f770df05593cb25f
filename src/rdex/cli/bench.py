"""``rdex bench``: speed of rdex against a plain Algorithm 1, and CartoonX time to quality."""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import Any

import torch

from rdex.cli._common import add_model_args, pick_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark rdex against a plain Algorithm 1 loop; time-to-quality of schedules",
        description="speed: per-step time of a plain implementation of Algorithm 1 and of rdex "
        "at identical hyperparameters, interleaved in one process (ratio, images/s, peak memory). "
        "quality: CartoonX under the paper schedule (two seeds) and faster presets, every "
        "snapshot scored by one evaluator (fixed seed, --eval-samples noise draws): objective "
        "vs wall-clock, SSIM and retained-set overlap to the paper-schedule explanation. "
        "repeat: several seeds of each --schedules preset on the images of --records (run records "
        "of the paper schedule, .npz + .json), scored against them: two-seed SSIM, objective over "
        "the best found, rate-distortion, SSIM to the paper schedule where it converged. "
        "cost: seconds per step and peak memory of the default preset over --sizes x --batches, "
        "and rdex batch locally and on Ray workers. Writes bench-MODE.json plus .png or .md "
        "to --out.",
    )
    p.add_argument("--mode", choices=("speed", "quality", "repeat", "cost", "all"), default="speed")
    p.add_argument("--image", default="chelsea", help="bundled sample name or image file")
    p.add_argument("--size", type=int, default=256, help="image side (default 256)")
    p.add_argument("--lambda-k", type=float, default=20.0, help="sparsity (default 20)")
    p.add_argument("--out", default="rdex-out/bench", help="output folder")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    g = p.add_argument_group("speed mode")
    g.add_argument(
        "--samples", type=int, default=64, help="noise samples L (default 64, the paper's)"
    )
    g.add_argument("--steps", type=int, default=5, help="steps per timed run (default 5)")
    g.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    g.add_argument("--batch", type=int, default=1, help="images per rdex loop (default 1)")
    g.add_argument(
        "--variants",
        default="reference,rdex",
        help="comma-separated: reference, rdex, rdex-nchw, rdex-nofold, rdex-onepass (first = baseline)",
    )
    g.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    q = p.add_argument_group("quality mode")
    q.add_argument(
        "--schedules",
        default="fast,preview",
        help="presets compared with the paper schedule (default fast,preview)",
    )
    q.add_argument(
        "--steps-cap",
        type=int,
        default=None,
        help="cap every schedule's steps (smoke tests only: the paper schedule is then not the paper's)",
    )
    q.add_argument(
        "--eval-samples", type=int, default=256, help="evaluator noise draws (default 256)"
    )
    q.add_argument(
        "--runs",
        default=None,
        help="score recorded runs in this folder instead of running: *.pt from "
        "benchmarks/studies/quality_runs.py (loaded with weights_only=True: tensors and plain "
        "data only, never code; the reference is paper-s0, the floor paper-s1), or run records "
        "(*.json + *.npz, e.g. benchmarks/results/paper-128) of --image (the reference is its "
        "paper-schedule record of the lowest seed)",
    )
    r = p.add_argument_group("repeat mode")
    r.add_argument(
        "--records",
        action="append",
        default=None,
        help="folder of run records (NAME.json + NAME.npz; repeatable): the paper-schedule "
        "references and any earlier runs, which are scored and not run again (default "
        "benchmarks/results/paper-128 when it exists); images, size and lambda_k come from them",
    )
    r.add_argument("--seeds", default="0,1,2", help="seeds per schedule (default 0,1,2)")
    r.add_argument(
        "--images", default=None, help="comma-separated images (default: those of --records)"
    )
    c = p.add_argument_group("cost mode (not in 'all')")
    c.add_argument("--sizes", default="128,256,512,1024", help="image sides (default 128,...,1024)")
    c.add_argument("--batches", default="1,4,16", help="images explained together (default 1,4,16)")
    c.add_argument("--timed-steps", type=int, default=2, help="timed steps after 1 warm-up (2)")
    c.add_argument(
        "--max-memory-gb", type=float, default=8.0, help="skip cells predicted above (default 8)"
    )
    c.add_argument(
        "--max-cell-seconds", type=float, default=None, help="skip cells predicted above"
    )
    c.add_argument(
        "--ray-workers", default="1,2", help="workers of the rdex batch --ray runs ('' for none)"
    )
    c.add_argument("--batch-images", type=int, default=8, help="images of the batch runs (8)")
    c.add_argument("--batch-size-px", type=int, default=128, help="their side (default 128)")
    c.add_argument("--batch-steps", type=int, default=20, help="their --steps (default 20)")
    add_model_args(p)
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from rdex.io import atomic_write_text, json_dumps

    atomic_write_text(path, json_dumps(data, indent=1, default=str))


def _load_run(path: Path) -> dict[str, Any]:
    """A run record of ``benchmarks/studies/quality_runs.py``, loaded without unpickling code.

    ``weights_only=True`` lets torch rebuild only tensors and plain containers; a file that asks
    for anything else (a crafted pickle that would run a command) is refused, never executed.
    """
    from rdex.io import read_regular_file

    data = read_regular_file(path, limit=4 * 2**30)
    try:
        record = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path}: not a run record rdex can load safely ({reason[:200]})"
        ) from None
    if not isinstance(record, dict) or "config" not in record or "masks" not in record:
        raise ValueError(f"{path}: not a run record (a dict with config and masks)")
    return record


def _records_as_runs(folder: Path, image: str) -> tuple[dict[str, dict[str, Any]], str, str | None]:
    """The run records (``.npz`` + ``.json``) of one image in ``folder`` as the time-to-quality
    scorer's runs, with the paper-schedule record of the lowest seed as the reference and the
    next one as the floor. The image is ``image`` if the folder has runs of it, else the image of
    its first paper-schedule record."""
    from rdex.bench.repeat import load_records

    records = load_records(folder)
    if not records:
        raise FileNotFoundError(f"no run records (*.pt, or *.json with *.npz) in {folder}")
    if not any(r.image == image for r in records):
        image = next((r.image for r in records if r.schedule == "paper"), records[0].image)
    mine = sorted((r for r in records if r.image == image), key=lambda r: (r.schedule, r.seed))
    papers = [r.name for r in mine if r.schedule == "paper"]
    if not papers:
        raise ValueError(f"no paper-schedule record of {image} in {folder} to compare with")
    runs = {r.name: r.as_run() for r in mine}
    return runs, papers[0], papers[1] if len(papers) > 1 else None


def _machine(device: torch.device) -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _int_list(args: argparse.Namespace, name: str) -> list[int]:
    text = getattr(args, name)
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        option = "--" + name.replace("_", "-")
        raise ValueError(f"{option} takes comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from rdex import bench
    from rdex.images import resolve_image
    from rdex.models import load_classifier
    from rdex.rde import PRESETS, preset

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("samples", "steps", "repeats", "batch", "eval_samples", "size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    device = pick_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_classifier(args.model, weights=args.weights).to(device)
    image_name, image = resolve_image(args.image, size=args.size)
    x = image.unsqueeze(0).to(device)
    machine = _machine(device)

    if args.mode in ("speed", "all"):
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        for v in variants:
            if v not in bench.SPEED_VARIANTS:
                raise ValueError(
                    f"unknown variant {v!r}; choose from {', '.join(bench.SPEED_VARIANTS)}"
                )
        result = bench.speed_benchmark(
            model,
            x.expand(args.batch, -1, -1, -1).contiguous(),
            samples=args.samples,
            steps=args.steps,
            repeats=args.repeats,
            lambda_k=args.lambda_k,
            variants=variants,
            memory=not args.no_memory,
            log=_say,
        )
        result.update(machine=machine, image=image_name, model=args.model)
        _write_json(out / "bench-speed.json", result)
        bench.plot_speed(result, out / "bench-speed.png")
        base = variants[0]
        for v, e in result["variants"].items():
            mem = f", peak {e['peak_memory_mb']:.0f} MiB" if "peak_memory_mb" in e else ""
            print(
                f"{v}: {e['step_s_median']:.3f} s/step (min {e['step_s_min']:.3f}), "
                f"x{e[f'speedup_vs_{base}_median']:.2f} vs {base}, "
                f"{e['images_per_s'] * 3600:.2f} images/h at {result['settings']['full_steps']} steps{mem}"
            )
        print(f"-> {out / 'bench-speed.json'}, {out / 'bench-speed.png'}")

    if args.mode == "repeat":
        _repeat(args, model, device)

    if args.mode in ("quality", "all"):
        records: dict[str, dict[str, Any]] = {}
        reference: str = "paper-s0"
        floor: str | None = "paper-s1"
        if args.runs:
            folder = Path(args.runs)
            files = sorted(folder.glob("*.pt"))
            if files:
                records = {f.stem: _load_run(f) for f in files}
            else:
                records, reference, floor = _records_as_runs(folder, args.image)
            first = next(iter(records.values()))
            if "size" in first and "image" in first:
                image_name, image = resolve_image(first["image"], size=first["size"])
                x = image.unsqueeze(0).to(device)
            lambda_k = float(first["config"]["lambda_k"])
        else:
            schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
            for s in schedules:
                if s not in PRESETS:
                    raise ValueError(f"unknown preset {s!r}; choose from {', '.join(PRESETS)}")
            lambda_k = args.lambda_k
            plan = [(f"paper-s{seed}", "paper", seed) for seed in (0, 1)]
            plan += [(f"{s}-s0", s, 0) for s in schedules if s != "paper"]
            for name, preset_name, seed in plan:
                overrides: dict[str, Any] = {"lambda_k": lambda_k, "seed": seed}
                config = preset(preset_name, **overrides)
                if args.steps_cap:
                    config = config.replace(steps=min(config.steps, args.steps_cap))
                _say(
                    f"running {name}: steps {config.steps}, samples {config.samples}, lr {config.lr:g} ({config.schedule})"
                )
                records[name] = bench.run_schedule(model, x, config, meta={"name": name})
        evaluator = bench.ObjectiveEvaluator(model, x, lambda_k=lambda_k, samples=args.eval_samples)
        scores = bench.score_runs(records, evaluator, reference=reference, floor=floor, log=_say)
        scores.update(machine=machine, image=image_name, size=list(x.shape[-2:]), model=args.model)
        _write_json(out / "bench-quality.json", scores)
        bench.plot_quality(
            scores,
            out / "bench-quality.png",
            title=f"{image_name} {x.shape[-1]}px, {args.model}, {machine['device']}",
        )
        print(f"-> {out / 'bench-quality.json'}, {out / 'bench-quality.png'}")

    if args.mode == "cost":
        from rdex.bench import cost

        ints = {k: _int_list(args, k) for k in ("sizes", "batches", "ray_workers")}
        table: dict[str, Any] = {"machine": machine, "model": args.model}
        table["cost"] = cost.cost_benchmark(
            args.model, image=args.image, sizes=ints["sizes"], batches=ints["batches"],
            steps=args.timed_steps, lambda_k=args.lambda_k, weights=args.weights, device=device,
            threads=args.threads, max_memory_gb=args.max_memory_gb,
            max_cell_s=args.max_cell_seconds, log=_say,
        )  # fmt: skip
        if ints["ray_workers"]:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="rdex-bench-cost-") as tmp:
                folder = cost.write_batch_folder(Path(tmp) / "images", count=args.batch_images, size=args.batch_size_px)  # fmt: skip
                table["batch"] = cost.batch_cost(
                    folder, Path(tmp) / "runs", model=args.model, weights=args.weights,
                    size=args.batch_size_px, steps=args.batch_steps, workers=ints["ray_workers"],
                    threads=args.threads, device=str(device), log=_say,
                )  # fmt: skip
        _write_json(out / "bench-cost.json", table)
        from rdex.io import atomic_write_text

        atomic_write_text(out / "bench-cost.md", cost.cost_markdown(table))
        print(cost.cost_markdown(table))
        print(f"-> {out / 'bench-cost.json'}, {out / 'bench-cost.md'}")
    return 0


def _repeat(args: argparse.Namespace, model: torch.nn.Module, device: torch.device) -> None:
    """``--mode repeat``: run the seeds of each schedule that the records lack, then score all."""
    from rdex.bench.repeat import (
        REPEAT_IMAGES,
        load_records,
        plot_repeatability,
        plot_seed_curves,
        repeat_table,
        run_record,
        score_repeatability,
    )
    from rdex.rde import PRESETS, preset

    folders = args.records or (
        ["benchmarks/results/paper-128"] if Path("benchmarks/results/paper-128").is_dir() else []
    )
    records = [r for folder in folders for r in load_records(folder)]
    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    for s in schedules:
        if s not in PRESETS:
            raise ValueError(f"unknown preset {s!r}; choose from {', '.join(PRESETS)}")
    try:
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    images = (
        [v.strip() for v in args.images.split(",") if v.strip()]
        if args.images
        else sorted({r.image for r in records}) or list(REPEAT_IMAGES)
    )
    have = {(r.schedule, r.image, r.seed) for r in records}
    out = Path(args.out)
    for image in images:
        known = [r for r in records if r.image == image]
        size = known[0].size if known else args.size
        lambda_k = float(known[0].config["lambda_k"]) if known else args.lambda_k
        for schedule in schedules:
            for seed in seeds:
                if (schedule, image, seed) in have:
                    continue
                config = preset(schedule, lambda_k=lambda_k, seed=seed)
                if args.steps_cap:
                    config = config.replace(steps=min(config.steps, args.steps_cap))
                _say(f"running {schedule} on {image} ({size} px), seed {seed}")
                record = run_record(model, image, size, config, schedule=schedule, device=device)
                record.save(out / "records")
                records.append(record)
    records = [r for r in records if r.image in images]
    scores = score_repeatability(
        records, model, eval_samples=args.eval_samples, device=device, log=_say
    )
    _write_json(out / "bench-repeat.json", scores)
    plot_repeatability(records, scores, out / "bench-repeat.png")
    plot_seed_curves(scores, out / "bench-repeat-curve.png")
    from rdex.io import atomic_write_text

    atomic_write_text(out / "bench-repeat.md", repeat_table(scores))
    for name, s in scores["schedules"].items():
        print(
            f"{name}: {s['evaluations']} evaluations, {s['images']} images; seed SSIM min "
            f"{_fmt(s['seed_ssim_min'])}, objective x{_fmt(s['objective_ratio_max'])}, "
            f"rate-distortion x{_fmt(s['rd_soft_ratio_max'])} (binary "
            f"x{_fmt(s['rd_ratio_max'])}), SSIM to paper min "
            f"{_fmt(s['paper_ssim_min'])}"
        )
    print(f"-> {out / 'bench-repeat.json'}, {out / 'bench-repeat.md'}, {out / 'bench-repeat.png'}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
