"""Schedule search: one CartoonX run per call, its final mask scored by the common evaluator.

Exploration for the performance issue (chelsea at 128x128 by default, one thread, lambda_k 20):
prints one JSON line (objective by ``rdex.bench.ObjectiveEvaluator``, model evaluations, runtime)
and keeps the mask under ``--keep``. Two levers not in rdex are prototyped here, both measured
worse and left out: ``--antithetic`` (noise drawn in mirrored pairs about the partition mean)
and ``--beta1`` (Adam's momentum). Results of the search: ``benchmarks/studies/results/schedule-search-128/``.

    python benchmarks/studies/schedule_search.py --name fast-s0 --preset fast
    python benchmarks/studies/schedule_search.py --name c01-N200-L8 --preset fast --lr 0.1 --steps 200 --samples 8 --antithetic
"""

import argparse
import json
import os
import time

import torch
from quality_runs import add_schedule_args, schedule_config  # this folder, run as a script

import rdex.obfuscations as ob
from rdex.bench import ObjectiveEvaluator
from rdex.images import sample_image
from rdex.methods import CartoonX
from rdex.models import load_classifier

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
add_schedule_args(p, preset="fast", size=128)
p.add_argument("--antithetic", action="store_true")
p.add_argument("--beta1", type=float)
p.add_argument("--beta2", type=float)
p.add_argument("--extra", default="{}", help="more RDEConfig fields as JSON")
p.add_argument("--keep", default="schedule-search-masks", help="folder for the final masks")
a = p.parse_args()
if not a.name:
    p.error("--name is required")
torch.set_num_threads(1)
if a.antithetic:
    orig = ob._Adaptive.sample

    def sample(self, state, n, gens):
        half = orig(self, state, (n + 1) // 2, gens)
        out = []
        for v, (mean, _std) in zip(half, state.params, strict=True):
            scale = (-1,) + (1,) * (v.dim() - 1)
            mirror = 2 * mean.view(scale) - v
            out.append(torch.cat([v, mirror], 1)[:, :n])
        return out

    ob._Adaptive.sample = sample
if a.beta1 or a.beta2:
    Adam = torch.optim.Adam
    b = (a.beta1 or 0.9, a.beta2 or 0.999)
    torch.optim.Adam = lambda params, lr: Adam(params, lr=lr, betas=b)
cfg = schedule_config(a, **json.loads(a.extra))
model = load_classifier()
x = sample_image(a.image, size=a.size).unsqueeze(0)
t = time.perf_counter()
r = CartoonX(model, config=cfg).explain(x)
rt = time.perf_counter() - t
ev = ObjectiveEvaluator(model, x, lambda_k=cfg.lambda_k)
obj = ev([m[0:1] for m in r.mask])
os.makedirs(a.keep, exist_ok=True)
torch.save(
    {"mask": r.mask, "obj": obj, "cfg": vars(a), "runtime": rt},
    os.path.join(a.keep, f"{a.name}.pt"),
)
print(
    json.dumps(
        {
            "name": a.name,
            "obj": round(obj, 4),
            "evals": cfg.steps * cfg.samples,
            "runtime_s": round(rt, 1),
            "l1": float(r.mask_flat.mean()),
        }
    )
)
