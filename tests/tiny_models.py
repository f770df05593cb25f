"""Tiny classifiers and images for the batch and report tests (importable as ``tests.tiny_models``).

``ColourNet`` predicts the dominant colour of an image (red, green, blue), so the test images can
be made correctly classified or misclassified on purpose. ``--model tests.tiny_models:colour_net``
loads it through :func:`rdex.models.load_classifier` (tests run from the repository root).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

COLOURS = ("red", "green", "blue")


class ColourNet(nn.Module):
    """Logits are ``gain`` times the mean of each colour channel, after a 3x3 blur.

    Args:
        gain: Scale of the logits (sharper probabilities for larger values).
        delay: Seconds to sleep in every forward pass (makes runs slow enough to kill).
    """

    def __init__(self, gain: float = 6.0, delay: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            for c in range(3):
                self.conv.weight[c, c] = gain / 9.0
        self.delay = delay

    def forward(self, x: Tensor) -> Tensor:
        if self.delay:
            time.sleep(self.delay)
        return self.conv(x).mean(dim=(2, 3))


def colour_net() -> nn.Module:
    """Factory for ``--model tests.tiny_models:colour_net``."""
    return ColourNet()


def slow_colour_net() -> nn.Module:
    """As :func:`colour_net`, sleeping 30 ms per forward pass."""
    return ColourNet(delay=0.03)


def colour_classifier(delay: float = 0.0) -> nn.Module:
    """The colour net wrapped with labels red, green, blue and no normalisation."""
    from rdex.models import wrap_classifier

    return wrap_classifier(
        ColourNet(delay=delay),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        labels=list(COLOURS),
        name="colour",
    )


def make_image(path: Path, colour: str, *, size: int = 32, seed: int = 0) -> Path:
    """A textured picture whose dominant colour is ``colour``, saved as PNG (or by suffix)."""
    rng = np.random.default_rng(seed)
    arr = rng.uniform(0.0, 0.35, size=(size, size, 3))
    c = COLOURS.index(colour)
    lo, hi = size // 4, size // 4 + size // 2
    arr[lo:hi, lo:hi, c] = rng.uniform(0.8, 1.0, size=(hi - lo, hi - lo))
    arr[:, :, c] += 0.2
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(path)
    return path
