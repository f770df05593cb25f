"""SSIM between the CartoonX pictures of any run records of one image, and their objectives.

``rdex bench --mode repeat`` compares the seeds of one schedule; this compares any records (the
same seed run with another thread count, say) with one common evaluator (256 fixed draws).

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
    a = p.parse_args()
    torch.set_num_threads(1)
    recs = [RunRecord.load(path) for path in a.records]
    first = recs[0]
    for r in recs[1:]:
        same = (r.image, r.size, r.target, r.config["lambda_k"])
        if same != (first.image, first.size, first.target, first.config["lambda_k"]):
            p.error(f"{r.name} is not of {first.name}'s image, size, target and lambda_k")
    x = resolve_image(first.image, size=first.size)[1].unsqueeze(0)
    evaluator = ObjectiveEvaluator(
        load_classifier(), x, lambda_k=first.config["lambda_k"], target=first.target,
        samples=a.eval_samples,
    )  # fmt: skip
    pictures = {}
    for r in recs:
        mask = [torch.from_numpy(b) for b in r.final]
        pictures[r.name] = evaluator.picture(mask)
        print(f"{r.name}: seed {r.seed}, threads {r.meta.get('threads')}, "
              f"objective {evaluator(mask):.4f}")  # fmt: skip
    for one, two in itertools.combinations(pictures, 2):
        print(f"SSIM {one} / {two}: {ssim(pictures[one], pictures[two]):.3f}")


if __name__ == "__main__":
    main()
