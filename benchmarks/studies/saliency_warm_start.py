"""Does a warm start that does not depend on the noise make CartoonX's seeds agree?

The seeds of ``fast`` part ways while the mask falls from ones: the noise of those first steps
decides which fine coefficients survive, and the objective is level along the valley where they
end (docs/performance.md, "Repeatability"). A starting mask that the image and the model decide,
not the noise, could put every seed at the same place of that valley and leave the noise only
the short way from there. This starts from the gradient times the coefficient of the target's
probability, per mask entry (summed over the colour channels), squashed into ``[0, 1)`` as
``a / (a + t)`` with ``t`` the ``--quantile`` of ``a`` over all entries; then runs the ``fast``
schedule (or ``--lr``/``--steps``) from there and keeps a run record for ``compare_records.py``
and ``rdex bench --mode repeat``. The warm start costs one forward and backward pass.

    python benchmarks/studies/saliency_warm_start.py --name gxi-q95 --images chelsea --seeds 0 1 \
        --out benchmarks/studies/results/repeat-128/screen
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rdex.bench.repeat import run_record
from rdex.images import resolve_image
from rdex.methods import CartoonX
from rdex.models import load_classifier
from rdex.rde import preset


def saliency_mask(model: torch.nn.Module, x: torch.Tensor, quantile: float) -> list[torch.Tensor]:
    """Per band, ``a / (a + t)`` of the gradient-times-coefficient ``a`` of the top class."""
    rep = CartoonX(model).representation
    bands = [b.detach().requires_grad_(True) for b in rep.encode(x)]
    with torch.no_grad():
        target = int(model(x).argmax(1))
    prob = torch.softmax(model(rep.decode(bands, shape=tuple(x.shape))), 1)[0, target]
    grads = torch.autograd.grad(prob, bands)
    dims = rep.shared_dims
    scores = [
        (g * b).abs().sum(dim=dims, keepdim=True).detach()
        for g, b in zip(grads, bands, strict=True)
    ]
    t = torch.quantile(torch.cat([s.flatten() for s in scores]), quantile).clamp(min=1e-12)
    return [s / (s + t) for s in scores]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--images", nargs="+", default=["chelsea"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--lambda-k", type=float, default=20.0)
    p.add_argument("--quantile", type=float, default=0.95)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    model = load_classifier()
    out = Path(a.out)
    for image in a.images:
        _, picture = resolve_image(image, size=a.size)
        x = picture.unsqueeze(0)
        init = saliency_mask(model, x, a.quantile)
        print(
            f"{image}: warm start mean {float(torch.cat([m.flatten() for m in init]).mean()):.4f}"
        )
        for seed in a.seeds:
            name = f"{a.name}-{image}-s{seed}"
            if (out / f"{name}.json").is_file():
                continue
            config = preset("fast", lambda_k=a.lambda_k, seed=seed, lr=a.lr, steps=a.steps)
            record = run_record(
                model, image, a.size, config, schedule=a.name, name=name, init_mask=init
            )
            record.save(out)
            print(
                f"{name}: {record.meta['runtime_s']:.1f} s, loss {record.loss[-1]:.4f}", flush=True
            )


if __name__ == "__main__":
    main()
