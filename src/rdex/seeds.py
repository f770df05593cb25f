"""One explanation over several seeds, and where it depends on the seed.

RDE optimises its mask on Monte-Carlo draws of the obfuscation noise, and the seed chooses the
draws. With the paper's schedule two seeds give nearly the same picture; with the short
schedules (``fast``, ``preview``) they keep the same main parts and differ in fine detail, and
the paper's objective is nearly level between their masks, so it does not choose between them
(docs/performance.md, "Repeatability"). :func:`explain_seeds` runs an explainer once per seed
and combines the masks entry by entry. The default, the median, keeps an entry where more than
half of the seeds keep it, so one seed's stray detail goes and what most seeds agree on stays;
the mean keeps every seed's detail at partial strength instead. With the combination come the
seeds' own results, the SSIM between any two of their pictures and the per-pixel spread of the
pictures, so a user sees which parts of an explanation hold whatever the seed and which are one
draw's detail.

Each seed is a full run with the explainer's settings: ``K`` seeds cost ``K`` runs.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, Algorithm 1 (the
    Monte-Carlo estimate of the expected distortion that the seed draws).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from rdex.objective import OBJECTIVE_DRAWS, against_empty
from rdex.rde import RDE, RDEResult

__all__ = ["Combine", "SeedExplanation", "SeedEnsemble", "explain_seeds", "parse_seeds"]

#: How the seeds' masks become one: their entry-wise median or mean.
Combine = Literal["mean", "median"]

#: Most seeds one call runs (each is a full optimisation).
MAX_SEEDS = 64


def parse_seeds(seeds: Sequence[int] | str) -> tuple[int, ...]:
    """Seeds from a sequence of integers or a comma-separated string (``"0,1,2"``).

    Raises:
        ValueError: Fewer than two seeds, more than :data:`MAX_SEEDS`, a repeated seed, or one
            that is not an integer in ``[0, 2**63)``.
    """
    if isinstance(seeds, str):
        parts = [p.strip() for p in seeds.split(",") if p.strip()]
        try:
            items: list[Any] = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"seeds must be integers separated by commas, got {seeds!r}") from None
    else:
        items = list(seeds)
    for s in items:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or not 0 <= int(s) < 2**63:
            raise ValueError(f"a seed must be an integer in [0, 2**63), got {s!r}")
    if len(items) < 2:
        raise ValueError(f"give at least two seeds to compare, got {len(items)}")
    if len(items) > MAX_SEEDS:
        raise ValueError(f"at most {MAX_SEEDS} seeds (each is a full run), got {len(items)}")
    if len(set(items)) != len(items):
        raise ValueError(f"every seed once, got {items}")
    return tuple(int(s) for s in items)


@dataclass(frozen=True)
class SeedExplanation:
    """The runs of one explainer with several seeds on a batch of ``B`` inputs, and their
    combination.

    Attributes:
        seeds: The seeds, in the order of ``runs``.
        runs: Each seed's result.
        result: The combined explanation: the entry-wise ``combine`` of the seeds' masks with its
            pictures and warnings; ``history`` is the mean of the seeds' histories,
            ``runtime_s`` their sum, ``config.seed`` is ``None`` (no one seed made it) and
            ``extra["seeds"]`` holds :meth:`summary` per input, ``extra["seed_mask_flat"]``
            every seed's flat mask, ``(B, K, k)``.
        combine: ``"mean"`` or ``"median"``.
        pair_ssim: SSIM between the explanation pictures of every pair of seeds (in
            ``itertools.combinations`` order), ``(B, K (K - 1) / 2)``.
        spread: Per-pixel standard deviation of the seeds' explanation pictures,
            ``(B, 1, H, W)``: where the picture depends on the seed.
        distortion: The combined mask's expected distortion, ``(B,)``: the mean over
            :data:`rdex.objective.OBJECTIVE_DRAWS` obfuscations drawn by the explainer's
            obfuscation with the first seed (the combination was not optimised, so no run's
            final loss is its own). Its objective, and the empty mask's on the same draws, are
            in ``result.extra["objective"]`` and ``["empty_objective"]``.
    """

    seeds: tuple[int, ...]
    runs: tuple[RDEResult, ...]
    result: RDEResult
    combine: Combine
    pair_ssim: Tensor
    spread: Tensor
    distortion: Tensor

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """The seed pairs of :attr:`pair_ssim`'s columns."""
        return list(itertools.combinations(self.seeds, 2))

    def summary(self, index: int = 0) -> dict[str, Any]:
        """JSON-ready agreement of the seeds on input ``index`` (saved in its record)."""
        ssims = [float(v) for v in self.pair_ssim[index]]
        kept = torch.stack([r.mask_flat[index] > 0.5 for r in self.runs])
        return {
            "seeds": list(self.seeds),
            "combine": self.combine,
            "ssim_min": min(ssims),
            "ssim_mean": sum(ssims) / len(ssims),
            "ssim_pairs": [
                {"seeds": list(pair), "ssim": v} for pair, v in zip(self.pairs, ssims, strict=True)
            ],
            # Entries above 0.5 in every seed, among those above 0.5 in any (1 when all agree).
            "retained_agreement": float(kept.all(0).sum() / kept.any(0).sum().clamp(min=1)),
            "spread_max": float(self.spread[index].max()),
            "distortion": float(self.distortion[index]),
            "distortion_draws": OBJECTIVE_DRAWS,
            "per_seed": [
                {
                    "seed": seed,
                    "final_loss": float(r.history["loss"][-1, index]) if r.config.steps else None,
                    "retained_fraction": float((r.mask_flat[index] > 0.5).float().mean()),
                }
                for seed, r in zip(self.seeds, self.runs, strict=True)
            ],
        }


def _check(explainer: Any, combine: Any) -> None:
    """Refuse what is not an RDE explainer and an unknown way of combining the masks."""
    if not isinstance(explainer, RDE):
        raise TypeError(f"rdex.seeds runs an RDE explainer, got {type(explainer).__name__}")
    if combine not in ("mean", "median"):
        raise ValueError(f"combine must be 'mean' or 'median', got {combine!r}")


def _ssim_pairs(pictures: Tensor) -> Tensor:
    """SSIM of every pair of ``(K, B, 1, H, W)`` pictures, ``(B, P)``."""
    from rdex.metrics.similarity import ssim

    pairs = list(itertools.combinations(range(pictures.shape[0]), 2))
    return torch.tensor(
        [[ssim(pictures[a, i, 0], pictures[b, i, 0]) for a, b in pairs]
         for i in range(pictures.shape[1])],
        dtype=torch.float64,
    )  # fmt: skip


def explain_seeds(
    explainer: RDE,
    x: Tensor,
    *,
    seeds: Sequence[int] | str = (0, 1, 2),
    combine: Combine = "median",
    target: int | str | Sequence[int | str] | Tensor | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> SeedExplanation:
    """Run ``explainer`` once per seed on ``x`` and combine the masks.

    Args:
        explainer: An RDE method; its ``config.seed`` is replaced by each seed in turn (the
            explainer itself is not changed).
        x: Inputs ``(B, ...)``, as :meth:`rdex.rde.RDE.explain` takes them.
        seeds: At least two distinct seeds (a sequence or ``"0,1,2"``).
        combine: ``"median"`` (default) or ``"mean"`` of the masks, entry by entry (the median
            of an even number of seeds is the lower of the two middle values, so an entry is
            kept where more than half of the seeds keep it).
        target: Label to explain per input (the predicted one by default); resolved once, so
            every seed explains the same label.
        progress: A progress bar per seed.
        desc: Label of the progress bars (the seed is appended).

    Returns:
        A :class:`SeedExplanation`; its ``result`` is the combined explanation.

    Examples:
        >>> import torch, rdex
        >>> from rdex.seeds import explain_seeds
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
        >>> cx = rdex.CartoonX(model, steps=5, samples=2)
        >>> runs = explain_seeds(cx, torch.rand(1, 3, 16, 16), seeds=[0, 1, 2])
        >>> runs.pair_ssim.shape, runs.result.explanation.shape
        (torch.Size([1, 3]), torch.Size([1, 1, 16, 16]))
    """
    _check(explainer, combine)
    chosen = parse_seeds(seeds)
    runs: list[RDEResult] = []
    for seed in chosen:
        one = copy.copy(explainer)  # the caller's explainer keeps its own config
        one.config = explainer.config.replace(seed=seed)
        label = f"{desc} seed {seed}" if desc else f"seed {seed}"
        result = one.explain(x, target=target, progress=progress, desc=label)
        target = result.target  # the label the first seed resolved, for every other seed
        runs.append(result)
    first = runs[0]
    stacked = [torch.stack(bands) for bands in zip(*(r.mask for r in runs), strict=True)]
    mask = [b.mean(0) if combine == "mean" else b.median(0).values for b in stacked]
    xs = x.to(first.explanation.device, first.explanation.dtype)
    # The combination was not optimised: its own objective, on the first seed's draws, against
    # the empty mask on the same draws (as RDE checks each run).
    found, empty = against_empty(
        explainer, xs, mask, probs=first.probs, target=first.target, seed=chosen[0]
    )
    explanation, explanation_rgb, warnings = explainer.render(
        xs, mask, probs=first.probs, target=first.target, objective=found, empty=empty
    )
    pictures = torch.stack([r.explanation for r in runs]).detach().cpu()
    history = {
        k: torch.stack([r.history[k] for r in runs]).mean(0) if k != "lr" else v
        for k, v in first.history.items()
    }
    combined = RDEResult(
        mask=mask,
        explanation=explanation,
        explanation_rgb=explanation_rgb,
        target=first.target,
        probs=first.probs,
        history=history,
        # No one seed made it (RDEConfig.replace would keep a None): they are in extra["seeds"].
        config=dataclasses.replace(first.config, seed=None),
        band_names=first.band_names,
        runtime_s=sum(r.runtime_s for r in runs),
        method=first.method,
        extra=dict(first.extra)
        | {"objective": found.value.tolist(), "empty_objective": empty.value.tolist()},
        warnings=warnings,
    )
    out = SeedExplanation(
        seeds=chosen,
        runs=tuple(runs),
        result=combined,
        combine=combine,
        pair_ssim=_ssim_pairs(pictures),
        spread=pictures.std(dim=0, unbiased=False),
        distortion=found.distortion,
    )
    combined.extra["seeds"] = [out.summary(i) for i in range(len(first))]
    combined.extra["seed_mask_flat"] = torch.stack([r.mask_flat for r in runs], 1).cpu()
    return out


class SeedEnsemble:
    """An explainer that runs ``explainer`` once per seed and returns the combined explanation
    (``explain`` like RDE's; the seeds' agreement is in ``result.extra["seeds"]``).

    Args:
        explainer: The RDE method.
        seeds: At least two distinct seeds.
        combine: ``"median"`` (default) or ``"mean"`` of the seeds' masks.
    """

    def __init__(
        self,
        explainer: RDE,
        *,
        seeds: Sequence[int] | str = (0, 1, 2),
        combine: Combine = "median",
    ) -> None:
        _check(explainer, combine)
        self.explainer = explainer
        self.seeds = parse_seeds(seeds)
        self.combine: Combine = combine
        #: The last call's :class:`SeedExplanation` (every seed's result, the spread).
        self.last: SeedExplanation | None = None

    def explain(
        self,
        x: Tensor,
        *,
        target: int | str | Sequence[int | str] | Tensor | None = None,
        progress: bool = False,
        desc: str | None = None,
    ) -> RDEResult:
        """The combined explanation of ``x`` (see :func:`explain_seeds`)."""
        self.last = explain_seeds(
            self.explainer, x, seeds=self.seeds, combine=self.combine, target=target,
            progress=progress, desc=desc,
        )  # fmt: skip
        return self.last.result
