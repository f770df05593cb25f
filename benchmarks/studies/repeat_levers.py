"""Levers on CartoonX's optimiser that are not rdex options, screened for repeatability.

Each lever changes one thing in the `fast` schedule for this process only (it patches rdex's
optimiser loop, so nothing here is a supported setting) and then runs
``repeat_runs.py`` with the remaining arguments, which keeps run records for
``rdex bench --mode repeat --records DIR`` to score:

* ``--draws latin``: Latin hypercube draws of the obfuscation noise: within each step, the ``L``
  draws of every coefficient come one from each of ``L`` equal-probability strata of the
  Gaussian (each draw still ``N(mu, sigma^2)``, the Monte-Carlo estimate stays unbiased);
  ``stratified_draws.py`` measures what it does to the gradient's variance;
* ``--lambda-from F --lambda-until T``: continuation of the sparsity weight, ``F * lambda`` at
  the start rising linearly to ``lambda`` at the fraction ``T`` of the steps;
* ``--beta1 B``: Adam's first-moment decay (0.9 in the paper and in rdex): a longer average of
  the noisy gradient while the mask falls;
* ``--shrink-until T``: for the fraction ``T`` of the steps, the Monte-Carlo distortion gradient
  of every mask entry is shrunk by its own signal-to-noise ratio across the step's ``L`` draws,
  ``g * g^2 / (g^2 + c * se^2)`` with ``se^2`` the squared standard error of the mean ``g`` and
  ``c`` from ``--shrink-strength`` (1: a Wiener shrinkage). The per-draw gradients come from one
  backward pass through a per-draw copy of the mask. Entries whose distortion gradient is noise
  then fall by the sparsity term alone, at the same rate for every seed. With ``T < 1`` the
  later steps use the plain gradient, so the run ends at a fixed point of the paper's objective;
  with ``T = 1`` the shrinkage biases the end point towards sparser masks;
* ``--coarse-until T``: coarse to fine over the wavelet scales: the mask of band ``b`` (0 the
  approximation, ``n`` the finest details) stays where it started until the step
  ``T * b / n * steps``, so the coarse scales fall first with the fine ones kept (and so without
  their obfuscation noise), and the finest scales start to fall at the fraction ``T`` of the run;
  with ``--fine-first`` the other way round (the approximation held until ``T``).

    python benchmarks/studies/repeat_levers.py --draws latin --name latin --images chelsea \
        --seeds 0 1 --out benchmarks/studies/results/repeat-128/screen
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rdex import obfuscations, rde

sys.path.insert(0, str(Path(__file__).resolve().parent))


def latin_normal(
    rows: int, cols: int, generator: torch.Generator, like: torch.Tensor
) -> torch.Tensor:
    """``rows`` standard normal draws of ``cols`` coefficients, stratified along the rows: per
    column a random permutation of the ``rows`` strata, a uniform point in each."""
    opts = {"device": like.device, "dtype": like.dtype}
    order = torch.rand(rows, cols, generator=generator, device=like.device).argsort(dim=0)
    u = (order.to(like.dtype) + torch.rand(rows, cols, generator=generator, **opts)) / rows
    eps = torch.finfo(like.dtype).eps
    return torch.special.ndtri(u.clamp(eps, 1 - eps))


def _latin(obfuscation: type) -> None:
    """Make ``obfuscation`` (an adaptive one) draw its standard noise by :func:`latin_normal`:
    its ``sample`` asks for all draws of one image and step at once, rows first."""
    sample = obfuscation.sample

    def rows_first(self, state, num_samples, generators):  # type: ignore[no-untyped-def]
        self._lever_rows = num_samples
        return sample(self, state, num_samples, generators)

    def standard(self, n, generator, like):  # type: ignore[no-untyped-def]
        rows = self._lever_rows
        return latin_normal(rows, n // rows, generator, like).reshape(-1)

    obfuscation.sample, obfuscation._standard = rows_first, standard


def _record_step() -> None:
    """Make ``RDE._image_step`` keep its step in ``self._lever_step`` for the levers that depend
    on it (once, however many levers ask)."""
    step_of = rde.RDE._image_step
    if getattr(step_of, "records_step", False):
        return

    def image_step(self, problem, i, mask, noise, step):  # type: ignore[no-untyped-def]
        self._lever_step = step
        return step_of(self, problem, i, mask, noise, step)

    image_step.records_step = True  # type: ignore[attr-defined]
    rde.RDE._image_step = image_step  # type: ignore[method-assign]


def _shrunk_distortion_grads(until: float, strength: float):  # type: ignore[no-untyped-def]
    """``RDE._distortion_grads`` with per-draw gradients: the mask is copied once per draw
    (``expand``), so one backward pass through rdex's own ``_distortion_chunk`` gives every draw's
    gradient; their mean is the plain gradient, their spread its standard error, and for the
    fraction ``until`` of the steps the mean is shrunk by ``g^2 / (g^2 + strength * se^2)``."""

    def distortion_grads(self, problem, i, mask, noise):  # type: ignore[no-untyped-def]
        samples = noise[0].shape[1]
        bands = [b[i : i + 1] for b in problem.bands]
        total = [torch.zeros_like(m) for m in mask]
        squares = [torch.zeros_like(m) for m in mask]
        distortion = problem.x.new_zeros(1)
        for lo in range(0, samples, problem.chunk):
            hi = min(samples, lo + problem.chunk)
            n = hi - lo
            copies = [m.expand(n, *m.shape[1:]) for m in mask]
            d = self._distortion_chunk(
                copies, [b.expand(n, *b.shape[1:]) for b in bands],
                [v[:, lo:hi].transpose(0, 1) for v in noise], problem.shape,
                self._reference(problem, i, n), problem.target[i : i + 1],
            ).view(n)  # fmt: skip
            per_draw = torch.autograd.grad(d.sum(), copies)
            for acc, sq, g in zip(total, squares, per_draw, strict=True):
                acc += g.sum(dim=0, keepdim=True)
                sq += (g * g).sum(dim=0, keepdim=True)
            distortion += d.detach().sum() / samples
        shrink = samples > 1 and self._lever_step < until * self.config.steps
        grads = []
        for acc, sq in zip(total, squares, strict=True):
            mean = acc / samples
            if shrink:
                variance = (sq - samples * mean * mean).clamp_min(0) / (samples - 1)
                se2 = strength * variance / samples
                mean = mean * mean * mean / (mean * mean + se2).clamp_min(1e-30)
            grads.append(mean)
        return grads, distortion

    return distortion_grads


def _coarse_to_fine(until: float, fine_first: bool) -> None:
    """Hold band ``b`` of ``n + 1`` (coarse first) at its start until ``until * b / n`` of the
    steps: its gradient is zeroed, so Adam's moments stay zero and its entries do not move."""
    step_of = rde.RDE._image_step

    def image_step(self, problem, i, mask, noise, step):  # type: ignore[no-untyped-def]
        out = step_of(self, problem, i, mask, noise, step)
        n = len(mask) - 1
        for b, m in enumerate(mask):
            if n and step < until * (n - b if fine_first else b) / n * self.config.steps:
                m.grad.zero_()
        return out

    rde.RDE._image_step = image_step  # type: ignore[method-assign]


def patch(a: argparse.Namespace) -> None:
    """Apply the levers of ``a`` to rdex in this process."""
    if a.coarse_until is not None:
        _coarse_to_fine(a.coarse_until, a.fine_first)
    if a.shrink_until is not None:
        _record_step()
        rde.RDE._distortion_grads = _shrunk_distortion_grads(  # type: ignore[method-assign]
            a.shrink_until, a.shrink_strength
        )
    if a.draws == "latin":
        _latin(obfuscations.GaussianAdaptive)
    if a.lambda_from is not None:
        _record_step()
        penalty_of = rde.RDE._penalty

        def penalty(self, problem, i, mask):  # type: ignore[no-untyped-def]
            l1, value = penalty_of(self, problem, i, mask)
            t = min(1.0, self._lever_step / max(1.0, a.lambda_until * self.config.steps))
            return l1, value * (a.lambda_from + (1.0 - a.lambda_from) * t)

        rde.RDE._penalty = penalty  # type: ignore[method-assign]
    if a.beta1 is not None:
        adam = torch.optim.Adam

        class Adam(adam):  # type: ignore[misc,valid-type]
            def __init__(self, params, lr):  # type: ignore[no-untyped-def]
                super().__init__(params, lr=lr, betas=(a.beta1, 0.999))

        torch.optim.Adam = Adam  # type: ignore[misc]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    p.add_argument("--draws", choices=("iid", "latin"), default="iid")
    p.add_argument("--lambda-from", type=float, default=None)
    p.add_argument("--lambda-until", type=float, default=0.5)
    p.add_argument("--beta1", type=float, default=None)
    p.add_argument("--shrink-until", type=float, default=None)
    p.add_argument("--shrink-strength", type=float, default=1.0)
    p.add_argument("--coarse-until", type=float, default=None)
    p.add_argument("--fine-first", action="store_true")
    a, rest = p.parse_known_args()
    patch(a)
    import repeat_runs

    sys.argv = [sys.argv[0], *rest]
    repeat_runs.main()


if __name__ == "__main__":
    main()
