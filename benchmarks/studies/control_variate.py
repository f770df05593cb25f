"""Would a control variate cut the noise of CartoonX's mask gradient?

The Monte-Carlo gradient of the distortion with respect to mask entry j, for one noise draw v_i,
is ``sum_c dd/dz_ij * (h_j - v_ij)`` (z the obfuscated coefficients). The leave-one-out control
variate adds ``sum_c (v_ij - mu_j) * G_j^(-i)``, with ``G^(-i)`` the mean of ``dd/dz`` over the
other draws: it has mean zero (v_i is independent of the other draws), so the estimator stays
unbiased, and it cancels the part of the noise that comes from ``v_i`` itself where ``dd/dz``
varies little between draws. This script measures the variance of both estimators over ``L`` draws
at every snapshot of a run record (``benchmarks/studies/repeat_runs.py``), no optimisation.

    python benchmarks/studies/control_variate.py RECORD.json --samples 32
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rdex.bench.repeat import RunRecord
from rdex.images import resolve_image
from rdex.models import load_classifier
from rdex.obfuscations import ObfuscationState, make_obfuscation
from rdex.rde import frozen
from rdex.representations import Wavelet


@dataclass
class GradientSetup:
    """A run record's image under CartoonX's representation and Gaussian obfuscation, with the
    model's output on it: what the gradient studies (this one, ``stratified_draws.py``) score the
    record's masks against."""

    record: RunRecord
    model: nn.Module
    x: Tensor
    rep: Wavelet
    bands: list[Tensor]
    state: ObfuscationState
    p_ref: Tensor

    @classmethod
    def load(cls, path: str) -> GradientSetup:
        rec = RunRecord.load(path)
        model = load_classifier().eval()
        x = resolve_image(rec.image, size=rec.size)[1].unsqueeze(0)
        rep = Wavelet("db3", levels=5, mode="zero")
        bands = [b.detach() for b in rep.encode(x)]
        state = make_obfuscation("gaussian").prepare(x, bands, rep)
        with torch.no_grad(), frozen(model):
            p_ref = torch.softmax(model(rep.decode(bands, shape=x.shape[1:]).clamp(0, 1)), 1)
        return cls(rec, model, x, rep, bands, state, p_ref)

    def distortion(self, coefficients: list[Tensor]) -> Tensor:
        """The label distortion of every obfuscation, given its coefficients per band."""
        label = self.record.target
        with frozen(self.model):
            y = self.rep.decode(coefficients, shape=self.x.shape[1:]).clamp(0, 1)
            return (self.p_ref[0, label] - torch.softmax(self.model(y), 1)[:, label]) ** 2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("record")
    p.add_argument("--samples", type=int, default=32)
    a = p.parse_args()
    torch.set_num_threads(1)
    setup = GradientSetup.load(a.record)
    rec, bands, n = setup.record, setup.bands, a.samples
    noise = make_obfuscation("gaussian").sample(setup.state, n, [torch.Generator().manual_seed(7)])
    means = [m.view(-1)[0] for m, _ in setup.state.params]
    lam = rec.config["lambda_k"] / sum(b.size for b in rec.final)
    for j, step in enumerate(rec.steps):
        mask = [torch.from_numpy(b) for b in rec.masks[j]]
        zs = [
            (s.unsqueeze(1) * h.unsqueeze(1) + (1 - s.unsqueeze(1)) * v)
            .flatten(0, 1)
            .detach()
            .requires_grad_(True)
            for s, h, v in zip(mask, bands, noise, strict=True)
        ]
        d = setup.distortion(zs)
        grads = torch.autograd.grad(d.sum(), zs)
        plain, controlled = [], []
        for g, h, v, mu in zip(grads, bands, noise, means, strict=True):
            g = g.view(n, *h.shape[1:])
            v, h = v[0], h[0].unsqueeze(0)
            loo = (g.sum(0, keepdim=True) - g) / (n - 1)
            per_draw = (g * (h - v)).sum(1).flatten(1)
            plain.append(per_draw)
            controlled.append(per_draw + ((v - mu) * loo).sum(1).flatten(1))
        a_, b_ = torch.cat(plain, 1), torch.cat(controlled, 1)
        mean_mask = float(torch.cat([m.flatten() for m in mask]).mean())
        print(
            f"step {step}: mean mask {mean_mask:.3f}, distortion {float(d.detach().mean()):.4f}, "
            f"variance plain {float(a_.var(0).sum()):.3e}, with control variate "
            f"{float(b_.var(0).sum()):.3e} (ratio {float(b_.var(0).sum() / a_.var(0).sum()):.3f}); "
            f"mean |gradient| {float(a_.mean(0).abs().mean()):.2e} vs lambda/k {lam:.2e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
