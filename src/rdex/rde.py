"""The RDE optimiser: masks over any representation, obfuscation and distortion.

``RDE(model, representation, obfuscation).explain(x)`` solves RDE's l1-relaxation (Definition 3)

    min_{s in [0, 1]^k}  E_{v ~ V_s}[ d(Phi(x), Phi(f(s * h + (1 - s) * v))) ] + lambda * ||s||_1

with Adam on a mask initialised to ones, ``L`` Monte-Carlo samples per step, obfuscations clipped to
the input range, and a projection onto ``[0, 1]`` after each step (Algorithm 1). Sparsity is given
as ``lambda_k = lambda * k`` (appendix A.2), i.e. the penalty is ``lambda_k * mean(s)``.

A batch of images is optimised in one loop: the loss is the sum of per-image losses, Adam acts per
element and every image draws its noise from its own generator seeded with ``config.seed``, so a
batched run gives the masks of per-image runs.

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

from rdex.distortions import get_distortion
from rdex.inference import FoldReport, fold_batchnorm
from rdex.obfuscations import Obfuscation, make_obfuscation
from rdex.representations import Representation, mask_shape
from rdex.types import Distortion, ExplanationKind, ModelOutput, Schedule

__all__ = ["RDEConfig", "RDEResult", "RDE", "PRESETS", "preset", "resolve_target", "frozen"]

# Elements (C*H*W summed over images) per forward pass on CPU when ``sample_chunk`` is None:
# ~8 images of 3x256x256 (see RDE._optimise and benchmarks/step_levers.py).
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
        sample_chunk: Largest number of obfuscations sent through the model at once (memory bound;
            the gradient is accumulated over chunks). ``None``: automatic, all ``B * L`` at once
            on GPU; on CPU chunks of about 8 images of 3x256x256 (cache-sized: 1.3x faster per
            step than 16 with 2 threads). Chunking changes results only by float summation order.
        channels_last: Run the model in channels-last memory format: the obfuscations and
            detached channels-last copies of the model's 4D weights (the caller's model is not
            touched). About 1.9x faster convolutions on CPU than NCHW (``rdex bench``); converting
            only the inputs gains nothing. Results are unchanged up to float rounding.
        fold_batchnorm: Run a copy of the model with every eval-mode BatchNorm folded into the
            convolution before it (:func:`rdex.inference.fold_batchnorm`; checked against the
            model on the input, else the model runs as it is). The same function up to float
            rounding, with about a quarter less forward+backward time on EfficientNet-Lite0.
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

    def __post_init__(self) -> None:
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
#: evaluations. Scored by the benchmark's common evaluator against the paper schedule: at 64 px
#: (rocket) within the paper's own two-seed floor (objective 0.96-1.02x, SSIM 0.94-0.98); at
#: 128 px (chelsea) objective 1.02-1.03x but SSIM 0.93-0.94, where two paper runs agree to 0.994
#: (docs/performance.md). ``preview`` is for a first look (the demo: 33 s at 256x256 on two CPU
#: cores); 1.3x (64 px) to 1.7-1.9x (128 px) the paper schedule's objective, not paper quality.
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
        )


def resolve_target(
    model: nn.Module, probs: Tensor, target: int | str | Sequence[int | str] | Tensor | None
) -> Tensor:
    """Explained label per input: the prediction by default, or labels given by index or name.

    Names are looked up with the model's ``label_index`` (see :class:`rdex.models.Classifier`).
    """
    batch = probs.shape[0]
    if target is None:
        return probs.argmax(dim=1)
    if isinstance(target, Tensor):
        values = target.to(device=probs.device, dtype=torch.long).flatten()
    else:
        items = [target] if isinstance(target, int | str) else list(target)
        indices = []
        for item in items:
            if isinstance(item, str) and not item.lstrip("-").isdigit():
                lookup = getattr(model, "label_index", None)
                if lookup is None:
                    raise ValueError(
                        f"label {item!r} given by name, but the model has no label names"
                    )
                indices.append(int(lookup(item)))
            else:
                indices.append(int(item))
        values = torch.tensor(indices, device=probs.device, dtype=torch.long)
    if values.numel() == 1:
        values = values.expand(batch).clone()
    if values.numel() != batch:
        raise ValueError(f"{values.numel()} targets for {batch} inputs")
    if bool(((values < 0) | (values >= probs.shape[1])).any()):
        raise ValueError(f"target out of range [0, {probs.shape[1]}): {values.tolist()}")
    return values


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
    ) -> RDEResult:
        """Optimise the RDE mask for a batch of inputs.

        Args:
            x: Inputs of shape ``(B, ...)``, images ``(B, C, H, W)`` in ``[0, 1]``.
            target: Label to explain per input (index, name, list, or tensor); the predicted label
                by default. Name a true label to ask what in the image supports it.
            reference_output: Output ``(B, m)`` or ``(m,)`` the distortion compares against instead
                of ``Phi(x)`` (appendix A.4 uses another image's output).
            progress: Show a progress bar with the current loss.
            desc: Label of the progress bar.

        Returns:
            An :class:`RDEResult`.
        """
        if not x.is_floating_point():
            raise ValueError(f"inputs must be floating point, got {x.dtype}")
        cfg = self.config
        if cfg.clip is not None and x.numel() and (x.min() < cfg.clip[0] or x.max() > cfg.clip[1]):
            raise ValueError(
                f"inputs must lie in [{cfg.clip[0]}, {cfg.clip[1]}] (got [{float(x.min()):.3g}, "
                f"{float(x.max()):.3g}]); normalisation belongs inside the model"
            )
        with frozen(self.model):
            self._run_model = self._model_runner(x)
            try:
                return self._optimise(x, target, reference_output, progress, desc)
            finally:
                self._run_model = self.model

    def _optimise(
        self,
        x: Tensor,
        target: Any,
        reference_output: Tensor | None,
        progress: bool,
        desc: str | None,
    ) -> RDEResult:
        cfg = self.config
        rep = self.representation
        start = time.perf_counter()
        batch = x.shape[0]
        shape = tuple(x.shape[1:])
        with torch.no_grad():
            probs = self._forward(x)
            target_idx = resolve_target(self.model, probs, target)
            if reference_output is None:
                reference = probs
            else:
                reference = reference_output.to(probs).reshape(-1, probs.shape[1])
                reference = reference.expand(batch, -1) if reference.shape[0] == 1 else reference
            bands = [b.detach() for b in rep.encode(x)]
            state = self.obfuscation.prepare(x, bands, rep)

        masks = [
            torch.full(
                mask_shape(b, rep.shared_dims), cfg.init, device=x.device, dtype=x.dtype
            ).requires_grad_(True)
            for b in bands
        ]
        k = sum(m[0].numel() for m in masks)
        optimizer = torch.optim.Adam(masks, lr=cfg.lr)
        samples = 1 if self.obfuscation.deterministic else cfg.samples
        if cfg.sample_chunk is None and x.device.type == "cpu":
            # Small chunks stay in cache: at 256x256 on an idle 2-core CPU a step with chunks of
            # 8 images took 0.51 s against 0.68 s with 16 (2 threads; 1 thread: 4 and 8 equal),
            # docs/performance.md. One pass would also need memory for all B * L images.
            per_chunk = max(1, _CPU_CHUNK_ELEMENTS // max(1, x[0].numel()))
            chunk = max(1, min(samples, per_chunk // batch or 1))
        elif cfg.sample_chunk is None:
            chunk = samples
        else:
            chunk = max(1, min(samples, cfg.sample_chunk // batch or 1))
        generators = [torch.Generator(device=x.device) for _ in range(batch)]
        for gen in generators:
            if cfg.seed is None:
                gen.seed()
            else:
                gen.manual_seed(cfg.seed)

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
            grads = [torch.zeros_like(m) for m in masks]
            distortion = x.new_zeros(batch)
            for lo in range(0, samples, chunk):
                hi = min(samples, lo + chunk)
                d = self._distortion_chunk(
                    masks, bands, noise, lo, hi, shape, reference, target_idx
                )
                part = d.sum(dim=1) / samples
                chunk_grads = torch.autograd.grad(part.sum(), masks)
                for acc, grad in zip(grads, chunk_grads, strict=True):
                    acc += grad
                distortion += part.detach()
            l1: Tensor = torch.stack([m.flatten(1).sum(dim=1) for m in masks]).sum(dim=0) / k
            sparsity_grads = torch.autograd.grad((cfg.lambda_k * l1).sum(), masks)
            for m, grad, grad_l1 in zip(masks, grads, sparsity_grads, strict=True):
                m.grad = grad + grad_l1
            optimizer.step()
            with torch.no_grad():
                for m in masks:
                    m.clamp_(0.0, 1.0)
            history[0, step] = distortion
            history[1, step] = l1.detach()
            history[2, step] = distortion + cfg.lambda_k * l1.detach()
            if self.callback is not None:
                self.callback(step, masks)
            if bar is not None:
                bar.update(1)
                if step % 20 == 0 or step == cfg.steps - 1:
                    bar.set_postfix(loss=f"{float(history[2, step].mean()):.4f}")
        if bar is not None:
            bar.close()

        final = [m.detach() for m in masks]
        with torch.no_grad():
            explanation, explanation_rgb = self._pictures(x, bands, final)
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
        )

    def _distortion_chunk(
        self,
        masks: list[Tensor],
        bands: list[Tensor],
        noise: list[Tensor],
        lo: int,
        hi: int,
        shape: tuple[int, ...],
        reference: Tensor,
        target: Tensor,
    ) -> Tensor:
        """Distortion ``(B, hi - lo)`` of obfuscations ``lo..hi`` of every input."""
        batch = bands[0].shape[0]
        mixed = []
        for s, h, v in zip(masks, bands, noise, strict=True):
            s1 = s.unsqueeze(1)
            mixed.append((s1 * h.unsqueeze(1) + (1.0 - s1) * v[:, lo:hi]).flatten(0, 1))
        y = self.representation.decode(mixed, shape=shape)
        if self.config.clip is not None:
            y = y.clamp(*self.config.clip)
        out = self._forward(y).view(batch, hi - lo, -1)
        return self.config.distortion_scale * self._distortion(reference, out, target)

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
