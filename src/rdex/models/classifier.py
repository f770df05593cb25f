"""Classifier: a network on images in ``[0, 1]`` with its normalisation inside, and
:func:`wrap_classifier`.
"""

from __future__ import annotations

import copy
import difflib
import operator
import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rdex.models.labels import _imagenet_descriptions, _imagenet_synsets, imagenet_labels

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)


IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


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
