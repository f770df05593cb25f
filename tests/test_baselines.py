"""Baselines against independent computations on tiny models, and the common method registry."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rdex.baselines import (
    ATTRIBUTIONS,
    BaselineWarning,
    UnsupportedModelError,
    check_baselines,
    guided_backprop,
    integrated_gradients,
    lrp,
    reduce_channels,
    resolve_methods,
    smoothgrad,
    unguided_activations,
)
from tiny_models import model_untouched


def smooth_net(seed: int = 0) -> nn.Module:
    """A small differentiable conv net (softplus: no kinks, so IG's quadrature converges)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Softplus(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64, 5),
    )


class TwoLayer(nn.Module):
    """conv -> ReLU -> linear: small enough to write its guided backward by hand."""

    def __init__(self, size: int = 8, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


class Normalised(nn.Module):
    """A network behind ``(x - mean) / std``, as rdex wraps classifiers."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.3, 0.25]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def vgg_like(*, bias: bool = False, bn: bool = True) -> nn.Module:
    torch.manual_seed(2)
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 32, bias=bias),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(32, 5, bias=bias),
    ]
    net = nn.Sequential(*layers)
    if bn:
        with torch.no_grad():
            net[1].running_mean.uniform_(-0.1, 0.1)
            net[1].running_var.uniform_(0.5, 2.0)
            net[1].weight.uniform_(0.5, 1.5)
    return net


class Residual(nn.Module):
    """conv -> ReLU -> y + conv(y): an addition no LRP rule or canonizer covers here."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.c1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.c1(x))
        return self.head(y + self.c2(y))


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- Integrated Gradients


@pytest.mark.parametrize("baseline", [0.0, 0.5])
def test_integrated_gradients_completeness(images: torch.Tensor, baseline: float) -> None:
    model = smooth_net()
    attr = integrated_gradients(model, images, baseline=baseline)
    with torch.no_grad():
        out = model(images)
        ref = model(torch.full_like(images, baseline))
    t = out.argmax(1)
    expected = out.gather(1, t[:, None]) - ref.gather(1, t[:, None])
    assert attr.shape == images.shape
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), expected.squeeze(1), rtol=1e-3, atol=1e-5)


def test_integrated_gradients_explains_the_given_target(images: torch.Tensor) -> None:
    model = smooth_net()
    attr = ATTRIBUTIONS["integrated-gradients"](model, images, target=[1, 3])
    with torch.no_grad():
        diff = model(images) - model(torch.zeros_like(images))
    assert attr.shape == (2, 1, 16, 16)
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), diff[[0, 1], [1, 3]], rtol=1e-3, atol=1e-5)


# --------------------------------------------------------------------------- Guided Backprop


def hand_guided_backprop(model: TwoLayer, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Guided backward written out: d logit / d h, keep positive signals where the ReLU was on."""
    pre = F.conv2d(x, model.conv.weight, model.conv.bias, padding=1)
    grad_h = model.fc.weight[target].view_as(pre)
    guided = grad_h.clamp_min(0) * (pre > 0)
    return torch.nn.grad.conv2d_input(x.shape, model.conv.weight, guided, padding=1)


def test_guided_backprop_equals_hand_written_guided_relu(images: torch.Tensor) -> None:
    model = TwoLayer(16)
    x = images
    with torch.no_grad():
        target = model(x).argmax(1)
        expected = hand_guided_backprop(model, x, target)
        pre = F.conv2d(x, model.conv.weight, model.conv.bias, padding=1)
        plain = torch.nn.grad.conv2d_input(
            x.shape, model.conv.weight, model.fc.weight[target].view_as(pre) * (pre > 0), padding=1
        )
    got = guided_backprop(model, x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got, plain, atol=1e-4)  # guidance matters on this net
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())


def test_guided_backprop_warns_on_activations_it_cannot_guide(images: torch.Tensor) -> None:
    relu_net = TwoLayer(16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaselineWarning)
        guided_backprop(relu_net, images)
    other = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU6(),
        nn.Conv2d(4, 4, 1),
        nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    assert unguided_activations(other) == {"ReLU6": 1, "Hardswish": 1}
    with pytest.warns(BaselineWarning, match="Hardswish x1, ReLU6 x1"):
        guided_backprop(other, images)


# --------------------------------------------------------------------------- SmoothGrad


def test_smoothgrad_is_the_gradient_for_a_linear_model(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    attr = smoothgrad(model, images, target=2)
    expected = model[1].weight[2].detach().view(1, 3, 16, 16).expand_as(images)
    torch.testing.assert_close(attr, expected)


def test_smoothgrad_is_seeded(images: torch.Tensor) -> None:
    model = smooth_net()
    state = torch.random.get_rng_state()
    a = smoothgrad(model, images, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert torch.equal(a, smoothgrad(model, images, seed=3))
    assert not torch.allclose(a, smoothgrad(model, images, seed=4))


# --------------------------------------------------------------------------- LRP


def hand_lrp_two_layer(model: TwoLayer, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LRP with the flat rule on the conv and epsilon (-> 0) on the dense layer, written out."""
    h = model.relu(F.conv2d(x, model.conv.weight, model.conv.bias, padding=1))
    logits = model.fc(h.flatten(1))
    w = model.fc.weight[target]
    z = logits.gather(1, target[:, None])
    r_h = (h.flatten(1) * w / (z - model.fc.bias[target][:, None]) * z).view_as(h)
    ones_w = torch.ones_like(model.conv.weight)
    fan = F.conv2d(torch.ones_like(x), ones_w, padding=1)  # real inputs per output position
    return torch.nn.grad.conv2d_input(x.shape, ones_w, r_h / fan, padding=1)


def test_lrp_matches_hand_written_rules_on_a_two_layer_net(images: torch.Tensor) -> None:
    model = TwoLayer(16)
    with torch.no_grad():
        model.fc.bias.zero_()
        target = model(images).argmax(1)
        expected = hand_lrp_two_layer(model, images, target)
    got = lrp(model, images)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_lrp_conserves_relevance_on_a_vgg_like_net(images: torch.Tensor) -> None:
    model = Normalised(vgg_like(bias=False, bn=True))
    model.train()  # the caller's mode is restored afterwards
    with model_untouched(model):  # the canonizer merged and restored the batch norm
        rel = lrp(model, images)
    model.eval()
    with torch.no_grad():
        logits = model(images)
    t = logits.argmax(1)
    # bias-free but with a batch norm shift: merged into the conv's bias, a little leaks
    torch.testing.assert_close(
        rel.sum(dim=(1, 2, 3)), logits[torch.arange(2), t], rtol=0.05, atol=1e-6
    )
    exact = Normalised(vgg_like(bias=False, bn=False)).eval()
    rel = lrp(exact, images)
    with torch.no_grad():
        logits = exact(images)
    torch.testing.assert_close(rel.sum(dim=(1, 2, 3)), logits.max(1).values, rtol=1e-4, atol=1e-7)


def test_lrp_refuses_where_relevance_is_not_conserved(images: torch.Tensor) -> None:
    model = Residual()
    with pytest.raises(UnsupportedModelError, match="not conserved"):
        lrp(model, images)
    assert lrp(model, images, check=False).shape == images.shape
    report = check_baselines(model, images)
    assert report["lrp"][0] == "refused"
    assert report["integrated-gradients"] == ("ok", "")


def test_lrp_resnet_canonizer_is_picked_for_torchvision_resnets() -> None:
    from torchvision.models import resnet18
    from zennit.torchvision import ResNetCanonizer

    from rdex.baselines import lrp_canonizers

    assert isinstance(lrp_canonizers(resnet18(num_classes=3))[0], ResNetCanonizer)
    assert not isinstance(lrp_canonizers(vgg_like())[0], ResNetCanonizer)


# --------------------------------------------------------------------------- registry


def test_every_method_has_the_common_signature(images: torch.Tensor) -> None:
    model = Normalised(vgg_like(bias=False, bn=False))
    for name, fn in ATTRIBUTIONS.items():
        extra = {"steps": 2, "samples": 2} if name in ("cartoonx", "pixel-rde") else {}
        out = fn(model, images, target=None, **extra)
        assert out.shape == (2, 1, 16, 16), name
        assert torch.isfinite(out).all(), name


def test_rde_entries_return_the_explanation_picture(images: torch.Tensor) -> None:
    model = vgg_like(bias=False, bn=False)
    # no steps: the mask stays at ones, so CartoonX shows the greyscale image, Pixel RDE all ones
    grey = ATTRIBUTIONS["cartoonx"](model, images, steps=0)
    torch.testing.assert_close(grey, images.mean(dim=1, keepdim=True), atol=1e-5, rtol=0)
    ones = ATTRIBUTIONS["pixel-rde"](model, images, steps=0)
    assert torch.equal(ones, torch.ones(2, 1, 16, 16))


def test_channel_reductions() -> None:
    a = torch.tensor([[[[1.0]], [[-3.0]], [[2.0]]]])
    assert float(reduce_channels(a, "sum")) == 0.0
    assert float(reduce_channels(a, "abs-sum")) == 6.0
    assert float(reduce_channels(a, "abs-max")) == 3.0
    assert reduce_channels(a, "none") is a
    with pytest.raises(ValueError, match="channel reduction"):
        reduce_channels(a, "mean")  # type: ignore[arg-type]


def test_resolve_methods_aliases_and_errors() -> None:
    assert resolve_methods("ig, sg,gb,lrp") == [
        "integrated-gradients",
        "smoothgrad",
        "guided-backprop",
        "lrp",
    ]
    assert resolve_methods(["cartoonx", "pixel"]) == ["cartoonx", "pixel-rde"]
    with pytest.raises(ValueError, match="unknown method 'gradcam'"):
        resolve_methods("cartoonx,gradcam")
    with pytest.raises(ValueError, match="no methods"):
        resolve_methods(" , ")


def residual_net() -> nn.Module:
    """Factory for the architecture table test."""
    return Residual()


def vgg_net() -> nn.Module:
    """Factory for the architecture table test."""
    return vgg_like(bias=False, bn=True)


def test_check_architectures_table() -> None:
    from rdex.baselines import check_architectures, format_check_table

    names = ["tests.test_baselines:vgg_net", "tests.test_baselines:residual_net", "nope:missing"]
    rows = check_architectures(names, size=32, progress=False)
    assert [r["lrp"] for r in rows[:2]] == ["ok", "refused"]
    assert rows[0]["weights"] == "loaded" and rows[0]["guided-backprop"] == "ok"
    assert rows[2]["weights"] == "-" and rows[2]["notes"].startswith("cannot build")
    table = format_check_table(rows).splitlines()
    assert table[0].split() == [
        "MODEL",
        "WEIGHTS",
        "INTEGRATED-GRADIENTS",
        "SMOOTHGRAD",
        "GUIDED-BACKPROP",
        "LRP",
    ]
    assert table[2].split()[-1] == "refused"
    assert any(
        line.startswith("tests.test_baselines:residual_net: lrp: LRP not available")
        for line in table
    )
