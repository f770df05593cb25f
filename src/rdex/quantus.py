"""rdex explanations for Quantus: an ``explain_func`` for every rdex method and baseline.

Quantus (``pip install "rdex[quantus]"``) evaluates explanations with metrics that call an
explanation function as ``explain_func(model=model, inputs=x_batch, targets=y_batch,
**explain_func_kwargs)`` and expect a numpy array of attributions, channel first. :func:`explain`
is such a function::

    import quantus, rdex.quantus
    metric = quantus.Sparseness()
    scores = metric(model=net, x_batch=x, y_batch=y, explain_func=rdex.quantus.explain,
                    explain_func_kwargs={"method": "cartoonx", "mean": MEAN, "std": STD})

Input spaces: rdex explains images in ``[0, 1]`` with the normalisation inside the model, while
Quantus users usually pass a network on *normalised* batches. Give that normalisation as
``mean``/``std`` (or a per-channel affine ``normalise`` function such as torchvision's
``Normalize``): the batch is mapped back to ``[0, 1]`` (``x = inputs * std + mean``, clipped, which
matters only for the noisy copies robustness metrics make) and the network is called on
``(x - mean) / std``, so the model Quantus evaluates is the model rdex explains. Gradient
baselines are then taken with respect to the ``[0, 1]`` image, as everywhere in rdex. Without a
normalisation the inputs must be ``[0, 1]`` images; the noisy copies robustness metrics make
(within 0.5 of that range) are clipped back to it, anything further out is refused as a
normalised batch given without its ``mean``/``std``.

Values: RDE methods return the per-pixel share of the image their mask keeps, the same value in
every channel (see :mod:`rdex.captum`); baselines return their attribution per input entry
(``channels="none"``), or reduced to one channel with ``channels="sum"`` etc.

References:
    Hedström et al., "Quantus: An Explainable AI Toolkit for Responsible Evaluation of Neural
    Network Explanations and Beyond", JMLR 2023.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rdex._interop import InputSpace, captum_target
from rdex.baselines import ATTRIBUTIONS, BASELINES, ChannelReduction, resolve_methods
from rdex.captum import ATTRIBUTION_CLASSES, attribution_class
from rdex.methods import METHODS

__all__ = ["explain", "METHOD_NAMES"]

# Images in [0, 1] that a robustness metric perturbed stay within this margin and are clipped
# back; values further out mean a normalised batch given without its normalisation.
_PERTURBED_MARGIN = 0.5

#: Every method :func:`explain` takes (aliases such as ``ig`` and ``sg`` work too): the baselines
#: and the RDE methods with a captum class (:data:`rdex.captum.ATTRIBUTION_CLASSES`).
METHOD_NAMES: tuple[str, ...] = tuple(
    name for name in ATTRIBUTIONS if name in BASELINES or name in ATTRIBUTION_CLASSES
)


def _as_tensor(inputs: Any, device: torch.device) -> Tensor:
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, Tensor) else inputs)
    if not x.is_floating_point():
        raise ValueError(f"inputs must be floating point images, got {x.dtype}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"inputs must be channel-first images (B, C, H, W), got {tuple(x.shape)}")
    return x.detach().to(device=device, dtype=torch.float32)


def _targets(targets: Any) -> Any:
    if targets is None:
        return None
    if isinstance(targets, Tensor | np.ndarray):
        return torch.as_tensor(targets).long().flatten()
    return captum_target(targets)


def _model_device(model: Any, device: str | torch.device | None) -> torch.device:
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return torch.device(device) if device is not None else torch.device("cpu")


def explain(
    model: Callable[..., Any],
    inputs: np.ndarray | Tensor,
    targets: np.ndarray | Tensor | Sequence[int] | int | None = None,
    *,
    method: str = "cartoonx",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalise: Callable[[Tensor], Tensor] | None = None,
    channels: ChannelReduction = "none",
    device: str | torch.device | None = None,
    **settings: Any,
) -> np.ndarray:
    """Explanations of ``inputs`` by an rdex method, with Quantus's ``explain_func`` contract.

    Args:
        model: The network Quantus evaluates (a ``torch.nn.Module``): an rdex classifier on
            ``[0, 1]`` images, or a network on normalised inputs with ``mean``/``std`` or
            ``normalise``. Outputs with ``.logits`` (transformers) are unwrapped.
        inputs: Images ``(B, C, H, W)``, numpy or torch.
        targets: Label per image (``(B,)`` array, list, or one int); ``None``: the prediction.
        method: One of :data:`METHOD_NAMES` (``"cartoonx"``, ``"pixel-rde"``,
            ``"integrated-gradients"``, ``"smoothgrad"``, ``"guided-backprop"``, ``"lrp"``) or an
            alias (``"ig"``, ``"sg"``, ``"gb"``, ``"pixel"``).
        mean, std: Per-channel normalisation of ``inputs`` (see the module docstring).
        normalise: Instead of ``mean``/``std``: the function that normalises ``[0, 1]`` images.
        channels: For baselines: ``"none"`` (per input entry, shaped like ``inputs``), ``"sum"``,
            ``"abs-sum"`` or ``"abs-max"`` (one channel).
        device: Passed by Quantus; the inputs go to the model's device (this one if the model has
            no parameters).
        **settings: Method settings: for RDE methods ``preset`` (default :data:`rdex.config.DEFAULT_PRESET`), ``values``
            and :class:`~rdex.rde.RDEConfig` fields (``steps``, ``samples``, ``lambda_k``,
            ``seed``, ...); for baselines their keyword arguments (``n_steps``, ``samples``, ...).

    Returns:
        ``float32`` array: ``(B, C, H, W)`` like ``inputs`` (one channel for reduced baselines).

    Raises:
        ValueError: Unknown method, images not in ``[0, 1]`` without a normalisation, bad
            targets. :class:`rdex.baselines.UnsupportedModelError` when a baseline cannot explain
            the model faithfully (LRP).
    """
    (name,) = resolve_methods(method)[:1]
    x_in = _as_tensor(inputs, _model_device(model, device))
    target = _targets(targets)
    space = InputSpace.of(x_in.shape[1], mean=mean, std=std, normalise=normalise)
    if space.is_identity and x_in.numel():
        low, high = float(x_in.min()), float(x_in.max())
        if low < -_PERTURBED_MARGIN or high > 1 + _PERTURBED_MARGIN:
            raise ValueError(
                f"inputs lie in [{low:.3g}, {high:.3g}], not [0, 1]: pass the normalisation "
                "your model expects as mean=/std= (or normalise=)"
            )
        x_in = x_in.clamp(0.0, 1.0)  # a perturbed copy of a [0, 1] image
    if name in METHODS:
        explainer = attribution_class(name)(
            model, mean=mean, std=std, normalise=normalise, **settings
        )
        attr = explainer.attribute(x_in, target=target)
        assert isinstance(attr, Tensor)
    else:
        assert name in BASELINES
        wrapped = space.wrap(model).to(x_in.device)
        attr = ATTRIBUTIONS[name](
            wrapped, space.to_unit(x_in), target=target, channels=channels, **settings
        )
    return attr.detach().float().cpu().numpy()
