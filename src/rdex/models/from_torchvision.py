"""``torchvision:NAME``: any torchvision classification model, weights from a file or the torch
hub cache.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from rdex.models.classifier import Classifier
from rdex.models.weights import _load_into, _load_state_dict_file

# Constructor arguments torchvision's builders set when they load pretrained weights; without
# them the published checkpoints would not match the network or its expected input.
_TORCHVISION_PRETRAINED_KWARGS: dict[str, dict[str, Any]] = {
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
}


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def _torchvision_default_weights(arch: str) -> Any:
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def _torchvision_cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _load_torchvision(arch: str, weights: str | Path | None) -> Classifier:
    from torchvision.models import get_model

    names = _torchvision_names()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=5)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown torchvision classification model {arch!r}{hint}")
    meta_weights = _torchvision_default_weights(arch)
    if weights is None:
        path = _torchvision_cache_path(meta_weights.url)
        if not path.is_file():
            raise FileNotFoundError(
                f"no weights for torchvision:{arch} (rdex never downloads): put "
                f"{os.path.basename(path)} (from {meta_weights.url}) at {path}, "
                "or pass --weights FILE"
            )
    else:
        path = Path(weights)
    state = _load_state_dict_file(path)
    kwargs = dict(_TORCHVISION_PRETRAINED_KWARGS.get(arch, {}))
    num_classes = len(meta_weights.meta["categories"])
    net = get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    _load_into(net, state, str(path))
    if arch == "googlenet":  # the checkpoint carries auxiliary heads that inference never uses
        net.aux_logits = False
        net.aux1 = None
        net.aux2 = None
    transforms = meta_weights.transforms()
    crop = getattr(transforms, "crop_size", None)
    return Classifier(
        net,
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        labels=list(meta_weights.meta["categories"]),
        name=f"torchvision:{arch}",
        input_size=int(crop[0]) if crop else None,
        copy_model=False,
    )
