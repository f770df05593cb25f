"""How much do antithetic or Latin hypercube draws cut the noise of CartoonX's mask gradient?

At every snapshot of a run record, the mask gradient of the Monte-Carlo distortion is estimated
``--repeats`` times from ``--samples`` draws each, with three kinds of draws of the Gaussian
obfuscation: independent (rdex's), antithetic pairs ``(z, -z)``, and Latin hypercube (per
coefficient one draw from each of ``L`` equal-probability strata, ``repeat_levers.py --draws
latin``). Printed: the summed variance of the estimate for independent draws and the ratio of the
other two to it (below 1: less noise for the same number of model evaluations).

    python benchmarks/studies/stratified_draws.py RECORD.json --samples 16 --repeats 8
"""

from __future__ import annotations

import argparse

import torch
from control_variate import GradientSetup
from repeat_levers import latin_normal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("record")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--snapshots", type=int, default=5, help="the first N snapshots of the record")
    a = p.parse_args()
    torch.set_num_threads(1)
    setup = GradientSetup.load(a.record)
    rec, bands, state, n = setup.record, setup.bands, setup.state, a.samples
    gen = torch.Generator().manual_seed(11)
    sizes = [b[0].numel() for b in bands]

    def standard(kind: str) -> torch.Tensor:
        if kind == "antithetic":
            z = torch.randn(n // 2, sum(sizes), generator=gen)
            return torch.cat([z, -z])
        if kind == "latin":
            return latin_normal(n, sum(sizes), gen, setup.x)
        return torch.randn(n, sum(sizes), generator=gen)

    def gradient(mask: list[torch.Tensor], kind: str) -> torch.Tensor:
        noise = [
            mean.view(-1)[0] + std.view(-1)[0] * z.view(n, *b.shape[1:])
            for z, b, (mean, std) in zip(standard(kind).split(sizes, 1), bands, state.params,
                                         strict=True)
        ]  # fmt: skip
        ms = [s.detach().requires_grad_(True) for s in mask]
        zs = [s * h + (1 - s) * v for s, h, v in zip(ms, bands, noise, strict=True)]
        grads = torch.autograd.grad(setup.distortion(zs).mean(), ms)
        return torch.cat([g.flatten() for g in grads])

    for j, step in enumerate(rec.steps[: a.snapshots]):
        mask = [torch.from_numpy(b) for b in rec.masks[j]]
        var = {
            kind: float(torch.stack([gradient(mask, kind) for _ in range(a.repeats)]).var(0).sum())
            for kind in ("independent", "antithetic", "latin")
        }
        mean_mask = float(torch.cat([m.flatten() for m in mask]).mean())
        print(
            f"step {step}: mean mask {mean_mask:.3f}, variance (independent) "
            f"{var['independent']:.3e}, antithetic/independent "
            f"{var['antithetic'] / var['independent']:.3f}, latin/independent "
            f"{var['latin'] / var['independent']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
