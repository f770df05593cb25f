"""``hf:PATH_OR_NAME``: a Hugging Face transformers image classifier from a local folder or the
local cache; normalisation and input size from its image processor, labels from ``id2label``.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from rdex.models.classifier import IMAGENET_MEAN, IMAGENET_STD, Classifier
from rdex.models.weights import _hf_cache_dir


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
