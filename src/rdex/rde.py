"""The RDE optimiser: masks over any representation, obfuscation and distortion.

``RDE(model, representation, obfuscation).explain(x)`` solves RDE's l1-relaxation (Definition 3)

    min_{s in [0, 1]^k}  E_{v ~ V_s}[ d(Phi(x), Phi(f(s * h + (1 - s) * v))) ] + lambda * ||s||_1

with Adam on a mask initialised to ones, ``L`` Monte-Carlo samples per step, obfuscations clipped to
the input range, and a projection onto ``[0, 1]`` after each step (Algorithm 1). Sparsity is given
as ``lambda_k = lambda * k`` (appendix A.2), i.e. the penalty is ``lambda_k * mean(s)``.

A batch of images is optimised in one loop with exactly the arithmetic of per-image runs, so a
batched run gives bit for bit the masks of per-image runs: every image has its own mask tensors
(Adam's state is per image), its own noise generator seeded with ``config.seed`` (its noise drawn
just before its passes, so a batch holds one image's noise at a time), its own loss and
gradient, and its own forward passes, in chunks whose size depends on the image size only (a
model's output for one image can change in the last bits with the other images of its batch).

The distortion compares every obfuscation with a reference output computed by the same arithmetic
(the same decode, clip and forward pass shape, row for row), so that at ``s = 1`` the two are
bit-identical and the distortion and its gradient are exactly zero: otherwise the round-off of
``decode(encode(x))`` and of the model (about 1e-6) is a gradient that Adam, which normalises
gradients, turns into full-size steps, and ``lambda = 0`` would not give the greyscale image.

:meth:`RDE._optimise` reads as Algorithm 1: ``_problem`` (coefficients, noise state, labels),
``_initial_masks``, then per step and image ``_image_step`` (``_distortion_grads`` over chunks of
obfuscations through :func:`rdex.obfuscations.obfuscate`, ``_penalty``), Adam, projection,
and ``_result``. The settings live in :mod:`rdex.config`, the result and its pictures in
:mod:`rdex.results`; both are re-exported here.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, section 4.1, Algorithm 1
    and appendix A.2. Macdonald et al., "A Rate-Distortion Framework for Explaining Neural Network
    Decisions", 2019.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rdex.checks import (
    EMPTY_MASK,
    EMPTY_PICTURE,
    LOW_TARGET_PROB,
    ModelError,
    NonFiniteError,
    check_images,
    check_inputs,
    check_model_output,
    check_reference_output,
    explanation_warnings,
    mask_warnings,
    resolve_target,
)
from rdex.config import PRESETS, RDEConfig, preset
from rdex.distortions import get_distortion
from rdex.inference import FoldReport, fold_batchnorm, frozen
from rdex.obfuscations import Obfuscation, ObfuscationState, make_obfuscation, obfuscate
from rdex.objective import Objective, against_empty, penalty
from rdex.representations import Representation, mask_shape
from rdex.results import RDEResult, environment, pictures
from rdex.types import Distortion, ExplanationKind

__all__ = [
    "RDEConfig",
    "RDEResult",
    "RDE",
    "PRESETS",
    "preset",
    "resolve_target",
    "frozen",
    "check_inputs",
    "check_images",
    "explanation_warnings",
    "ModelError",
    "NonFiniteError",
    "EMPTY_MASK",
    "EMPTY_PICTURE",
    "LOW_TARGET_PROB",
]

# Elements (C*H*W) per forward pass on CPU when ``sample_chunk`` is None: 16 obfuscations of one
# 3x256x256 image (chosen by measurement, docs/performance.md "How cost grows": with one thread a
# step at 256 px takes 0.48 s in one pass of 16 against 0.65 s in two of 8; with two threads and
# at 128 and 512 px the pass size changes the time by 5 % or less).
_CPU_CHUNK_ELEMENTS = 16 * 3 * 256 * 256


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return None


def _warm_start(masks: list[list[Tensor]], init_mask: Sequence[Tensor]) -> None:
    """Copy a starting mask into the optimiser's per-image masks, checking bands, shapes, values."""
    bands = len(masks[0])
    if len(init_mask) != bands:
        raise ValueError(f"init_mask has {len(init_mask)} bands, the representation {bands}")
    with torch.no_grad():
        for j, s in enumerate(init_mask):
            need = (len(masks), *masks[0][j].shape[1:])
            if tuple(s.shape) != need:
                raise ValueError(f"init_mask band of shape {tuple(s.shape)}, need {need}")
            if not bool(((s >= 0) & (s <= 1)).all()):
                raise ValueError("init_mask values must lie in [0, 1] (and not be NaN)")
            for i, image in enumerate(masks):
                image[j].copy_(s[i : i + 1])


@dataclass
class _Problem:
    """What every step of one explanation reads: the inputs and their coefficients, the
    obfuscation's state, the labels, and the outputs the distortion compares with."""

    x: Tensor
    bands: list[Tensor]
    states: list[ObfuscationState]  # one per input: its noise is drawn when it is optimised
    target: Tensor
    given: Tensor | None  # the caller's reference output, one row per input
    grey_bands: list[Tensor] | None  # for the spatial penalty
    chunk: int
    references: dict[tuple[int, int], Tensor] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])


def _generators(x: Tensor, seed: int | None) -> list[torch.Generator]:
    """One noise generator per input, each seeded with ``seed``: a batch gives single runs."""
    generators = [torch.Generator(device=x.device) for _ in range(x.shape[0])]
    for gen in generators:
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
    return generators


def _project(masks: list[list[Tensor]]) -> None:
    """Projection onto ``[0, 1]`` after every step (Algorithm 1)."""
    with torch.no_grad():
        for image in masks:
            for m in image:
                m.clamp_(0.0, 1.0)


class RDE:
    """Rate-distortion explanation over any representation, obfuscation and distortion.

    Args:
        model: A model taking inputs in the representation's input space (images in ``[0, 1]``)
            and returning logits (or outputs, see ``RDEConfig.model_output``). It is run in eval
            mode; the caller's object is restored afterwards and its parameters get no gradient.
        representation: The representation ``x = f(h)``.
        obfuscation: An :class:`~rdex.obfuscations.Obfuscation` or its name.
        config: Hyperparameters; keyword overrides are applied on top.
        distortion: A callable distortion overriding ``config.distortion`` (same signature as the
            built-ins in :mod:`rdex.distortions`).
        explanation: What :attr:`RDEResult.explanation` shows: ``"greyscale"`` (masked greyscale
            image, CartoonX), ``"mask"`` (Pixel RDE) or ``"retained"`` (masked input, mean of channels).

    Attributes:
        callback: ``None`` or a function called after every step as ``callback(step, masks)``
            with the current masks (per band, ``(B, ...)``; live tensors: clone what you keep).
            Used by the time-to-quality benchmark (:mod:`rdex.bench`) to snapshot masks.

    Examples:
        RDE over the Fourier representation with zeros as obfuscation and the l2 distortion:

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        >>> x = torch.rand(2, 3, 64, 64)  # two images in [0, 1]
        >>> from rdex import RDE, Fourier, preset
        >>> rde = RDE(model, Fourier(), "zeros", config=preset("preview", steps=3, distortion="l2"))
        >>> result = rde.explain(x)
        >>> result.history["loss"].shape  # (steps, B)
        torch.Size([3, 2])

    References:
        Kolek et al., ECCV 2022, Definition 3 and Algorithm 1.
    """

    method = "rde"

    def __init__(
        self,
        model: nn.Module,
        representation: Representation,
        obfuscation: Obfuscation | str = "gaussian",
        *,
        config: RDEConfig | None = None,
        distortion: Distortion | None = None,
        explanation: ExplanationKind = "retained",
        **overrides: Any,
    ) -> None:
        self.model = model
        self.representation = representation
        self.obfuscation = make_obfuscation(obfuscation)
        self.config = (config or RDEConfig()).replace(**overrides)
        self._distortion = distortion or get_distortion(self.config.distortion)
        if explanation not in ("greyscale", "mask", "retained"):
            raise ValueError(f"unknown explanation kind {explanation!r}")
        self.explanation_kind: ExplanationKind = explanation
        self.callback: Callable[[int, list[Tensor]], None] | None = None
        self._run_model: Callable[[Tensor], Tensor] = model
        self.fold_report: FoldReport | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(representation={self.representation!r}, "
            f"obfuscation={self.obfuscation!r}, config={self.config!r})"
        )

    def _output(self, logits: Tensor) -> Tensor:
        if not isinstance(logits, Tensor):
            raise ModelError(
                f"the model must return a tensor of outputs (B, m), got {type(logits).__name__}"
            )
        if self.config.model_output == "softmax":
            return torch.softmax(logits.float(), dim=-1)
        return logits.float()

    def _forward(self, y: Tensor) -> Tensor:
        if self.config.channels_last and y.dim() == 4:
            y = y.contiguous(memory_format=torch.channels_last)
        return self._output(self._run_model(y))

    def _model_runner(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """The model as the optimiser calls it: frozen, BatchNorms folded and channels-last when
        configured (``x`` is the input, used to find and check the folds).

        Parameters and buffers are passed to :func:`torch.func.functional_call` as detached
        tensors, so no weight gradient is ever recorded whatever the caller's ``requires_grad``
        flags; 4D weights are copied once per explanation into channels-last layout (the input
        alone in channels-last leaves oneDNN reordering weights on every call). TorchScript models
        are called as they are.
        """
        model = self.model
        if isinstance(model, torch.jit.ScriptModule):
            return model
        if self.config.fold_batchnorm and x.dim() == 4 and len(x):
            model, self.fold_report = fold_batchnorm(model, x)
        state: dict[str, Tensor] = {}
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            t = tensor.detach()
            if self.config.channels_last and t.dim() == 4 and t.is_floating_point():
                t = t.contiguous(memory_format=torch.channels_last)
            state[name] = t
        if not state:
            return model
        return lambda y: torch.func.functional_call(model, state, (y,), tie_weights=True)

    def explain(
        self,
        x: Tensor,
        *,
        target: int | str | Sequence[int | str] | Tensor | None = None,
        reference_output: Tensor | None = None,
        progress: bool = False,
        desc: str | None = None,
        init_mask: Sequence[Tensor] | None = None,
    ) -> RDEResult:
        """Optimise the RDE mask for a batch of inputs.

        Args:
            x: Inputs of shape ``(B, ...)``, images ``(B, C, H, W)`` in ``[0, 1]``, floating
                point (cast to the model's floating dtype, e.g. float64 to float32: the model
                decides the arithmetic), without NaN or Inf.
            target: Label to explain per input (index, name, WordNet id, list, or integer
                tensor); the predicted label by default. Name a true label to ask what in the
                image supports it.
            reference_output: Output ``(B, m)`` or ``(m,)`` the distortion compares against instead
                of ``Phi(x)`` (appendix A.4 uses another image's output).
            progress: Show a progress bar with the current loss.
            desc: Label of the progress bar.
            init_mask: Starting mask per band (shapes as :attr:`RDEResult.mask`, values in
                ``[0, 1]``) instead of ``config.init`` everywhere: a warm start from an earlier
                result's ``mask`` (used by :func:`rdex.calibrate.calibrate`).

        Returns:
            An :class:`RDEResult`.

        Raises:
            TypeError: Inputs that are not a floating-point tensor, or a target of the wrong type.
            ValueError: Bad inputs or targets (see :func:`check_inputs`, :func:`resolve_target`);
                :class:`ModelError` when the model fails on the inputs; :class:`NonFiniteError`
                when the model's output, the loss or its gradient becomes NaN or Inf.
        """
        cfg = self.config
        x = check_inputs(x, clip=cfg.clip)
        dtype = _model_dtype(self.model)
        if dtype is not None and x.dtype != dtype:
            x = check_inputs(x.to(dtype), clip=cfg.clip)  # a cast can overflow to Inf
        if reference_output is not None:
            if not isinstance(reference_output, Tensor):
                raise TypeError("reference_output must be a tensor of shape (B, m) or (m,)")
            if not bool(torch.isfinite(reference_output).all()):
                raise ValueError("reference_output contains NaN or Inf values")
        with frozen(self.model):
            try:
                self._run_model = self._model_runner(x)
                with torch.no_grad():
                    # One image per pass, as its obfuscations go: the memory of this pass does not
                    # grow with the batch (docs/performance.md), and each image's output is its
                    # single run's.
                    outputs = [self._forward(x[i : i + 1]) for i in range(len(x))]
            except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as exc:
                self._run_model = self.model
                raise ModelError(
                    f"the model failed on inputs of shape {tuple(x.shape)}: {exc}"
                ) from exc
            try:
                if len(outputs) > 1:
                    for out in outputs:  # the clear error before concatenating
                        check_model_output(out, 1)
                probs = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
                return self._optimise(x, probs, target, reference_output, progress, desc, init_mask)
            finally:
                self._run_model = self.model

    def _chunk_size(self, x: Tensor, samples: int, elements: int | None = None) -> int:
        """Obfuscations of one image per forward pass: a function of the image size only, so that
        an image gets the same forward passes whatever the batch it is explained in. On CPU at
        most ``elements`` values per pass (default ``_CPU_CHUNK_ELEMENTS``); on GPU all
        ``samples`` at once."""
        cfg = self.config
        if cfg.sample_chunk is not None:
            return max(1, min(samples, cfg.sample_chunk))
        if x.device.type == "cpu":
            # Passes of a bounded size: bigger ones gain nothing on CPU (measured:
            # docs/performance.md) and need memory for all L images.
            limit = _CPU_CHUNK_ELEMENTS if elements is None else elements
            return max(1, min(samples, limit // max(1, x[0].numel())))
        return samples

    def _optimise(
        self,
        x: Tensor,
        probs: Tensor,
        target: Any,
        reference_output: Tensor | None,
        progress: bool,
        desc: str | None,
        init_mask: Sequence[Tensor] | None = None,
    ) -> RDEResult:
        """Algorithm 1 for every input: set up, then per step and per input the loss and its
        gradient, one Adam step for all masks and the projection onto ``[0, 1]``."""
        cfg = self.config
        start = time.perf_counter()
        problem = self._problem(x, probs, target, reference_output)
        masks = self._initial_masks(problem, init_mask)
        optimizer = torch.optim.Adam([m for image in masks for m in image], lr=cfg.lr)
        generators = _generators(x, cfg.seed)
        history = torch.zeros(3, cfg.steps, x.shape[0], device=x.device)
        lrs = torch.tensor([cfg.lr_at(i) for i in range(cfg.steps)])
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, desc=desc or self.method, unit="step", leave=False)
        for step in range(cfg.steps):
            for group in optimizer.param_groups:
                group["lr"] = float(lrs[step])
            draws = 1 if self.obfuscation.deterministic else cfg.samples_at(step)
            for i, mask in enumerate(masks):
                # Each input's noise is drawn just before its own passes, so a batch holds the
                # noise of one input at a time, as a single run does (memory: docs/performance.md).
                noise = self.obfuscation.sample(problem.states[i], draws, generators[i : i + 1])
                history[:, step, i] = self._image_step(problem, i, mask, noise, step)
            optimizer.step()
            _project(masks)
            if self.callback is not None:
                self.callback(step, [torch.cat(band) for band in zip(*masks, strict=True)])
            if bar is not None:
                bar.update(1)
                if step % 20 == 0 or step == cfg.steps - 1:
                    bar.set_postfix(loss=f"{float(history[2, step].mean()):.4f}")
        if bar is not None:
            bar.close()
        return self._result(problem, probs, masks, history, lrs, start)

    def _problem(
        self, x: Tensor, probs: Tensor, target: Any, reference_output: Tensor | None
    ) -> _Problem:
        """Check the model's output and compute what every step reads."""
        cfg = self.config
        check_model_output(probs, x.shape[0])
        with torch.no_grad():
            target_idx = resolve_target(self.model, probs, target)
            given = check_reference_output(reference_output, probs)
            rep = self.representation
            bands = [b.detach() for b in rep.encode(x)]
            states = [
                self.obfuscation.prepare(x[i : i + 1], [b[i : i + 1] for b in bands], rep)
                for i in range(x.shape[0])
            ]
            grey_bands = None
            if cfg.spatial_l1 > 0:
                if x.dim() != 4:
                    raise ValueError("the spatial penalty needs images of shape (B, C, H, W)")
                grey = x.mean(dim=1, keepdim=True)
                grey_bands = [b.detach() for b in self.representation.encode(grey)]
        # The most draws of any step: the early steps' or the later ones' (one if deterministic).
        most = 1 if self.obfuscation.deterministic else max(cfg.samples_at(0), cfg.samples)
        chunk = self._chunk_size(x, most)
        return _Problem(x, bands, states, target_idx, given, grey_bands, chunk)

    def _initial_masks(
        self, problem: _Problem, init_mask: Sequence[Tensor] | None
    ) -> list[list[Tensor]]:
        """Per input, per band, a mask of ``config.init`` (or the warm start ``init_mask``).

        One set of mask tensors per image: Adam's state and every operation on an image's mask
        are then those of a run on that image alone.
        """
        x = problem.x
        masks = [
            [
                torch.full(
                    mask_shape(b[i : i + 1], self.representation.shared_dims),
                    self.config.init,
                    device=x.device,
                    dtype=x.dtype,
                ).requires_grad_(True)
                for b in problem.bands
            ]
            for i in range(x.shape[0])
        ]
        if init_mask is not None:
            _warm_start(masks, init_mask)
        return masks

    def _image_step(
        self, problem: _Problem, i: int, mask: list[Tensor], noise: list[Tensor], step: int
    ) -> Tensor:
        """Loss and gradient of input ``i`` at one step, the gradient written to its masks'
        ``.grad``; returns its distortion, mean mask value and loss, ``(3,)``."""
        grads, distortion = self._distortion_grads(problem, i, mask, noise)
        l1, penalty = self._penalty(problem, i, mask)
        penalty_grads = torch.autograd.grad(penalty.sum(), mask)
        for m, grad, grad_penalty in zip(mask, grads, penalty_grads, strict=True):
            m.grad = grad + grad_penalty
        self._check_finite(distortion, mask, step, i)
        return torch.stack([distortion[0], l1.detach()[0], (distortion + penalty.detach())[0]])

    def _distortion_grads(
        self, problem: _Problem, i: int, mask: list[Tensor], noise: list[Tensor]
    ) -> tuple[list[Tensor], Tensor]:
        """Monte-Carlo distortion ``(1,)`` of input ``i`` and its gradient per band, over chunks
        of ``problem.chunk`` obfuscations (the gradient is accumulated)."""
        samples = noise[0].shape[1]
        bands = [b[i : i + 1] for b in problem.bands]
        grads = [torch.zeros_like(m) for m in mask]
        distortion = problem.x.new_zeros(1)
        for lo in range(0, samples, problem.chunk):
            hi = min(samples, lo + problem.chunk)
            d = self._distortion_chunk(
                mask,
                bands,
                [v[:, lo:hi] for v in noise],
                problem.shape,
                self._reference(problem, i, hi - lo),
                problem.target[i : i + 1],
            )
            part = d.sum(dim=1) / samples
            for acc, grad in zip(grads, torch.autograd.grad(part.sum(), mask), strict=True):
                acc += grad
            distortion += part.detach()
        return grads, distortion

    def _reference(self, problem: _Problem, i: int, rows: int) -> Tensor:
        """The outputs ``(rows, m)`` that ``rows`` obfuscations of input ``i`` are compared with.

        The caller's ``reference_output``, or the model's output on the unmasked coefficients
        through the obfuscations' own arithmetic (:func:`~rdex.obfuscations.obfuscate` at
        ``s = 1``, the same forward-pass shape), so that the distortion is exactly zero there.
        """
        key = (i, rows)
        if key not in problem.references:
            if problem.given is not None:
                problem.references[key] = problem.given[i : i + 1].expand(rows, -1)
            else:
                bands = [
                    b[i : i + 1].expand(rows, *b.shape[1:]).contiguous() for b in problem.bands
                ]
                with torch.no_grad():
                    problem.references[key] = obfuscate(
                        self.representation, bands, shape=problem.shape, clip=self.config.clip,
                        model=self._forward,
                    )  # fmt: skip
        return problem.references[key]

    def _distortion_chunk(
        self,
        masks: list[Tensor],
        bands: list[Tensor],
        noise: list[Tensor],
        shape: tuple[int, ...],
        reference: Tensor,
        target: Tensor,
    ) -> Tensor:
        """Distortion ``(1, n)`` of the ``n`` obfuscations of one image in ``noise``.

        Args:
            masks, bands: Per band, the mask and coefficients of one image, ``(1, ...)``.
            noise: Per band, the perturbations ``(1, n, ...)``.
            shape: Shape of one input.
            reference: Reference output per obfuscation, ``(n, m)``.
            target: The image's label, ``(1,)``.
        """
        out = obfuscate(
            self.representation, bands, shape=shape, mask=masks, noise=noise,
            clip=self.config.clip, model=self._forward,
        )  # fmt: skip
        n = out.shape[0]
        # Row r is compared with reference row r: one "image" per row for the distortion.
        d = self._distortion(reference, out.unsqueeze(1), target.expand(n))
        return self.config.distortion_scale * d.view(1, n)

    def _penalty(self, problem: _Problem, i: int, mask: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Mean mask value ``(1,)`` of input ``i`` and its penalty (:func:`rdex.objective.penalty`)."""
        grey = None if problem.grey_bands is None else [g[i : i + 1] for g in problem.grey_bands]
        return penalty(
            self.config, mask, problem.x[i : i + 1], self.representation, grey_bands=grey
        )

    @staticmethod
    def _check_finite(distortion: Tensor, masks: list[Tensor], step: int, image: int) -> None:
        """Stop with a reason when the loss or the gradient of an image is not finite."""
        if not bool(torch.isfinite(distortion).all()):
            raise NonFiniteError(
                f"the distortion became {float(distortion[0])} at step {step + 1} for input "
                f"{image}: the model returned NaN or Inf for an obfuscated input"
            )
        for m in masks:
            if m.grad is not None and not bool(torch.isfinite(m.grad).all()):
                raise NonFiniteError(
                    f"the gradient of the mask became NaN or Inf at step {step + 1} for input "
                    f"{image}: the model's gradient is not finite for an obfuscated input"
                )

    def render(
        self,
        x: Tensor,
        mask: Sequence[Tensor],
        *,
        probs: Tensor,
        target: Tensor,
        bands: Sequence[Tensor] | None = None,
        objective: Objective | None = None,
        empty: Objective | None = None,
    ) -> tuple[Tensor, Tensor, list[list[str]]]:
        """The pictures and warnings of a mask, as :attr:`RDEResult.explanation`,
        :attr:`RDEResult.explanation_rgb` and :attr:`RDEResult.warnings` have them.

        For a mask this explainer did not optimise itself (a mean over seeds,
        :mod:`rdex.seeds`), so that it is drawn and judged as the optimised ones are.

        Args:
            x: The inputs ``(B, ...)``.
            mask: Mask per band, ``(B, ...)`` (as :attr:`RDEResult.mask`).
            probs: The model's output for ``x``, ``(B, m)``.
            target: The explained label per input, ``(B,)``.
            bands: The coefficients of ``x``, if already computed.
            objective, empty: The mask's and the empty mask's objective
                (:func:`rdex.objective.mask_objective`, same draws): a warning when the empty
                mask scores as well.
        """
        cfg = self.config
        with torch.no_grad():
            coefficients = self.representation.encode(x) if bands is None else bands
            explanation, explanation_rgb = pictures(
                x, coefficients, mask, self.representation, kind=self.explanation_kind,
                clip=cfg.clip,
            )  # fmt: skip
        warnings = mask_warnings(
            mask, explanation, probs=probs, target=target, config=cfg,
            labels=getattr(self.model, "labels", None), objective=objective, empty=empty,
        )  # fmt: skip
        return explanation, explanation_rgb, warnings

    def _result(
        self,
        problem: _Problem,
        probs: Tensor,
        masks: list[list[Tensor]],
        history: Tensor,
        lrs: Tensor,
        start: float,
    ) -> RDEResult:
        """The final masks as ``(B, ...)`` per band, their pictures, warnings and history."""
        cfg = self.config
        rep = self.representation
        final = [torch.cat(band).detach() for band in zip(*masks, strict=True)]
        # The explanation against deleting everything, on the same seeded draws.
        found, empty = against_empty(
            self, problem.x, final, probs=probs, target=problem.target,
            reference_output=problem.given, seed=0 if cfg.seed is None else cfg.seed,
        )  # fmt: skip
        explanation, explanation_rgb, warnings = self.render(
            problem.x, final, probs=probs, target=problem.target, bands=problem.bands,
            objective=found, empty=empty,
        )  # fmt: skip
        return RDEResult(
            mask=final,
            explanation=explanation,
            explanation_rgb=explanation_rgb,
            target=problem.target,
            probs=probs,
            history={
                "distortion": history[0].cpu(),
                "l1": history[1].cpu(),
                "loss": history[2].cpu(),
                "lr": lrs,
            },
            config=cfg,
            band_names=rep.band_names(problem.bands),
            runtime_s=time.perf_counter() - start,
            method=self.method,
            extra={
                "representation": repr(rep),
                "obfuscation": repr(self.obfuscation),
                "environment": environment(problem.x.device),
                "objective": found.value.tolist(),
                "empty_objective": empty.value.tolist(),
            },
            warnings=warnings,
        )
