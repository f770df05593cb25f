"""Class names: ImageNet's names, WordNet synonyms and ids, and the one label lookup
(:func:`resolve_label`).
"""

from __future__ import annotations

import functools
import operator
from typing import Any

from torch import nn


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
