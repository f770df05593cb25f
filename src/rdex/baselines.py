"""Baseline attribution methods, registered beside the RDE methods (:mod:`rdex.methods.registry`).

The paper compares CartoonX with Pixel RDE, Integrated Gradients, SmoothGrad, Guided Backprop and
LRP (section 5.2, appendix A.2). The baselines are computed by the libraries practitioners trust:
captum (Integrated Gradients with 100 steps, SmoothGrad with 10 samples and a standard deviation of
0.1 on ``[0, 1]`` images, Guided Backprop) and zennit (LRP with the ``EpsilonPlusFlat`` composite
and batch-norm / ResNet canonizers). Each baseline checks what it can check about its own validity:

* :func:`lrp` sums the relevance and compares it with the explained logit (conservation); when the
  relative difference exceeds ``rtol`` (default :data:`LRP_RTOL`) it refuses with
  :class:`UnsupportedModelError` instead of returning a wrong map. Layers without an LRP rule that
  the composite passes through (e.g. residual additions without a canonizer, squeeze-and-excitation
  products, Hardswish) break conservation by large factors, which this catches.
* :func:`guided_backprop` warns (:class:`BaselineWarning`) when the model has activation modules
  other than ``nn.ReLU``: captum only guides ``nn.ReLU`` modules, the others (``ReLU6``, ``SiLU``,
  ``Hardswish``, ...) pass plain gradients. Functional ReLUs (``F.relu``) cannot be detected.

:data:`ATTRIBUTIONS` maps a method name to a callable with the common signature
``(model, x, *, target=None, **settings) -> Tensor`` of shape ``(B, 1, H, W)``: baselines return the
per-pixel attribution (by default the signed sum over colour channels, which keeps IG's
completeness and LRP's conservation); RDE methods return their explanation picture (CartoonX's
greyscale cartoon, Pixel RDE's mask) and default to the ``"fast"`` preset. Figures, metrics and the
batch runner treat all methods alike through it.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, section 5.2 and A.2.
    Sundararajan et al. 2017 (IG), Smilkov et al. 2017 (SmoothGrad), Springenberg et al. 2015
    (Guided Backprop), Bach et al. 2015 (LRP); Kokhlikyan et al. 2020 (captum); Anders et al.
    2021 (zennit).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rdex.methods.registry import (
    AliasView,
    Attribution,
    RegistryView,
    get_method,
    method_title,
    register_method,
    resolve_methods,
)
from rdex.rde import frozen, resolve_target

__all__ = [
    "ATTRIBUTIONS",
    "ALIASES",
    "BASELINES",
    "LRP_RTOL",
    "Attribution",
    "BaselineWarning",
    "UnsupportedModelError",
    "ChannelReduction",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "lrp",
    "lrp_canonizers",
    "attention_modules",
    "LRP_TRANSFORMER_NEEDS",
    "unguided_activations",
    "reduce_channels",
    "method_label",
    "resolve_methods",
    "get_attribution",
    "check_baselines",
    "check_architectures",
    "format_check_table",
    "QUICK_SETTINGS",
]

#: Default relative tolerance of LRP's conservation check: ``|sum(R) - logit| <= LRP_RTOL * |logit|``.
#: Biases (and merged batch-norm shifts) absorb some relevance: about 1% for a randomly initialised
#: ResNet-18 with zennit's canonizer, under 5% for the small VGG-like test net. Propagation the rules
#: do not cover misses by large factors: the trained EfficientNet-Lite0 on ``chelsea`` at 128 px gives
#: a relevance sum of 425 for a logit of 24.7.
LRP_RTOL = 0.25

ChannelReduction = Literal["sum", "abs-sum", "abs-max", "none"]


class UnsupportedModelError(ValueError):
    """A method cannot explain this model faithfully (e.g. LRP relevance is not conserved).

    Attributes:
        reason: A short form of the message for figure panels.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class BaselineWarning(UserWarning):
    """A baseline ran but part of its definition does not apply to the model."""


def _check_input(x: Tensor) -> Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(
            f"expected float images of shape (B, C, H, W), got {tuple(x.shape)} {x.dtype}"
        )
    return x


def _targets(model: nn.Module, x: Tensor, target: Any) -> tuple[Tensor, Tensor]:
    """Logits ``(B, m)`` of ``x`` and the explained label per image ``(B,)``."""
    with torch.no_grad():
        logits = model(x)
    return logits, resolve_target(model, logits, target)


def reduce_channels(attr: Tensor, channels: ChannelReduction = "sum") -> Tensor:
    """Per-pixel attribution ``(B, 1, H, W)`` from a per-channel one ``(B, C, H, W)``.

    Args:
        attr: Attribution per input entry, ``(B, C, H, W)``.
        channels: ``"sum"``: signed sum over channels (keeps completeness / conservation; what
            captum's and zennit's image visualisations start from); ``"abs-sum"``: sum of absolute
            values; ``"abs-max"``: largest absolute value (Simonyan et al.'s saliency); ``"none"``:
            return ``attr`` unchanged.

    Returns:
        ``(B, 1, H, W)`` (or ``attr`` for ``"none"``).
    """
    if channels == "sum":
        return attr.sum(dim=1, keepdim=True)
    if channels == "abs-sum":
        return attr.abs().sum(dim=1, keepdim=True)
    if channels == "abs-max":
        return attr.abs().amax(dim=1, keepdim=True)
    if channels == "none":
        return attr
    raise ValueError(
        f"unknown channel reduction {channels!r}; choose sum, abs-sum, abs-max or none"
    )


@register_method(
    "integrated-gradients",
    title="Integrated Gradients",
    kind="attribution",
    aliases=("ig",),
    paper=True,
)
def integrated_gradients(
    model: nn.Module,
    x: Tensor,
    *,
    target: Any = None,
    n_steps: int = 100,
    baseline: float | Tensor = 0.0,
    internal_batch_size: int | None = 16,
) -> Tensor:
    """Integrated Gradients of the explained logit (captum), per input entry.

    Args:
        model: Classifier taking ``(B, C, H, W)`` images in ``[0, 1]`` and returning logits.
        x: Images ``(B, C, H, W)``.
        target: Label per image (index, name, list or tensor); the prediction by default.
        n_steps: Points of the path integral (the paper: 100).
        baseline: Reference image (a value or a tensor broadcastable to ``x``); black by default.
        internal_batch_size: Path points sent through the model at once (memory bound).

    Returns:
        Attributions ``(B, C, H, W)``; they sum to ``F(x) - F(baseline)`` up to the integration
        error (completeness).
    """
    from captum.attr import IntegratedGradients

    x = _check_input(x)
    with frozen(model):
        _, t = _targets(model, x, target)
        base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x).contiguous()
        ig = IntegratedGradients(model)
        attr = ig.attribute(
            x, baselines=base, target=t, n_steps=n_steps, internal_batch_size=internal_batch_size
        )
    return attr.detach()


@register_method("smoothgrad", title="SmoothGrad", kind="attribution", aliases=("sg",), paper=True)
def smoothgrad(
    model: nn.Module,
    x: Tensor,
    *,
    target: Any = None,
    samples: int = 10,
    stdev: float = 0.1,
    seed: int | None = 0,
) -> Tensor:
    """SmoothGrad (captum ``NoiseTunnel`` over plain gradients), per input entry.

    The mean gradient of the explained logit over ``samples`` copies of ``x`` with Gaussian noise of
    standard deviation ``stdev`` (the paper: 10 samples, 0.1 on ``[0, 1]`` images). The noise comes
    from a generator seeded with ``seed`` (the global RNG state is restored afterwards).

    Returns:
        Signed mean gradients ``(B, C, H, W)``.
    """
    from captum.attr import NoiseTunnel, Saliency

    x = _check_input(x)
    devices = [x.device] if x.device.type == "cuda" else []
    with frozen(model), torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        _, t = _targets(model, x, target)
        tunnel = NoiseTunnel(Saliency(model))
        attr = tunnel.attribute(
            x, nt_type="smoothgrad", nt_samples=samples, stdevs=stdev, target=t, abs=False
        )
    return attr.detach()


#: Activation modules that Guided Backprop leaves alone without a warning (no gradient to guide).
_NOT_ACTIVATIONS = (nn.Softmax, nn.LogSoftmax, nn.Identity, nn.MultiheadAttention)


def unguided_activations(model: nn.Module) -> dict[str, int]:
    """Activation modules other than ``nn.ReLU`` in ``model``, by type name, with their counts.

    These are the activations captum's Guided Backprop cannot guide.
    """
    counts: dict[str, int] = {}
    for module in model.modules():
        is_activation = type(module).__module__ == "torch.nn.modules.activation" or isinstance(
            module, nn.GELU | nn.SiLU | nn.Hardswish | nn.Mish | nn.ReLU6 | nn.Sigmoid | nn.Tanh
        )
        if is_activation and not isinstance(module, (nn.ReLU, *_NOT_ACTIVATIONS)):
            name = type(module).__name__
            counts[name] = counts.get(name, 0) + 1
    return counts


@register_method(
    "guided-backprop", title="Guided Backprop", kind="attribution", aliases=("gb",), paper=True
)
def guided_backprop(model: nn.Module, x: Tensor, *, target: Any = None) -> Tensor:
    """Guided Backprop (captum): gradients with negative signals stopped at every ReLU module.

    Warns with :class:`BaselineWarning` when the model has other activation modules (their
    gradients pass unguided) - e.g. ``ReLU6`` in EfficientNet-Lite0 and MobileNetV2, ``Hardswish``
    in MobileNetV3. ReLUs applied as functions (``F.relu``) are not guided and cannot be detected.

    Returns:
        Guided gradients ``(B, C, H, W)``.
    """
    from captum.attr import GuidedBackprop

    x = _check_input(x)
    others = unguided_activations(model)
    if others:
        listed = ", ".join(f"{k} x{v}" for k, v in sorted(others.items()))
        warnings.warn(
            f"Guided Backprop guides only nn.ReLU modules; this model's other activations "
            f"({listed}) pass plain gradients",
            BaselineWarning,
            stacklevel=2,
        )
    with frozen(model), warnings.catch_warnings():
        # captum announces its ReLU hooks and the input's requires_grad on every call
        warnings.filterwarnings(
            "ignore", message="(Input Tensor|Setting backward hooks)", category=UserWarning
        )
        _, t = _targets(model, x, target)
        attr = GuidedBackprop(model).attribute(x.clone().requires_grad_(True), target=t)
    return attr.detach()


def lrp_canonizers(model: nn.Module) -> list[Any]:
    """zennit canonizers for ``model``: ResNet's for torchvision ResNets, else batch-norm merging.

    ``SequentialMergeBatchNorm`` folds every batch norm that directly follows a convolution or
    linear layer into it (VGG-BN, and the conv-BN pairs of most CNNs); ``ResNetCanonizer`` also
    turns the residual additions into modules whose relevance is split proportionally.
    """
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer

    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return [SequentialMergeBatchNorm()]
    if any(isinstance(m, BasicBlock | Bottleneck) for m in model.modules()):
        return [ResNetCanonizer()]
    return [SequentialMergeBatchNorm()]


def _first_layer(model: nn.Module) -> nn.Module | None:
    """The first convolution or linear leaf in module order (the one zennit's Flat rule gets)."""
    from zennit.types import Linear as LinearTypes

    for module in model.modules():
        if isinstance(module, LinearTypes) and not list(module.children()):
            return module
    return None


def attention_modules(model: nn.Module) -> list[str]:
    """Type names of the attention blocks in ``model`` (``nn.MultiheadAttention``, timm's and
    transformers' ``*Attention`` modules): the layers zennit has no LRP rule for."""
    found: dict[str, None] = {}
    for module in model.modules():
        name = type(module).__name__
        if isinstance(module, nn.MultiheadAttention) or name.endswith("Attention"):
            found[name] = None
    return list(found)


#: What LRP would need to explain a vision transformer, for messages and the docs.
LRP_TRANSFORMER_NEEDS = (
    "LRP rules for attention (the softmax-weighted mixing of tokens) and LayerNorm, such as "
    "AttnLRP (Achtibat et al., 2024; the LXT package) or the conservative rules of Ali et al. "
    "(2022); zennit's composites have a rule for neither"
)


@register_method("lrp", title="LRP", kind="attribution", paper=True)
def lrp(
    model: nn.Module,
    x: Tensor,
    *,
    target: Any = None,
    epsilon: float = 1e-6,
    canonizers: Sequence[Any] | None = None,
    rtol: float = LRP_RTOL,
    check: bool = True,
) -> Tensor:
    """Layer-wise relevance propagation of the explained logit (zennit, ``EpsilonPlusFlat``).

    The composite applies the flat rule to the first linear layer, ``z+`` to the other
    convolutions and epsilon to dense layers; activations and pooling pass relevance. Relevance is
    taken at the input of the first layer, so a normalisation inside the model (``(x - mean) /
    std``) does not scale it. The output relevance is the explained logit (one-hot times logit), so
    a conserving propagation gives relevance that sums to the logit.

    Args:
        model: Classifier; its batch norms are merged and hooks attached only for the duration
            (zennit restores the model).
        x: Images ``(B, C, H, W)``.
        target: Label per image; the prediction by default.
        epsilon: Stabiliser of the epsilon rule.
        canonizers: zennit canonizers (default :func:`lrp_canonizers`).
        rtol: Relative tolerance of the conservation check (default :data:`LRP_RTOL`).
        check: Check conservation and refuse when it fails.

    Returns:
        Relevance ``(B, C, H, W)``.

    Raises:
        UnsupportedModelError: When the relevance of some image does not sum to its logit within
            ``rtol`` (the rules do not cover the model), the model has attention layers (a vision
            transformer: see :data:`LRP_TRANSFORMER_NEEDS`), or it has no linear layer.
    """
    from zennit.composites import EpsilonPlusFlat

    x = _check_input(x)
    attention = attention_modules(model)
    if check and attention:
        raise UnsupportedModelError(
            f"LRP not available for this model: it has attention layers ({', '.join(attention)}) "
            f"which need {LRP_TRANSFORMER_NEEDS}",
            reason="transformer: needs attention and LayerNorm rules (e.g. AttnLRP)",
        )
    canon = list(lrp_canonizers(model) if canonizers is None else canonizers)
    first = _first_layer(model)
    if first is None:
        raise UnsupportedModelError(
            "LRP needs a convolution or linear layer; the model has none", reason="no linear layer"
        )
    captured: list[Tensor] = []

    def grab(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        if not captured:
            captured.append(inputs[0])

    composite = EpsilonPlusFlat(epsilon=epsilon, canonizers=canon)
    with frozen(model):
        _, t = _targets(model, x, target)
        xin = x.detach().clone().requires_grad_(True)
        handle = first.register_forward_pre_hook(grab)
        try:
            with composite.context(model) as hooked:
                logits = hooked(xin)
                explained = logits.gather(1, t.view(-1, 1)).squeeze(1)
                seed = torch.zeros_like(logits).scatter(
                    1, t.view(-1, 1), explained.view(-1, 1).detach()
                )
                wrt = captured[0] if captured and captured[0].shape == x.shape else xin
                (relevance,) = torch.autograd.grad(logits, wrt, grad_outputs=seed)
        finally:
            handle.remove()
    relevance = relevance.detach()
    if check:
        total = relevance.flatten(1).sum(dim=1)
        logit = explained.detach()
        err = (total - logit).abs() / logit.abs().clamp_min(1e-12)
        bad = [i for i in range(len(err)) if not bool(err[i] <= rtol)]
        if bad:
            i = bad[0]
            raise UnsupportedModelError(
                f"LRP not available for this model: relevance is not conserved (image {i}: sum "
                f"{float(total[i]):.4g} vs logit {float(logit[i]):.4g}, relative error "
                f"{float(err[i]):.3g} > {rtol:g}); the LRP rules do not cover some of its layers "
                "(e.g. residual additions, gating products, Hardswish)",
                reason=f"relevance not conserved: sum {float(total[i]):.3g} vs logit "
                f"{float(logit[i]):.3g}",
            )
    return relevance


#: The baselines by name (``fn(model, x, *, target=None, **settings) -> (B, C, H, W)``): a live
#: view of the registry (``kind="attribution"``).
BASELINES: RegistryView[Callable[..., Tensor]] = RegistryView(
    lambda info: info.factory, kind="attribution"
)

#: Every method, RDE ones included, under the common signature
#: ``(model, x, *, target=None, **settings) -> (B, 1, H, W)``: a live view of the registry.
ATTRIBUTIONS: RegistryView[Attribution] = RegistryView(lambda info: info.attribution)


#: Short names accepted by :func:`resolve_methods` (``"ig"``), a live view of the registry.
ALIASES: AliasView = AliasView()


def method_label(name: str) -> str:
    """Display title of a method (figure titles); see :func:`rdex.methods.method_title`."""
    return method_title(name)


def get_attribution(name: str) -> Attribution:
    """The common-signature callable of a method name or alias."""
    return get_method(name).attribution


#: Cheap settings for applicability checks: whether a method runs and is valid on a model, not the
#: quality of its map.
QUICK_SETTINGS: dict[str, dict[str, Any]] = {
    "integrated-gradients": {"n_steps": 4, "internal_batch_size": 4},
    "smoothgrad": {"samples": 2},
}


def check_baselines(
    model: nn.Module, x: Tensor, *, target: Any = None, quick: bool = True
) -> dict[str, tuple[str, str]]:
    """Which baselines apply to ``model``: per method a status (``ok``, ``warning``, ``refused``,
    ``error``) and a message, from running each on ``x`` (small images suffice).

    Args:
        model: Classifier.
        x: Images ``(B, C, H, W)`` in ``[0, 1]``.
        target: Label per image; the prediction by default.
        quick: Use :data:`QUICK_SETTINGS` (few IG steps and SmoothGrad samples).
    """
    report: dict[str, tuple[str, str]] = {}
    for name in BASELINES:
        settings = QUICK_SETTINGS.get(name, {}) if quick else {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BaselineWarning)
            try:
                ATTRIBUTIONS[name](model, x, target=target, **settings)
            except UnsupportedModelError as exc:
                report[name] = ("refused", str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - the table reports any failure
                report[name] = ("error", f"{type(exc).__name__}: {exc}")
                continue
        found = [str(w.message) for w in caught if issubclass(w.category, BaselineWarning)]
        report[name] = ("warning", found[0]) if found else ("ok", "")
    return report


def _architecture(name: str) -> tuple[nn.Module, str]:
    """The classifier ``name`` with its weights if present, else its architecture with random
    weights and zero biases (the conservation and activation checks are about the layers)."""
    from rdex.models import imagenet_labels, load_classifier, wrap_classifier

    try:
        return load_classifier(name), "loaded"
    except FileNotFoundError:
        pass
    kind, _, arch = name.partition(":")
    torch.manual_seed(0)
    if kind == "torchvision":
        from torchvision.models import get_model

        extra: dict[str, Any] = {}
        if arch in ("inception_v3", "googlenet"):
            extra = {"aux_logits": False, "init_weights": True}
        net = get_model(arch, weights=None, **extra)
    elif kind == "timm":
        import timm

        net = timm.create_model(arch, pretrained=False)
    else:
        raise FileNotFoundError(f"no weights for {name}")
    with torch.no_grad():
        # Random biases dwarf the tiny activations of an untrained net and leak relevance that
        # trained biases would not; without them, conservation tests only the rules' coverage.
        for pname, param in net.named_parameters():
            if pname.endswith("bias"):
                param.zero_()
    return wrap_classifier(net, labels=imagenet_labels(), name=name), "random"


def check_architectures(
    names: Sequence[str], *, size: int = 112, progress: bool = True
) -> list[dict[str, str]]:
    """:func:`check_baselines` for several models (``rdex models --check-baselines``).

    Each model is checked on the ``chelsea`` sample at ``size`` pixels (at its native input size
    when it needs one, e.g. ViTs). Models whose weights are missing are checked with random
    weights and zero biases: LRP's conservation and Guided Backprop's activations depend on the
    layers (random biases would leak relevance that trained ones do not).

    Returns:
        One row per model: ``model``, ``weights`` (loaded / random / -), one status per baseline
        and ``notes`` (the messages).
    """
    from tqdm.auto import tqdm

    from rdex.images import sample_image

    rows = []
    for name in tqdm(list(names), desc="checking baselines", unit="model", disable=not progress):
        row: dict[str, str] = {"model": name}
        try:
            model, weights = _architecture(name)
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            rows.append(row | {"weights": "-", "notes": f"cannot build: {exc}"})
            continue
        side = size
        if "vit" in name:
            side = getattr(model, "input_size", None) or 224
        x = sample_image("chelsea", size=side)[None]
        report = check_baselines(model, x)
        row["weights"] = weights
        notes = []
        for method, (status, message) in report.items():
            row[method] = status
            if message:
                notes.append(f"{method}: {message}")
        row["notes"] = "; ".join(notes)
        rows.append(row)
    return rows


def format_check_table(rows: Sequence[dict[str, str]]) -> str:
    """The rows of :func:`check_architectures` as a plain-text table with notes below."""
    cols = ["model", "weights", *BASELINES]
    table = [[c.upper() for c in cols]] + [[r.get(c, "-") for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    notes = [f"{r['model']}: {r['notes']}" for r in rows if r.get("notes")]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)
