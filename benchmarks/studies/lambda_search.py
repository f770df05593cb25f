"""Cost and accuracy of the lambda_k search (``rdex.calibrate``) on the bundled images.

For every image and target (keep-probability 0.9, sparsity 0.02) the search runs with its
defaults, starting from the method's default lambda_k; its first run is therefore the one run a
user without a target gets. Written per case: the trace, the model evaluations of the search
against those of the first run (counted twice: from the trace, and by a counter in front of the
model, which also sees the BatchNorm-folding checks), the wall time, and how far the chosen run
lands from the target (measured as the search measures it). The machine's load average is
recorded before and after: the wall times depend on it, the counts and values do not.

    OMP_NUM_THREADS=1 python benchmarks/studies/lambda_search.py \
        --out benchmarks/studies/lambda_search.json

On a busy machine, images can run in separate processes (one thread each) and be merged:

    OMP_NUM_THREADS=1 python benchmarks/studies/lambda_search.py --images chelsea,coffee --out a.json
    OMP_NUM_THREADS=1 python benchmarks/studies/lambda_search.py --images astronaut,rocket --out b.json
    python benchmarks/studies/lambda_search.py --merge a.json b.json \
        --out benchmarks/studies/lambda_search.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rdex.calibrate import calibrate
from rdex.images import load_batch
from rdex.methods import METHODS
from rdex.models import DEFAULT_MODEL, load_classifier
from rdex.rde import preset

#: Images through the model, across copies of the counting wrapper (fold_batchnorm deep-copies the
#: model, and a module-level counter is shared by every copy).
_SEEN = [0]


class Counting(nn.Module):
    """The model, counting the images it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        _SEEN[0] += int(x.shape[0])
        return self.model(x)


def table(record: dict[str, Any]) -> str:
    """The cases of a study as a Markdown table (the one in docs/how-to/choose-lambda.md)."""
    lines = [
        "| image | target | default lambda_k: value | chosen lambda_k: value | error | runs "
        "| evaluations (x one run) | wall s (one run) | stop |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in record["cases"]:
        goal = "keep-probability" if c["goal"] == "keep_probability" else "sparsity"
        lines.append(
            f"| {c['image']} | {goal} {c['target']:g} ± {c['tolerance']:g} "
            f"| {c['default_lambda_k']:g}: {c['value_at_default']:.4f} "
            f"| {c['lambda_k']:.3g}: {c['value']:.4f} | {c['error']:+.4f} | {c['runs']} "
            f"| {c['evaluations_search']} ({c['evaluations_ratio']:.2f}x) "
            f"| {c['wall_s_search']:.0f} ({c['wall_s_one_run']:.0f}) | {c['stop']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="chelsea,coffee,astronaut,rocket")
    p.add_argument("--method", default="cartoonx", choices=sorted(METHODS))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--preset", default="preview")
    p.add_argument(
        "--steps", type=int, default=None,
        help="steps per run instead of the preset's (the committed study: preview at 100 steps)",
    )  # fmt: skip
    p.add_argument("--keep-probability", type=float, default=0.9)
    p.add_argument("--sparsity", type=float, default=0.02)
    p.add_argument("--max-runs", type=int, default=8)
    p.add_argument(
        "--warm-start",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="start runs from the dense end of the bracket (default: every run from ones)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--merge", type=Path, nargs="+", help="merge these outputs into --out")
    p.add_argument("--table", action="store_true", help="print --out as a Markdown table")
    a = p.parse_args()
    if a.table:
        print(table(json.loads(a.out.read_text())))
        return
    if a.merge:
        parts = [json.loads(path.read_text()) for path in a.merge]
        merged = dict(parts[0])
        merged["command"] = [part["command"] for part in parts]
        for key in ("load_average_before", "load_average_after"):
            merged[key] = [part[key] for part in parts]
        merged["processes"] = len(parts)
        merged["cases"] = [case for part in parts for case in part["cases"]]
        a.out.write_text(json.dumps(merged, indent=2) + "\n")
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    names, images = load_batch(a.images.split(","), size=a.size)
    model = Counting(load_classifier(DEFAULT_MODEL))
    cls = METHODS[a.method]
    config = preset(a.preset, lambda_k=cls.default_lambda_k, steps=a.steps)
    explainer = cls(model, config=config)
    goals = {"keep_probability": a.keep_probability, "sparsity": a.sparsity}
    cases: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for name, x in zip(names, images, strict=True):
        for goal, value in goals.items():
            _SEEN[0] = 0
            began = time.perf_counter()
            [cal] = calibrate(
                explainer,
                x[None],
                max_runs=a.max_runs,
                warm_start=a.warm_start,
                **{goal: value},
            )
            wall = time.perf_counter() - began
            first = cal.runs[0]
            case = {
                "image": name,
                "goal": goal,
                "target": value,
                "tolerance": cal.tolerance,
                "default_lambda_k": config.lambda_k,
                "value_at_default": first.value,
                "lambda_k": cal.lambda_k,
                "value": cal.value,
                "error": cal.value - value,
                "converged": cal.converged,
                "stop": cal.stop,
                "runs": len(cal.runs),
                "evaluations_one_run": first.model_evaluations,
                "evaluations_search": cal.model_evaluations,
                "evaluations_ratio": cal.model_evaluations / first.model_evaluations,
                "evaluations_counted": _SEEN[0],
                "wall_s_one_run": first.runtime_s,
                "wall_s_search": wall,
                "trace": [r.to_dict() for r in cal.runs],
            }
            cases.append(case)
            print(
                f"{name} {goal}={value:g}: lambda_k {cal.lambda_k:.4g} -> {cal.value:.4f} "
                f"(default {config.lambda_k:g} -> {first.value:.4f}), {len(cal.runs)} runs, "
                f"{case['evaluations_ratio']:.2f}x evaluations, {wall:.0f} s ({cal.stop})",
                flush=True,
            )
    record = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/studies/lambda_search.py "
        f"--images {a.images} --method {a.method} --size {a.size} --preset {a.preset} "
        f"{'' if a.steps is None else f'--steps {a.steps} '}--keep-probability {a.keep_probability} --sparsity {a.sparsity} "
        f"--max-runs {a.max_runs}{' --warm-start' if a.warm_start else ' --no-warm-start'} --out {a.out}",
        "model": DEFAULT_MODEL,
        "method": a.method,
        "size": a.size,
        "preset": a.preset,
        "warm_start": a.warm_start,
        "config": {k: v for k, v in vars(config).items()},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cases": cases,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
