"""Shared fixtures: tiny classifiers built in place (nothing downloads) and a headless backend."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from torch import nn

from tiny_models import make_tiny_model  # tests/ is on sys.path (rootdir conftest)

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def tiny_model() -> Callable[..., nn.Module]:
    """Factory: ``tiny_model(num_classes=3, seed=0)`` -> a raw ``nn.Module`` (normalised input)."""
    return make_tiny_model


@pytest.fixture
def tiny_classifier() -> Callable[..., nn.Module]:
    """Factory: ``tiny_classifier(num_classes=3, seed=0, **wrap_kwargs)`` -> a ``Classifier``."""
    from rdex.models import wrap_classifier

    def build(num_classes: int = 3, *, seed: int = 0, **kwargs: object) -> nn.Module:
        kwargs.setdefault("name", "tiny")
        return wrap_classifier(make_tiny_model(num_classes, seed=seed), **kwargs)  # type: ignore[arg-type]

    return build
