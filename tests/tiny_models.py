"""The tests' small networks and images, in one place (importable as ``tiny_models`` or
``tests.tiny_models``).

``ColourNet`` predicts the dominant colour of an image (red, green, blue), so the test images can
be made correctly classified or misclassified on purpose. ``--model tests.tiny_models:colour_net``
loads it through :func:`rdex.models.load_classifier` (tests run from the repository root).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

COLOURS = ("red", "green", "blue")


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


class HalfNet(nn.Module):
    """Predicts the dominant colour of the left half of the image; the right half is ignored."""

    def forward(self, x: Tensor) -> Tensor:
        return 8.0 * x[..., : x.shape[-1] // 2].mean(dim=(2, 3))


def tiny_net(seed: int = 0, classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(4),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, classes),
    )


class LeftHalf(nn.Module):
    """A planted classifier that only looks at the left half of the image."""

    def __init__(self, pattern: Tensor) -> None:
        super().__init__()
        self.register_buffer("pattern", pattern)

    def forward(self, x: Tensor) -> Tensor:
        half = x.shape[-1] // 2
        score = ((x[..., :half] - 0.5) * self.pattern[..., :half]).mean(dim=(1, 2, 3)) * 40.0
        return torch.stack([score, -score], dim=1)


def sensitive_net(size: int = 32) -> nn.Module:
    """A model whose output depends strongly on its input (random nets barely do)."""
    return LeftHalf(torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(9)))


@contextmanager
def model_untouched(net: nn.Module) -> Iterator[nn.Module]:
    """Check that the block leaves ``net`` as it came: the train/eval flag of every module, the
    ``requires_grad`` flag of every parameter, no gradients, and every parameter and buffer."""
    modes = [m.training for m in net.modules()]
    flags = {n: p.requires_grad for n, p in net.named_parameters()}
    grads = {n: p.grad is None for n, p in net.named_parameters()}
    state = {k: v.clone() for k, v in net.state_dict().items()}
    yield net
    assert [m.training for m in net.modules()] == modes, "train/eval mode changed"
    assert {n: p.requires_grad for n, p in net.named_parameters()} == flags, "requires_grad changed"
    assert {n: p.grad is None for n, p in net.named_parameters()} == grads, "gradients left behind"
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), f"{k} changed"


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
