"""Binary against soft rate-distortion curves of committed run records.

The repeatability study judges faithfulness by the area under a rate-distortion curve over the
top 0 to 10 % of a mask's entries. The binary curve keeps those entries whole, so beyond a mask's
support it adds entries the mask deleted (value 0) in the tie-break's order, and near the edge of
the support entries the mask kept at 0.001 count as much as those at 1. The soft curve keeps
them at their mask values. This prints both curves for every record given, with the mask's
support, so that the two can be compared on masks of one objective:

    python benchmarks/studies/rd_curves.py \\
        benchmarks/studies/results/repeat-128/records/thorough-rocket-s{0,1}.json \\
        benchmarks/results/paper-128/paper-rocket-s{0,1}.json

All records must be of one image at one size.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rdex.bench.quality import RD_FRACTIONS, ObjectiveEvaluator
from rdex.bench.repeat import RunRecord
from rdex.images import resolve_image
from rdex.metrics import rate_distortion_curve
from rdex.models import load_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", help="run record .json files of one image")
    parser.add_argument("--samples", type=int, default=64, help="noise draws per fraction")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recs = [RunRecord.load(p) for p in args.records]
    if len({(r.image, r.size) for r in recs}) != 1:
        parser.error("the records must be of one image at one size")
    model = load_classifier().eval()
    _, picture = resolve_image(recs[0].image, size=recs[0].size)
    x = picture.unsqueeze(0)
    # The evaluator of the study, for its representation and its way of laying out the mask.
    ev = ObjectiveEvaluator(
        model, x, lambda_k=float(recs[0].config["lambda_k"]), target=recs[0].target, samples=1
    )
    print(f"# {recs[0].image} at {recs[0].size} px; fractions {list(RD_FRACTIONS)}")
    for r in recs:
        masks = ev._masks([torch.from_numpy(b) for b in r.final])
        flat = np.concatenate([b.ravel() for b in r.final])
        support = (flat > 0).mean()
        print(
            f"{r.name}: support {100 * support:.2f} % (> 0.01: {100 * (flat > 0.01).mean():.2f} %)"
        )
        for soft in (False, True):
            curve = rate_distortion_curve(
                model, x, masks, representation=ev.representation, target=ev.target,
                fractions=RD_FRACTIONS, samples=args.samples, seed=ev.seed, soft=soft,
            )  # fmt: skip
            values = " ".join(f"{float(v):.3f}" for v in curve.values[0])
            kind = "soft  " if soft else "binary"
            print(f"  {kind} area {float(curve.area[0]):.4f}: {values}", flush=True)


if __name__ == "__main__":
    main()
