"""The hyperparameters of an RDE optimisation: :class:`RDEConfig` and its named :data:`PRESETS`.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, Algorithm 1 and
    appendix A.2.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from rdex.checks import finite_number, integer
from rdex.distortions import get_distortion
from rdex.types import ModelOutput, Schedule

__all__ = ["RDEConfig", "PRESETS", "DEFAULT_PRESET", "preset"]


@dataclass(frozen=True)
class RDEConfig:
    """Hyperparameters of one RDE optimisation, stated the paper's way.

    Attributes:
        lambda_k: Sparsity level as ``lambda * k`` (``k`` mask entries); the penalty is
            ``lambda_k * mean(s)``. The paper uses [20, 80] for CartoonX and [3, 20] for Pixel RDE.
        steps: Number of optimisation steps ``N``.
        samples: Noise samples ``L`` per step.
        early_steps: The first ``early_steps`` steps draw ``early_samples`` noise samples each
            instead of ``samples`` (0: off). More samples while the mask first falls from ones,
            where the noise decides which entries go and two seeds would otherwise part ways.
        early_samples: Noise samples per step during the first ``early_steps`` steps.
        lr: Adam's learning rate (the initial one for a schedule).
        schedule: ``"constant"`` (the paper) or ``"cosine"`` (from ``lr`` down to ``lr_final``).
        lr_final: Final learning rate of the cosine schedule.
        hold: Share of the steps, in ``[0, 1)``, that the cosine schedule holds ``lr`` before
            annealing over the rest (0: anneal from the first step). Ignored by ``"constant"``.
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
            at most 16 obfuscations of 3x256x256 (measured in docs/performance.md).
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
    early_steps: int = 0
    early_samples: int = 0
    lr: float = 1e-3
    schedule: Schedule = "constant"
    lr_final: float = 1e-4
    hold: float = 0.0
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
        for name in (
            "lambda_k",
            "lr",
            "lr_final",
            "hold",
            "init",
            "distortion_scale",
            "spatial_l1",
        ):
            finite_number(name, getattr(self, name))
        for name in ("steps", "samples", "early_steps", "early_samples"):
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
        if self.early_steps < 0 or (self.early_steps > 0 and self.early_samples < 1):
            raise ValueError(
                "need early_steps >= 0 and, when early_steps > 0, early_samples >= 1; got "
                f"{self.early_steps}, {self.early_samples}"
            )
        if self.lr <= 0 or self.lr_final <= 0:
            raise ValueError("learning rates must be positive")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose constant or cosine")
        if not 0.0 <= self.hold < 1.0:
            raise ValueError(f"hold must lie in [0, 1), got {self.hold}")
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

    def samples_at(self, step: int) -> int:
        """Noise samples drawn at ``step`` (0-based)."""
        return self.early_samples if step < self.early_steps else self.samples

    @property
    def evaluations(self) -> int:
        """Model evaluations of one image's optimisation under random noise: the samples of all
        steps (a deterministic obfuscation needs one per step)."""
        early = min(self.early_steps, self.steps)
        return early * self.early_samples + (self.steps - early) * self.samples

    @property
    def path(self) -> float:
        """How far the schedule can carry a mask entry: ``sum_t lr_t`` (an Adam step moves an
        entry by about its learning rate at most, and most entries fall from 1 to near 0).

        Examples:
            >>> from rdex import preset
            >>> round(preset("paper").path, 2), round(preset("fast").path, 2)
            (2.0, 6.02)
        """
        return math.fsum(self.lr_at(t) for t in range(self.steps))

    @property
    def noise(self) -> float:
        """The Monte-Carlo noise the schedule carries: ``sqrt(sum_t lr_t^2 / L_t)``, how far a
        random walk of its steps drifts along a direction where the objective is flat.

        Seeds part more the larger it is (``1 - SSIM`` between two seeds grows about in
        proportion to it at 128 px, docs/performance.md), and at a budget of ``evaluations`` it
        is at least ``path / sqrt(evaluations)`` (Cauchy-Schwarz; equal for a constant learning
        rate and sample count), so a schedule that goes far on few evaluations is noisy.

        Examples:
            >>> from rdex import preset
            >>> round(preset("fast").noise, 3), round(preset("paper").noise, 4)
            (0.092, 0.0056)
        """
        return math.sqrt(
            math.fsum(self.lr_at(t) ** 2 / self.samples_at(t) for t in range(self.steps))
        )

    def lr_at(self, step: int) -> float:
        """Learning rate used at ``step`` (0-based)."""
        if self.schedule == "constant" or self.steps <= 1:
            return self.lr
        held = int(self.hold * self.steps)
        if step < held or held >= self.steps - 1:
            return self.lr
        t = (step - held) / (self.steps - 1 - held)
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1.0 + math.cos(math.pi * t))


#: Named optimiser schedules. ``paper`` is appendix A.2 exactly. ``fast`` anneals the learning rate
#: (cosine from 0.03 to 1e-4) over 400 steps with 16 samples, 1/20 of the paper's model
#: evaluations. ``preview`` (the same anneal from 0.1 over 200 steps with 8 samples, 1/4 of
#: ``fast``'s evaluations) is for a first look, not paper quality. ``thorough`` (constant 0.005
#: over 1200 steps with 64 samples, 0.6x the paper's evaluations) goes as far as ``fast``
#: (:attr:`RDEConfig.path`) with under a quarter of its noise (:attr:`RDEConfig.noise`): nearer
#: the objective's optimum than the paper schedule, and seeds that agree more than ``fast``'s.
#: How close each comes to the paper schedule and to the best objective found, scored by the
#: benchmark's common evaluator, is in docs/performance.md.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"steps": 2000, "samples": 64, "lr": 1e-3, "schedule": "constant"},
    "fast": {"steps": 400, "samples": 16, "lr": 0.03, "schedule": "cosine", "lr_final": 1e-4},
    "preview": {"steps": 200, "samples": 8, "lr": 0.1, "schedule": "cosine", "lr_final": 1e-4},
    "thorough": {"steps": 1200, "samples": 64, "lr": 5e-3, "schedule": "constant"},
}


#: The schedule of the CLI (``rdex explain``, ``batch``, ``compare``, ...), the batch runner and
#: the captum and Quantus wrappers when none is named. The Python classes (``rdex.CartoonX``, ...)
#: default to ``"paper"``, appendix A.2.
DEFAULT_PRESET: str = "fast"


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
