"""``timm:NAME``: any timm model, weights from a file or the Hugging Face hub cache."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rdex.models.classifier import IMAGENET_MEAN, IMAGENET_STD, Classifier
from rdex.models.labels import imagenet_labels
from rdex.models.weights import _hf_cache_dir


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
