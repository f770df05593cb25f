"""The RDE optimiser: masks over any representation, obfuscation and distortion.

``RDE(model, representation, obfuscation).explain(x)`` solves RDE's l1-relaxation (Definition 3)

    min_{s in [0, 1]^k}  E_{v ~ V_s}[ d(Phi(x), Phi(f(s * h + (1 - s) * v))) ] + lambda * ||s||_1

with Adam on a mask initialised to ones, ``L`` Monte-Carlo samples per step, obfuscations clipped to
the input range, and a projection onto ``[0, 1]`` after each step (Algorithm 1). Sparsity is given
as ``lambda_k = lambda * k`` (appendix A.2), i.e. the penalty is ``lambda_k * mean(s)``.

A batch of images is optimised in one loop with exactly the arithmetic of per-image runs, so a
batched run gives bit for bit the masks of per-image runs: every image has its own mask tensors
(Adam's state is per image), its own noise generator seeded with ``config.seed``, its own loss and
gradient, and its own forward passes, in chunks whose size depends on the image size only (a
model's output for one image can change in the last bits with the other images of its batch).

The distortion compares every obfuscation with a reference output computed by the same arithmetic
(the same decode, clip and forward pass shape, row for row), so that at ``s = 1`` the two are
bit-identical and the distortion and its gradient are exactly zero: otherwise the round-off of
``decode(encode(x))`` and of the model (about 1e-6) is a gradient that Adam, which normalises
gradients, turns into full-size steps, and ``lambda = 0`` would not give the greyscale image.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, section 4.1, Algorithm 1
    and appendix A.2. Macdonald et al., "A Rate-Distortion Framework for Explaining Neural Network
    Decisions", 2019.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
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
    explanation_warnings,
    finite_number,
    integer,
    resolve_target,
)
from rdex.distortions import get_distortion
from rdex.inference import FoldReport, fold_batchnorm
from rdex.obfuscations import Obfuscation, make_obfuscation
from rdex.representations import Representation, mask_shape
from rdex.types import Distortion, ExplanationKind, ModelOutput, Schedule

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

# Elements (C*H*W) per forward pass on CPU when ``sample_chunk`` is None: ~8 obfuscations of one
# 3x256x256 image (chosen by measurement: docs/performance.md).
_CPU_CHUNK_ELEMENTS = 8 * 3 * 256 * 256


@dataclass(frozen=True)
class RDEConfig:
    """Hyperparameters of one RDE optimisation, stated the paper's way.

    Attributes:
        lambda_k: Sparsity level as ``lambda * k`` (``k`` mask entries); the penalty is
            ``lambda_k * mean(s)``. The paper uses [20, 80] for CartoonX and [3, 20] for Pixel RDE.
        steps: Number of optimisation steps ``N``.
        samples: Noise samples ``L`` per step.
        lr: Adam's learning rate (the initial one for a schedule).
        schedule: ``"constant"`` (the paper) or ``"cosine"`` (from ``lr`` down to ``lr_final``).
        lr_final: Final learning rate of the cosine schedule.
        distortion: Name of a distortion in :data:`rdex.distortions.DISTORTIONS`.
        distortion_scale: Factor on the distortion (appendix A.4 uses ``1e6``).
        clip: Range the obfuscations are clipped to (``None``: no clipping).
        init: Initial value of every mask entry (Algorithm 1: ones).
        seed: Seed of the noise generators (``None``: nondeterministic).
        model_output: ``"softmax"`` turns logits into probabilities (classifiers), ``"identity"``
            compares raw outputs (for models that already output probabilities, or regressors).
        sample_chunk: Largest number of obfuscations of one image sent through the model at
            once (memory bound; the gradient is accumulated over chunks). Every forward pass
            holds obfuscations of one image only, so an image's result does not depend on the
            batch it is in. ``None``: automatic, all ``L`` at once on GPU; on CPU chunks of
            about 8 obfuscations of 3x256x256 (cache-sized; measured in docs/performance.md).
            Chunking changes results only by float summation order.
        channels_last: Run the model in channels-last memory format: the obfuscations and
            detached channels-last copies of the model's 4D weights (the caller's model is not
            touched). Faster convolutions on CPU than NCHW (docs/performance.md); converting
            only the inputs gains nothing. Results are unchanged up to float rounding.
        fold_batchnorm: Run a copy of the model with every eval-mode BatchNorm folded into the
            convolution before it (:func:`rdex.inference.fold_batchnorm`; checked against the
            model on the input, else the model runs as it is). The same function up to float
            rounding, with less forward+backward time (docs/performance.md).
        spatial_l1: Weight of the spatial penalty: the mean absolute value of the masked greyscale
            image ``f(s * h_grey)`` (clipped like the obfuscations), added per image to the loss
            (ShearletX and WaveletX, Kolek et al., CVPR 2023, section 3). 0 (default): off.
    """

    lambda_k: float = 20.0
    steps: int = 2000
    samples: int = 64
    lr: float = 1e-3
    schedule: Schedule = "constant"
    lr_final: float = 1e-4
    distortion: str = "label"
    distortion_scale: float = 1.0
    clip: tuple[float, float] | None = (0.0, 1.0)
    init: float = 1.0
    seed: int | None = 0
    model_output: ModelOutput = "softmax"
    sample_chunk: int | None = None
    channels_last: bool = True
    fold_batchnorm: bool = True
    spatial_l1: float = 0.0

    def __post_init__(self) -> None:
        for name in ("lambda_k", "lr", "lr_final", "init", "distortion_scale", "spatial_l1"):
            finite_number(name, getattr(self, name))
        for name in ("steps", "samples"):
            integer(name, getattr(self, name))
        if self.sample_chunk is not None:
            integer("sample_chunk", self.sample_chunk)
        if self.seed is not None and not -(2**63) <= integer("seed", self.seed) < 2**64:
            raise ValueError(f"seed must lie in [-2**63, 2**64), got {self.seed}")
        if self.clip is not None:
            if len(self.clip) != 2:
                raise ValueError(f"clip must be (low, high) or None, got {self.clip!r}")
            low, high = (finite_number("clip", c) for c in self.clip)
            if not low < high:
                raise ValueError(f"clip must have low < high, got {self.clip!r}")
        if self.distortion_scale <= 0:
            raise ValueError(f"distortion_scale must be positive, got {self.distortion_scale}")
        if self.model_output not in ("softmax", "identity"):
            raise ValueError(f"unknown model_output {self.model_output!r}; softmax or identity")
        if self.lambda_k < 0:
            raise ValueError(f"lambda_k must be non-negative, got {self.lambda_k}")
        if self.steps < 0 or self.samples < 1:
            raise ValueError(f"need steps >= 0 and samples >= 1, got {self.steps}, {self.samples}")
        if self.lr <= 0 or self.lr_final <= 0:
            raise ValueError("learning rates must be positive")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose constant or cosine")
        if not 0.0 <= self.init <= 1.0:
            raise ValueError(f"init must lie in [0, 1], got {self.init}")
        if not self.spatial_l1 >= 0:
            raise ValueError(f"spatial_l1 must be non-negative, got {self.spatial_l1}")
        if self.sample_chunk is not None and self.sample_chunk < 1:
            raise ValueError("sample_chunk must be at least 1")
        get_distortion(self.distortion)

    def replace(self, **changes: Any) -> RDEConfig:
        """A copy with some fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def lr_at(self, step: int) -> float:
        """Learning rate used at ``step`` (0-based)."""
        if self.schedule == "constant" or self.steps <= 1:
            return self.lr
        t = step / (self.steps - 1)
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1.0 + math.cos(math.pi * t))


#: Named optimiser schedules. ``paper`` is appendix A.2 exactly. ``fast`` anneals the learning rate
#: (cosine from 0.03 to 1e-4) over 400 steps with 16 samples, 1/20 of the paper's model
#: evaluations. ``preview`` is for a first look, not paper quality. How close each comes to the
#: paper schedule, scored by the benchmark's common evaluator, is in docs/performance.md.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"steps": 2000, "samples": 64, "lr": 1e-3, "schedule": "constant"},
    "fast": {"steps": 400, "samples": 16, "lr": 0.03, "schedule": "cosine", "lr_final": 1e-4},
    "preview": {"steps": 100, "samples": 8, "lr": 0.1, "schedule": "cosine", "lr_final": 1e-4},
}


def preset(name: str, **overrides: Any) -> RDEConfig:
    """An :class:`RDEConfig` from a named schedule in :data:`PRESETS`, with overrides.

    Examples:
        >>> from rdex import preset
        >>> cfg = preset("fast", lambda_k=40)
        >>> cfg.steps, cfg.samples, cfg.lr, cfg.lambda_k
        (400, 16, 0.03, 40)
        >>> cfg.lr_at(0), round(cfg.lr_at(399), 6)  # cosine from lr to lr_final
        (0.03, 0.0001)
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return RDEConfig(**PRESETS[name]).replace(**overrides)


@dataclass
class RDEResult:
    """Everything an RDE optimisation produced, for a batch of ``B`` inputs.

    Attributes:
        mask: Per band, the mask of shape ``(B, ...)`` (shared dimensions of size 1), in the
            representation's band order (for wavelets: pywt's ``wavedec2`` order).
        explanation: The picture of the explanation, ``(B, 1, H, W)`` in ``[0, 1]``: for CartoonX
            the masked greyscale image, for Pixel RDE the mask.
        explanation_rgb: The mask applied to every colour channel, inverted and clipped,
            ``(B, C, H, W)``.
        target: Explained label per input, ``(B,)``.
        probs: Model output for the inputs (post-softmax probabilities for classifiers), ``(B, m)``.
        history: Per-step ``distortion``, ``l1`` (mean mask value), ``loss`` and ``lr``, each
            ``(steps, B)`` (``lr``: ``(steps,)``).
        config: The settings used.
        band_names: Name of every band of the representation.
        runtime_s: Wall-clock time of the optimisation in seconds.
        method: Name of the method that produced the result.
        extra: Free-form metadata (representation, obfuscation, ...).
        warnings: Per input, what makes its explanation doubtful (an empty list when nothing
            does): a (nearly) empty mask (largest entry below :data:`EMPTY_MASK` or picture
            below :data:`EMPTY_PICTURE`) or a target probability below
            :data:`LOW_TARGET_PROB`, each with its likely cause and what to try.
    """

    mask: list[Tensor]
    explanation: Tensor
    explanation_rgb: Tensor
    target: Tensor
    probs: Tensor
    history: dict[str, Tensor]
    config: RDEConfig
    band_names: list[str]
    runtime_s: float
    method: str = "rde"
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[list[str]] = field(default_factory=list)

    @property
    def mask_flat(self) -> Tensor:
        """The mask as one vector per input, ``(B, k)``."""
        return torch.cat([m.flatten(1) for m in self.mask], dim=1)

    @property
    def target_prob(self) -> Tensor:
        """Probability (model output) of the explained label for the original input, ``(B,)``."""
        return self.probs.gather(1, self.target.view(-1, 1)).squeeze(1)

    @property
    def final_distortion(self) -> Tensor:
        """Monte-Carlo distortion at the last step, ``(B,)`` (NaN after zero steps)."""
        hist = self.history["distortion"]
        return hist[-1] if len(hist) else torch.full((len(self),), float("nan"))

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def to(self, device: torch.device | str) -> RDEResult:
        """A copy with all tensors on ``device``."""
        return dataclasses.replace(
            self,
            mask=[m.to(device) for m in self.mask],
            explanation=self.explanation.to(device),
            explanation_rgb=self.explanation_rgb.to(device),
            target=self.target.to(device),
            probs=self.probs.to(device),
        )

    def __getitem__(self, i: int) -> RDEResult:
        """The result of input ``i`` alone (batch dimension kept, of size one)."""
        sl = slice(i, i + 1) if i >= 0 else slice(i, i + 1 or None)
        return dataclasses.replace(
            self,
            mask=[m[sl] for m in self.mask],
            explanation=self.explanation[sl],
            explanation_rgb=self.explanation_rgb[sl],
            target=self.target[sl],
            probs=self.probs[sl],
            history={k: (v if v.dim() == 1 else v[:, sl]) for k, v in self.history.items()},
            warnings=self.warnings[sl],
        )


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return None


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode with no parameter gradients; the caller's flags come back after.

    The one place rdex touches a caller's module: every explainer, baseline and benchmark enters
    it around its work, so a user's model leaves exactly as it came in.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


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
                    probs = self._forward(x)
            except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as exc:
                self._run_model = self.model
                raise ModelError(
                    f"the model failed on inputs of shape {tuple(x.shape)}: {exc}"
                ) from exc
            try:
                return self._optimise(x, probs, target, reference_output, progress, desc, init_mask)
            finally:
                self._run_model = self.model

    def _chunk_size(self, x: Tensor, samples: int) -> int:
        """Obfuscations of one image per forward pass: a function of the image size only, so that
        an image gets the same forward passes whatever the batch it is explained in."""
        cfg = self.config
        if cfg.sample_chunk is not None:
            return max(1, min(samples, cfg.sample_chunk))
        if x.device.type == "cpu":
            # Small chunks stay in cache (measured: docs/performance.md). One pass would also
            # need memory for all L images.
            return max(1, min(samples, _CPU_CHUNK_ELEMENTS // max(1, x[0].numel())))
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
        cfg = self.config
        rep = self.representation
        start = time.perf_counter()
        batch = x.shape[0]
        shape = tuple(x.shape[1:])
        if probs.dim() != 2 or probs.shape[0] != batch or probs.shape[1] < 1:
            raise ModelError(
                f"the model must return outputs of shape (B, m) = ({batch}, m), got "
                f"{tuple(probs.shape)}"
            )
        if not bool(torch.isfinite(probs).all()):
            raise NonFiniteError(
                "the model's output for the inputs contains NaN or Inf; nothing can be explained"
            )
        with torch.no_grad():
            target_idx = resolve_target(self.model, probs, target)
            given: Tensor | None = None
            if reference_output is not None:
                if reference_output.numel() % probs.shape[1]:
                    raise ValueError(
                        f"reference_output of shape {tuple(reference_output.shape)} does not fit "
                        f"the model's {probs.shape[1]} outputs"
                    )
                given = reference_output.to(probs).reshape(-1, probs.shape[1])
                given = given.expand(batch, -1) if given.shape[0] == 1 else given
                if given.shape[0] != batch:
                    raise ValueError(
                        f"reference_output has {given.shape[0]} rows for {batch} inputs"
                    )
            bands = [b.detach() for b in rep.encode(x)]
            state = self.obfuscation.prepare(x, bands, rep)
            grey_bands = self._grey_bands(x) if cfg.spatial_l1 > 0 else None

        # One set of mask tensors per image: Adam's state and every operation on an image's
        # mask are then those of a run on that image alone.
        masks = [
            [
                torch.full(
                    mask_shape(b[i : i + 1], rep.shared_dims),
                    cfg.init,
                    device=x.device,
                    dtype=x.dtype,
                ).requires_grad_(True)
                for b in bands
            ]
            for i in range(batch)
        ]
        if init_mask is not None:
            _warm_start(masks, init_mask)
        k = sum(m.numel() for m in masks[0])
        optimizer = torch.optim.Adam([m for image in masks for m in image], lr=cfg.lr)
        samples = 1 if self.obfuscation.deterministic else cfg.samples
        chunk = self._chunk_size(x, samples)
        generators = [torch.Generator(device=x.device) for _ in range(batch)]
        for gen in generators:
            if cfg.seed is None:
                gen.seed()
            else:
                gen.manual_seed(cfg.seed)
        references: dict[tuple[int, int], Tensor] = {}

        def reference(i: int, rows: int) -> Tensor:
            if (i, rows) not in references:
                if given is not None:
                    references[i, rows] = given[i : i + 1].expand(rows, -1)
                else:
                    with torch.no_grad():
                        references[i, rows] = self._obfuscated_output(
                            [b[i : i + 1].expand(rows, *b.shape[1:]).contiguous() for b in bands],
                            shape,
                        )
            return references[i, rows]

        history = torch.zeros(3, cfg.steps, batch, device=x.device)
        lrs = torch.tensor([cfg.lr_at(i) for i in range(cfg.steps)])
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, desc=desc or self.method, unit="step", leave=False)
        for step in range(cfg.steps):
            for group in optimizer.param_groups:
                group["lr"] = float(lrs[step])
            noise = self.obfuscation.sample(state, samples, generators)
            for i in range(batch):
                mine = masks[i]
                grads = [torch.zeros_like(m) for m in mine]
                distortion = x.new_zeros(1)
                for lo in range(0, samples, chunk):
                    hi = min(samples, lo + chunk)
                    d = self._distortion_chunk(
                        mine,
                        [b[i : i + 1] for b in bands],
                        [v[i : i + 1, lo:hi] for v in noise],
                        shape,
                        reference(i, hi - lo),
                        target_idx[i : i + 1],
                    )
                    part = d.sum(dim=1) / samples
                    chunk_grads = torch.autograd.grad(part.sum(), mine)
                    for acc, grad in zip(grads, chunk_grads, strict=True):
                        acc += grad
                    distortion += part.detach()
                l1: Tensor = torch.stack([m.flatten(1).sum(dim=1) for m in mine]).sum(dim=0) / k
                penalty = cfg.lambda_k * l1
                if grey_bands is not None:
                    grey = [g[i : i + 1] for g in grey_bands]
                    penalty = penalty + cfg.spatial_l1 * self._spatial(mine, grey, x[i : i + 1])
                sparsity_grads = torch.autograd.grad(penalty.sum(), mine)
                for m, grad, grad_l1 in zip(mine, grads, sparsity_grads, strict=True):
                    m.grad = grad + grad_l1
                self._check_finite(distortion, mine, step, i)
                history[0, step, i] = distortion[0]
                history[1, step, i] = l1.detach()[0]
                history[2, step, i] = (distortion + penalty.detach())[0]
            optimizer.step()
            with torch.no_grad():
                for image in masks:
                    for m in image:
                        m.clamp_(0.0, 1.0)
            if self.callback is not None:
                self.callback(step, [torch.cat(band) for band in zip(*masks, strict=True)])
            if bar is not None:
                bar.update(1)
                if step % 20 == 0 or step == cfg.steps - 1:
                    bar.set_postfix(loss=f"{float(history[2, step].mean()):.4f}")
        if bar is not None:
            bar.close()

        final = [torch.cat(band).detach() for band in zip(*masks, strict=True)]
        with torch.no_grad():
            explanation, explanation_rgb = self._pictures(x, bands, final)
        labels = getattr(self.model, "labels", None)
        warnings = []
        for i in range(batch):
            j = int(target_idx[i])
            warnings.append(
                explanation_warnings(
                    mask_max=max(float(m[i].max()) for m in final),
                    picture_max=float(explanation[i].max()),
                    # Raw outputs ("identity") are no probabilities: only the mask is judged.
                    target_prob=float(probs[i, j]) if cfg.model_output == "softmax" else 1.0,
                    label=repr(labels[j]) if labels and j < len(labels) else f"label {j}",
                    lambda_k=cfg.lambda_k,
                )
            )
        return RDEResult(
            mask=final,
            explanation=explanation,
            explanation_rgb=explanation_rgb,
            target=target_idx,
            probs=probs,
            history={
                "distortion": history[0].cpu(),
                "l1": history[1].cpu(),
                "loss": history[2].cpu(),
                "lr": lrs,
            },
            config=cfg,
            band_names=rep.band_names(bands),
            runtime_s=time.perf_counter() - start,
            method=self.method,
            extra={"representation": repr(rep), "obfuscation": repr(self.obfuscation)},
            warnings=warnings,
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

    def _obfuscated_output(self, mixed: list[Tensor], shape: tuple[int, ...]) -> Tensor:
        """Model outputs ``(N, m)`` for coefficients ``(N, ...)``: decode, clip, forward.

        The reference output goes through this very function with the unmasked coefficients, so
        that at ``s = 1`` it is bit-identical to the outputs the distortion compares it with.
        """
        y = self.representation.decode(mixed, shape=shape)
        if self.config.clip is not None:
            y = y.clamp(*self.config.clip)
        return self._forward(y)

    def _grey_bands(self, x: Tensor) -> list[Tensor]:
        """Coefficients of the greyscale inputs, for the spatial penalty."""
        if x.dim() != 4:
            raise ValueError("the spatial penalty needs images of shape (B, C, H, W)")
        return [b.detach() for b in self.representation.encode(x.mean(dim=1, keepdim=True))]

    def _spatial(self, masks: list[Tensor], grey_bands: list[Tensor], x: Tensor) -> Tensor:
        """Mean absolute value of the masked greyscale image per input, ``(B,)``."""
        picture = self.representation.decode(
            [m * b for m, b in zip(masks, grey_bands, strict=True)], shape=(1, *x.shape[2:])
        )
        if self.config.clip is not None:
            picture = picture.clamp(*self.config.clip)
        return picture.abs().flatten(1).mean(dim=1)

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
        mixed = []
        for s, h, v in zip(masks, bands, noise, strict=True):
            s1 = s.unsqueeze(1)
            mixed.append((s1 * h.unsqueeze(1) + (1.0 - s1) * v).flatten(0, 1))
        out = self._obfuscated_output(mixed, shape)
        n = out.shape[0]
        # Row r is compared with reference row r: one "image" per row for the distortion.
        d = self._distortion(reference, out.unsqueeze(1), target.expand(n))
        return self.config.distortion_scale * d.view(1, n)

    def _pictures(
        self, x: Tensor, bands: list[Tensor], masks: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """The explanation images: greyscale/mask/retained, and the colour version."""
        rep = self.representation
        shape = tuple(x.shape[1:])
        rgb = rep.decode([m * b for m, b in zip(masks, bands, strict=True)], shape=shape)
        if self.config.clip is not None:
            rgb = rgb.clamp(*self.config.clip)
        if self.explanation_kind == "greyscale" and x.dim() == 4:
            grey = x.mean(dim=1, keepdim=True)
            grey_bands = rep.encode(grey)
            picture = rep.decode(
                [m * b for m, b in zip(masks, grey_bands, strict=True)], shape=grey.shape[1:]
            )
            if self.config.clip is not None:
                picture = picture.clamp(*self.config.clip)
        elif (
            self.explanation_kind == "mask"
            and len(masks) == 1
            and masks[0].shape[1:] == (1, *x.shape[2:])
        ):
            picture = masks[0].clone()
        else:
            picture = rgb.mean(dim=1, keepdim=True) if rgb.dim() == 4 else rgb
        return picture, rgb
