"""Choosing ``lambda_k`` from a target instead of guessing it: keep-probability or sparsity.

The sparsity level ``lambda_k`` of RDE trades distortion against mask size, and the right value
depends on the image: the paper's appendix A.8 shows CartoonX explanations that come out all black
because ``lambda_k`` was too high for that image. Here the user states what the explanation should
achieve and a short search finds a ``lambda_k`` that achieves it:

- **keep-probability** ``p``: the explanation keeps ``p`` of the label's probability. Precisely,
  the mean over ``samples`` obfuscations ``y = f(s * h + (1 - s) * v)``, ``v ~ V_s`` (the
  method's own representation, obfuscation and clipping: the quantity whose squared gap from the
  original the ``label`` distortion penalises) of the model's probability of the explained label,
  divided by its probability for the original image: ``E_v[Phi_c(y)] / Phi_c(x)``. The draws are
  seeded (``seed``), so the value is a deterministic function of the mask.
- **sparsity** ``q``: the share of mask entries above ``threshold`` (0.5 by default; the
  ``retained_fraction`` of :func:`rdex.metrics.mask_sparsity` and of the saved JSON record).

Both fall as ``lambda_k`` grows, as a rule: with a short schedule on an image the model is unsure
of, a mask can collapse at a small ``lambda_k`` and survive at a larger one (the search then may
not reach the target; it says so). The search runs the method at the start value (the method's
``lambda_k``, clipped into ``bounds``), moves by ``factor`` on the log scale until the target is
bracketed (or a bound is hit), then bisects the bracket on the log scale (geometric mean), stopping
when the value is within ``tolerance`` of the target or after ``max_runs`` runs. Every run has the
method's full schedule and starts from ones (Algorithm 1). With ``warm_start`` a run starts instead
from the mask of the run with the largest ``lambda_k`` that still kept more than the target (the
dense end of the bracket), so the mask only has to shrink. It is off by default because on the
bundled images (128 px, ``preview``; ``benchmarks/studies/lambda_search*.json``) runs from ones
reached the target in 6 of 8 cases, warm-started runs in 4 of 8, with more runs: restarting the
schedule's large learning rate on an already sparse mask collapsed it to black where a run from
ones keeps a mask (coffee, sparsity 0.02: from ones ``lambda_k`` 2 keeps 6.6 % of the entries,
3.6 keeps 3.2 %; started from the ``lambda_k`` 2 mask, every run from 2.07 to 6.3 kept none).
Starting from the previous run's mask also reached 4 of 8. The run
closest to the target is returned, with the chosen ``lambda_k`` and the trace of every run.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, section 4.1 and appendix
    A.8 (explanations that are all black for a too large lambda).
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from rdex.rde import RDE, RDEResult, frozen

__all__ = [
    "Calibration",
    "CalibrationRun",
    "Calibrated",
    "calibrate",
    "measure_keep_probability",
    "mask_kept_share",
    "DEFAULT_BOUNDS",
]

#: Goal of a search: which quantity the target value is for.
Goal = Literal["keep_probability", "sparsity"]

#: Range of ``lambda_k`` searched by default: wide enough for CartoonX (paper: 20-80) and Pixel RDE
#: (paper: 3-20) and for the small values a high keep-probability needs.
DEFAULT_BOUNDS: tuple[float, float] = (0.01, 1000.0)

#: Model evaluations of one forward pass per image (the original image, before optimising).
_FORWARD = 1


@dataclass(frozen=True)
class CalibrationRun:
    """One optimisation of the search.

    Attributes:
        lambda_k: The sparsity level of the run.
        value: The measured keep-probability or sparsity of its mask.
        warm_from: The ``lambda_k`` of the run whose mask this run started from, or ``None`` for a
            start from ones (Algorithm 1).
        model_evaluations: Images sent through the model: the optimisation's (forward and
            backward) plus the measurement's (forward only).
        runtime_s: Wall-clock seconds of the run and its measurement.
    """

    lambda_k: float
    value: float
    warm_from: float | None
    model_evaluations: int
    runtime_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "lambda_k": self.lambda_k,
            "value": self.value,
            "warm_from": self.warm_from,
            "model_evaluations": self.model_evaluations,
            "runtime_s": self.runtime_s,
        }


@dataclass
class Calibration:
    """The outcome of a search for one image.

    Attributes:
        result: The chosen run's result (one image); its ``config.lambda_k`` is the chosen value
            and ``extra["calibration"]`` holds :meth:`to_dict`.
        goal: ``"keep_probability"`` or ``"sparsity"``.
        target: The value asked for.
        tolerance: How close counts as reached.
        lambda_k: The chosen sparsity level.
        value: The chosen run's measured value.
        converged: Whether ``|value - target| <= tolerance``.
        stop: Why the search stopped.
        runs: Every run, in order.
        settings: How the value is measured (samples, seed, threshold) and the search bounds.
    """

    result: RDEResult
    goal: Goal
    target: float
    tolerance: float
    lambda_k: float
    value: float
    converged: bool
    stop: str
    runs: list[CalibrationRun]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def model_evaluations(self) -> int:
        """Images sent through the model by the whole search."""
        return sum(r.model_evaluations for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: the choice, the stop reason, the settings and the trace."""
        return {
            "goal": self.goal,
            "target": self.target,
            "tolerance": self.tolerance,
            "lambda_k": self.lambda_k,
            "value": self.value,
            "converged": self.converged,
            "stop": self.stop,
            "runs": len(self.runs),
            "model_evaluations": self.model_evaluations,
            "settings": dict(self.settings),
            "trace": [r.to_dict() for r in self.runs],
        }


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def _check_goal(keep_probability: Any, sparsity: Any) -> tuple[Goal, float]:
    if (keep_probability is None) == (sparsity is None):
        raise ValueError("give exactly one of keep_probability and sparsity")
    goal: Goal = "keep_probability" if keep_probability is not None else "sparsity"
    value = _number(goal, keep_probability if keep_probability is not None else sparsity)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{goal} must lie strictly between 0 and 1, got {value:g}")
    return goal, value


def mask_kept_share(mask: Sequence[Tensor], *, threshold: float = 0.5) -> Tensor:
    """Share of mask entries above ``threshold`` per input, ``(B,)``.

    Args:
        mask: Mask per band, each ``(B, ...)`` (as :attr:`rdex.rde.RDEResult.mask`).
        threshold: Entries above it count as kept.
    """
    flat = torch.cat([m.flatten(1) for m in mask], dim=1)
    return (flat > threshold).float().mean(dim=1)


def measure_keep_probability(
    explainer: RDE,
    x: Tensor,
    result: RDEResult,
    *,
    samples: int = 64,
    seed: int = 0,
) -> Tensor:
    """Share of the explained label's probability that the explanation keeps, per input ``(B,)``.

    ``E_v[Phi_c(f(s * h + (1 - s) * v))] / Phi_c(x)`` with ``v`` drawn ``samples`` times (once for
    a deterministic obfuscation) by the explainer's own obfuscation, from generators seeded with
    ``seed``, the obfuscations clipped as in the optimiser, ``c`` the explained label and
    ``Phi_c(x)`` the probability the result recorded for the original input.

    Args:
        explainer: The RDE method that produced ``result``.
        x: The inputs ``(B, C, H, W)`` it explained.
        result: Its result.
        samples: Obfuscations drawn per input.
        seed: Seed of every input's generator.
    """
    from rdex.metrics.rate_distortion import obfuscated_outputs

    cfg = explainer.config
    if cfg.model_output != "softmax":
        raise ValueError("keep-probability needs probabilities: model_output must be 'softmax'")
    with frozen(explainer.model):
        out = obfuscated_outputs(
            explainer.model, x, result.mask, representation=explainer.representation,
            obfuscation=explainer.obfuscation, samples=samples, seed=seed, clip=cfg.clip,
            model_output=cfg.model_output,
        )  # fmt: skip
    target = result.target.to(out.device)
    kept = out.gather(2, target.view(-1, 1, 1).expand(-1, out.shape[1], 1)).squeeze(2).mean(dim=1)
    original = result.target_prob.to(kept)
    if bool((original <= 0).any()):
        raise ValueError("the explained label has probability 0 for the input: nothing to keep")
    return (kept / original).cpu()


def _explainer_at(method: RDE | Callable[[float], RDE], lambda_k: float) -> RDE:
    if isinstance(method, RDE):
        explainer = copy.copy(method)  # the caller's explainer keeps its own config
        base = method.config
        # A method with a spatial penalty (ShearletX, WaveletX) has two sparsity weights: both
        # scale together, so the search moves the objective's overall sparsity pressure and keeps
        # the method's ratio of the two penalties.
        spatial = (
            base.spatial_l1 * lambda_k / base.lambda_k if base.lambda_k > 0 else base.spatial_l1
        )
        explainer.config = base.replace(lambda_k=lambda_k, spatial_l1=spatial)
        return explainer
    explainer = method(lambda_k)
    if not isinstance(explainer, RDE):
        raise TypeError(f"the method factory must return an RDE explainer, got {explainer!r}")
    if explainer.config.lambda_k != lambda_k:
        raise ValueError(
            f"the method factory was asked for lambda_k={lambda_k:g} and returned an explainer "
            f"with lambda_k={explainer.config.lambda_k:g}"
        )
    return explainer


def _one_target(target: Any, i: int, batch: int) -> Any:
    """The label argument for input ``i`` alone."""
    if target is None or isinstance(target, int | str):
        return target
    if isinstance(target, Tensor):
        flat = target.flatten()
        return flat if flat.numel() == 1 else flat[i : i + 1]
    items = list(target)
    if len(items) == 1:
        return items
    if len(items) != batch:
        raise ValueError(f"{len(items)} targets for {batch} inputs")
    return [items[i]]


def calibrate(
    method: RDE | Callable[[float], RDE],
    x: Tensor,
    *,
    target: int | str | Sequence[int | str] | Tensor | None = None,
    keep_probability: float | None = None,
    sparsity: float | None = None,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    start: float | None = None,
    max_runs: int = 8,
    tolerance: float | None = None,
    factor: float = 10.0,
    threshold: float = 0.5,
    samples: int = 64,
    seed: int = 0,
    warm_start: bool = False,
    progress: bool = False,
    desc: str | None = None,
) -> list[Calibration]:
    """Search ``lambda_k`` per image so that its explanation reaches a keep-probability or sparsity.

    Args:
        method: An RDE explainer (``CartoonX(model)``, ``PixelRDE(model)``, any :class:`RDE`; it
            is copied with each ``lambda_k``, not changed) or a factory ``lambda_k -> explainer``.
        x: Images ``(B, C, H, W)`` or one image ``(C, H, W)``; each is searched on its own.
        target: Label to explain, as for :meth:`rdex.rde.RDE.explain` (the prediction by default).
        keep_probability: Share of the label's probability the explanation should keep, in
            ``(0, 1)`` (see the module docstring for the exact measure).
        sparsity: Share of mask entries above ``threshold`` the explanation should have, in
            ``(0, 1)``. Give exactly one of the two.
        bounds: Smallest and largest ``lambda_k`` tried.
        start: First ``lambda_k`` tried (default: the explainer's, or for a factory the geometric
            mean of ``bounds``), clipped into ``bounds``.
        max_runs: Most optimisations per image (each costs one explanation).
        tolerance: How close to the target counts as reached (default: 0.02 for keep-probability,
            a tenth of the target for sparsity).
        factor: Step on the log scale while the target is not yet bracketed.
        threshold: Mask entries above it count as kept (sparsity).
        samples: Obfuscations drawn to measure the keep-probability.
        seed: Seed of those draws.
        warm_start: Start a run from the mask of the run with the largest ``lambda_k`` that kept
            more than the target, when there is one (else from ones). Off by default: see the
            module docstring.
        progress: Show each run's progress bar.
        desc: Label of the progress bars.

    Returns:
        One :class:`Calibration` per image.

    Raises:
        ValueError: A target that is not a number strictly between 0 and 1 (or both or neither
            given), bad bounds or search settings.

    Examples:
        >>> import torch
        >>> from rdex.calibrate import calibrate
        >>> from rdex.methods import PixelRDE
        >>> torch.manual_seed(0) and None
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
        >>> explainer = PixelRDE(model, preset="preview", steps=20, samples=4)
        >>> [c] = calibrate(explainer, torch.rand(3, 8, 8), sparsity=0.3, max_runs=3)
        >>> len(c.runs) <= 3 and c.result.config.lambda_k == c.lambda_k
        True
    """
    goal, goal_value = _check_goal(keep_probability, sparsity)
    lo, hi = (_number("bounds", b) for b in bounds)
    if not 0.0 < lo < hi:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds!r}")
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
        raise ValueError(f"max_runs must be a positive integer, got {max_runs!r}")
    tol = (0.02 if goal == "keep_probability" else goal_value / 10) if tolerance is None else None
    if tol is None:
        tol = _number("tolerance", tolerance)
        if tol <= 0:
            raise ValueError(f"tolerance must be positive, got {tolerance!r}")
    if _number("factor", factor) <= 1.0:
        raise ValueError(f"factor must be above 1, got {factor!r}")
    if not 0.0 <= _number("threshold", threshold) < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if start is None:
        start = method.config.lambda_k if isinstance(method, RDE) else math.sqrt(lo * hi)
    first = min(max(_number("start", start), lo), hi)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    settings = {
        "bounds": [lo, hi],
        "max_runs": max_runs,
        "factor": float(factor),
        "warm_start": warm_start,
        "measure": (
            f"mean probability of the label over {samples} obfuscations (seed {seed}) / "
            "probability for the image"
            if goal == "keep_probability"
            else f"share of mask entries > {threshold:g}"
        ),
    }
    return [
        _search(
            method,
            x[i : i + 1],
            _one_target(target, i, x.shape[0]),
            goal,
            goal_value,
            tol,
            first,
            (lo, hi),
            max_runs,
            float(factor),
            threshold,
            samples,
            seed,
            warm_start,
            progress,
            desc,
            settings,
        )  # fmt: skip
        for i in range(x.shape[0])
    ]


def _search(
    method: RDE | Callable[[float], RDE],
    x: Tensor,
    target: Any,
    goal: Goal,
    goal_value: float,
    tol: float,
    first: float,
    bounds: tuple[float, float],
    max_runs: int,
    factor: float,
    threshold: float,
    samples: int,
    seed: int,
    warm_start: bool,
    progress: bool,
    desc: str | None,
    settings: dict[str, Any],
) -> Calibration:
    lo, hi = bounds
    runs: list[CalibrationRun] = []
    results: list[RDEResult] = []
    dense: float | None = None  # largest lambda_k whose value was above the target
    sparse: float | None = None  # smallest lambda_k whose value was below the target
    dense_index: int | None = None  # the run at ``dense``
    lam = first
    stop = f"max_runs ({max_runs}) reached"
    for _ in range(max_runs):
        explainer = _explainer_at(method, lam)
        began = time.perf_counter()
        # A warm start is from the dense end of the bracket, never from a run that kept too
        # little: a collapsed mask stays collapsed at a lower lambda_k (docs/how-to).
        source = dense_index if warm_start else None
        init = results[source].mask if source is not None else None
        result = explainer.explain(
            x,
            target=target,
            progress=progress,
            desc=f"{desc or 'search'} lambda_k={lam:.4g}",
            init_mask=init,
        )
        cfg = explainer.config
        evaluations = _FORWARD + (
            cfg.steps if explainer.obfuscation.deterministic else cfg.evaluations
        )
        if goal == "keep_probability":
            kept = measure_keep_probability(explainer, x, result, samples=samples, seed=seed)
            value = float(kept[0])
            evaluations += 1 if explainer.obfuscation.deterministic else samples
        else:
            value = float(mask_kept_share(result.mask, threshold=threshold)[0])
        if not math.isfinite(value):
            raise ValueError(f"the {goal} of the explanation at lambda_k={lam:g} is {value}")
        runs.append(
            CalibrationRun(
                lambda_k=lam,
                value=value,
                warm_from=None if source is None else runs[source].lambda_k,
                model_evaluations=evaluations,
                runtime_s=time.perf_counter() - began,
            )
        )
        results.append(result)
        if abs(value - goal_value) <= tol:
            stop = "within tolerance"
            break
        if value > goal_value:
            dense = lam if dense is None else max(dense, lam)
            if dense == lam:
                dense_index = len(runs) - 1
        else:
            sparse = lam if sparse is None else min(sparse, lam)
        if dense is not None and sparse is not None:
            a, b = sorted((dense, sparse))
            if b / a < 1.001:
                stop = "bracket narrower than 0.1 %"
                break
            lam = math.sqrt(a * b)
        elif sparse is None:  # everything so far keeps too much: raise lambda_k
            if lam >= hi:
                stop = f"upper bound {hi:g} still keeps too much"
                break
            lam = min(hi, lam * factor)
        else:  # everything so far keeps too little: lower lambda_k
            if lam <= lo:
                stop = f"lower bound {lo:g} still keeps too little"
                break
            lam = max(lo, lam / factor)
    best = min(range(len(runs)), key=lambda j: abs(runs[j].value - goal_value))
    chosen = runs[best]
    calibration = Calibration(
        result=results[best],
        goal=goal,
        target=goal_value,
        tolerance=tol,
        lambda_k=chosen.lambda_k,
        value=chosen.value,
        converged=abs(chosen.value - goal_value) <= tol,
        stop=stop,
        runs=runs,
        settings=settings,
    )
    calibration.result.extra["calibration"] = calibration.to_dict()
    return calibration


class Calibrated:
    """An explainer whose ``lambda_k`` is searched for every image (``explain`` like RDE's).

    Args:
        explainer: The RDE method (its ``lambda_k`` is the search's start).
        keep_probability: Target keep-probability, see :func:`calibrate`.
        sparsity: Target sparsity, see :func:`calibrate`.
        **search: Other options of :func:`calibrate` (``bounds``, ``max_runs``, ``tolerance``, ...).
    """

    def __init__(
        self,
        explainer: RDE,
        *,
        keep_probability: float | None = None,
        sparsity: float | None = None,
        **search: Any,
    ) -> None:
        _check_goal(keep_probability, sparsity)
        self.explainer = explainer
        self.keep_probability = keep_probability
        self.sparsity = sparsity
        self.search = search

    def explain(
        self,
        x: Tensor,
        *,
        target: int | str | Sequence[int | str] | Tensor | None = None,
        progress: bool = False,
        desc: str | None = None,
    ) -> RDEResult:
        """The chosen run's result for one image ``(1, C, H, W)`` or ``(C, H, W)``.

        The search trace is in ``result.extra["calibration"]`` (and in the JSON record).
        """
        if x.dim() == 4 and x.shape[0] != 1:
            raise ValueError("a calibrated explainer explains one image at a time (calibrate())")
        [calibration] = calibrate(
            self.explainer, x, target=target, progress=progress, desc=desc, keep_probability=self.keep_probability, sparsity=self.sparsity,
            **self.search,
        )  # fmt: skip
        return calibration.result
