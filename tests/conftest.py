"""Shared fixtures: tiny classifiers built in place (nothing downloads) and a headless backend."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
from torch import nn

os.environ.setdefault("MPLBACKEND", "Agg")


def make_tiny_model(num_classes: int = 3, *, seed: int = 0) -> nn.Module:
    """A small conv net with BatchNorm and Dropout, so that train and eval mode differ."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(24, num_classes),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        bn = net[1]
        bn.running_mean.copy_(torch.randn(6, generator=gen) * 0.1)
        bn.running_var.copy_(torch.rand(6, generator=gen) + 0.5)
    return net


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
