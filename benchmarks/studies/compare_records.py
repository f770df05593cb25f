"""SSIM between the CartoonX pictures of any run records of one image, and their objectives.

``rdex bench --mode repeat`` compares the seeds of one schedule; this compares any records (the
same seed run with another thread count, say) with one common evaluator (256 fixed draws).
With ``--line K`` it also evaluates the objective at ``K`` evenly spaced points on the straight
line between the masks of every pair: if it stays level, the objective cannot tell the two
pictures apart (the seeds of a schedule then differ along a flat valley, not between two basins).
An argument ``A.json+B.json`` stands for the mean of those runs' final masks (a mean over seeds):
two such means of disjoint seeds show how repeatable the mean is; with ``--median`` it stands
for their entry-wise median instead (what ``rdex.seeds`` does). ``--rd`` adds each one's
rate-distortion area (the benchmark's faithfulness measure).

    python benchmarks/studies/compare_records.py \
        benchmarks/studies/results/repeat-256/records/fast-chelsea-s0.json \
        benchmarks/studies/results/repeat-256/records/fast-chelsea-s1.json \
        benchmarks/studies/results/repeat-256/threads/fast-threads2-chelsea-s0.json
"""

from __future__ import annotations

import argparse
import itertools

import torch

from rdex.bench.quality import ObjectiveEvaluator
from rdex.bench.repeat import RunRecord
from rdex.images import resolve_image
from rdex.metrics.similarity import ssim
from rdex.models import load_classifier


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("records", nargs="+")
    p.add_argument("--eval-samples", type=int, default=256)
    p.add_argument("--line", type=int, default=0, help="objective at K points between each pair")
    p.add_argument("--median", action="store_true", help="A.json+B.json: median, not mean")
    p.add_argument("--rd", action="store_true", help="also the rate-distortion area of each")
    a = p.parse_args()
    torch.set_num_threads(1)
    groups = [[RunRecord.load(path) for path in arg.split("+")] for arg in a.records]
    first = groups[0][0]
    for r in (r for group in groups for r in group):
        same = (r.image, r.size, r.target, r.config["lambda_k"])
        if same != (first.image, first.size, first.target, first.config["lambda_k"]):
            p.error(f"{r.name} is not of {first.name}'s image, size, target and lambda_k")
    x = resolve_image(first.image, size=first.size)[1].unsqueeze(0)
    evaluator = ObjectiveEvaluator(
        load_classifier(), x, lambda_k=first.config["lambda_k"], target=first.target,
        samples=a.eval_samples,
    )  # fmt: skip
    pictures, masks, objectives = {}, {}, {}
    for group in groups:
        name = "+".join(r.name for r in group)
        finals = [[torch.from_numpy(b) for b in r.final] for r in group]
        stacked = [torch.stack(bands) for bands in zip(*finals, strict=True)]
        masks[name] = [b.median(dim=0).values if a.median else b.mean(dim=0) for b in stacked]
        pictures[name] = evaluator.picture(masks[name])
        objectives[name] = evaluator(masks[name])
        seeds = ",".join(str(r.seed) for r in group)
        threads = ",".join(str(r.meta.get("threads")) for r in group)
        rd = (
            f", rate-distortion area {evaluator.rate_distortion_auc(masks[name]):.4f}"
            if a.rd
            else ""
        )
        print(f"{name}: seed {seeds}, threads {threads}, objective {objectives[name]:.4f}{rd}")
    for one, two in itertools.combinations(pictures, 2):
        print(f"SSIM {one} / {two}: {ssim(pictures[one], pictures[two]):.3f}")
        if a.line > 0:
            ts = [k / (a.line + 1) for k in range(1, a.line + 1)]
            pairs = list(zip(masks[one], masks[two], strict=True))
            line = [evaluator([(1 - t) * m1 + t * m2 for m1, m2 in pairs]) for t in ts]
            f1, f2 = objectives[one], objectives[two]
            # Above the chord: how much higher than the straight line between the two ends.
            above = max(v - ((1 - t) * f1 + t * f2) for t, v in zip(ts, line, strict=True))
            points = ", ".join(f"{t:.2f}: {v:.4f}" for t, v in zip(ts, line, strict=True))
            print(f"  line {points}; ends {f1:.4f} and {f2:.4f} ({max(f1, f2) / min(f1, f2):.3f}x), "
                  f"at most {100 * above / min(f1, f2):+.1f} % above the chord, "
                  f"lowest / lower end {min(line) / min(f1, f2):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
