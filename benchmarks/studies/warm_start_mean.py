"""A warm start that does not depend on the noise: CartoonX's mask first optimised against the
deterministic mean obfuscation (every deleted coefficient replaced by its partition's mean, one
model evaluation per step), then the Gaussian-noise schedule from that mask. Kept as run records
for ``rdex bench --mode repeat``.

    python benchmarks/studies/warm_start_mean.py --name warm --warm-steps 100 --warm-lr 0.01 \
        --lr 0.01 --images chelsea --seeds 0 1 --out DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from rdex.bench.quality import checkpoint_steps, run_schedule
from rdex.bench.repeat import RunRecord
from rdex.images import resolve_image
from rdex.methods import CartoonX
from rdex.models import load_classifier
from rdex.obfuscations import _Deterministic, partition_stats
from rdex.rde import preset


class PartitionMean(_Deterministic):
    """Every deleted coefficient replaced by the mean of its partition (the Gaussian's mean)."""

    name = "partition-mean"

    def _values(self, x, bands, representation):  # type: ignore[no-untyped-def]
        means, _ = partition_stats(bands, representation.groups(bands))
        return [
            m.view(-1, *([1] * (b.dim() - 1))).expand_as(b)
            for m, b in zip(means, bands, strict=True)
        ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--images", nargs="+", default=["chelsea"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--lambda-k", type=float, default=20.0)
    p.add_argument("--warm-steps", type=int, default=100)
    p.add_argument("--warm-lr", type=float, default=0.01)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--hold", type=float, default=0.0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    model = load_classifier()
    for image in a.images:
        x = resolve_image(image, size=a.size)[1].unsqueeze(0)
        t0 = time.perf_counter()
        warm_cfg = preset("paper", lambda_k=a.lambda_k, steps=a.warm_steps, samples=1,
                          lr=a.warm_lr, seed=0)  # fmt: skip
        warm = CartoonX(model, obfuscation=PartitionMean(), config=warm_cfg).explain(x)
        warm_s = time.perf_counter() - t0
        for seed in a.seeds:
            cfg = preset("fast", lambda_k=a.lambda_k, seed=seed, steps=a.steps,
                         samples=a.samples, lr=a.lr, hold=a.hold)  # fmt: skip
            run = run_schedule(model, x, cfg, checkpoints=checkpoint_steps(cfg.steps, 8),
                               init_mask=warm.mask)  # fmt: skip
            rec = RunRecord.from_run(run, name=f"{a.name}-{image}-s{seed}", schedule=a.name,
                                     image=image, size=a.size)  # fmt: skip
            rec.config["steps"] = cfg.steps
            rec.meta.update(warm_steps=a.warm_steps, warm_lr=a.warm_lr, warm_s=warm_s,
                            warm_evaluations=a.warm_steps)  # fmt: skip
            rec.save(Path(a.out))
            print(f"{rec.name}: {rec.meta['runtime_s']:.1f} s + warm {warm_s:.1f} s", flush=True)


if __name__ == "__main__":
    main()
