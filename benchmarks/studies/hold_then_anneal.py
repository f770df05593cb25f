"""Prototype: hold Adam's learning rate constant for a fraction of the run, then anneal (cosine).

The paper schedule's slow, uniform shrink (constant lr 0.001) selects one optimum; annealed
schedules (``fast``) reach the same objective but another explanation (SSIM 0.93-0.94 to the
paper's at 128 px). This tries a constant shrink phase first. Not in rdex: a prototype for the
next step of the performance work, scored against the committed 128 px paper run's final mask
(its .pt record is kept on the machine that ran it, see benchmarks/studies/schedules_128.sh).

    python benchmarks/studies/hold_then_anneal.py LR HOLD_FRACTION STEPS SAMPLES [SEED]
    python benchmarks/studies/hold_then_anneal.py 0.01 0.5 400 16
"""

import json
import math
import sys

import torch

from rdex import rde
from rdex.bench import ObjectiveEvaluator, retained_overlap, ssim
from rdex.images import sample_image
from rdex.methods import CartoonX
from rdex.models import load_classifier

torch.set_num_threads(1)
lr0, hold_frac, steps, samples = (
    float(sys.argv[1]),
    float(sys.argv[2]),
    int(sys.argv[3]),
    int(sys.argv[4]),
)
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0


def lr_at(self, step):
    h = int(hold_frac * self.steps)
    if step < h:
        return self.lr
    t = (step - h) / max(1, self.steps - 1 - h)
    return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + math.cos(math.pi * t))


rde.RDEConfig.lr_at = lr_at
m = load_classifier()
x = sample_image("chelsea", size=128).unsqueeze(0)
r = CartoonX(m, preset="fast", lr=lr0, steps=steps, samples=samples, seed=seed).explain(x)
ev = ObjectiveEvaluator(m, x)
# weights_only: tensors and plain containers only; a record is never unpickled as code.
ref = torch.load("benchmarks/studies/results/runs-chelsea128/paper-s0.pt", weights_only=True)[
    "masks"
][-1]
mask = [b[0:1] for b in r.mask]
print(
    json.dumps(
        {
            "lr": lr0,
            "hold": hold_frac,
            "N": steps,
            "L": samples,
            "seed": seed,
            "rd_ratio": ev.rate_distortion_auc(mask) / ev.rate_distortion_auc(ref),
            "ratio": ev(mask) / ev(ref),
            "ssim": ssim(ev.picture(mask), ev.picture(ref)),
            "iou": retained_overlap(mask, ref),
            "runtime": r.runtime_s,
        }
    )
)
