"""A user's own model: a TorchScript file, or ``package.module:factory`` plus a state dict."""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdex.models.classifier import IMAGENET_MEAN, IMAGENET_STD, Classifier
from rdex.models.weights import _load_into, _load_state_dict_file


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
