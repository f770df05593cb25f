"""BatchNorm folding: same function, fewer layers, the caller's model untouched, unsafe folds refused."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import make_tiny_model
from torch import Tensor, nn

from rdex.inference import fold_batchnorm
from rdex.methods import CartoonX


def _randomise_batchnorms(net: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
    return net.eval()


def _count_bn(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_tiny_model_folds_to_the_same_function() -> None:
    net = make_tiny_model().eval()
    x = torch.rand(3, 3, 16, 16)
    folded, report = fold_batchnorm(net, x)
    assert report.accepted and report.folded == 1 and report.batchnorms == 1
    assert _count_bn(folded) == 0 and _count_bn(net) == 1  # the caller's model is not changed
    assert folded[0].bias is not None
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "resnet18"])
def test_torchvision_blocks_fold(arch: str) -> None:
    import torchvision

    net = _randomise_batchnorms(getattr(torchvision.models, arch)(weights=None))
    x = torch.rand(2, 3, 64, 64)
    folded, report = fold_batchnorm(net, x)
    assert report.accepted and report.folded == report.batchnorms == _count_bn(net) > 0
    assert _count_bn(folded) == 0
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-4)


def test_timm_batchnormact_keeps_its_activation() -> None:
    timm = pytest.importorskip("timm")
    net = _randomise_batchnorms(timm.create_model("efficientnet_lite0", pretrained=False))
    x = torch.rand(1, 3, 64, 64)
    folded, report = fold_batchnorm(net, x)
    assert report.accepted and report.folded == report.batchnorms == _count_bn(net) > 0
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-4)


class _SharedConvOutput(nn.Module):
    """The conv's output feeds the BatchNorm *and* a skip connection: folding would change it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return (self.bn(y) + y).mean(dim=(2, 3))


def test_a_fold_that_changes_the_output_is_refused() -> None:
    net = _randomise_batchnorms(_SharedConvOutput())
    x = torch.rand(2, 3, 8, 8)
    model, report = fold_batchnorm(net, x)
    assert report.folded == 1 and not report.accepted and model is net
    assert report.max_error > 1e-3


def test_training_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(make_tiny_model().train(), torch.rand(1, 3, 8, 8))


def test_cartoonx_with_and_without_folding_agree(tiny_classifier) -> None:  # noqa: ANN001
    model = tiny_classifier()
    x = torch.rand(2, 3, 32, 32)
    kwargs = {"steps": 30, "samples": 4, "lr": 0.05, "seed": 3}
    on = CartoonX(model, **kwargs)
    res_on = on.explain(x)
    res_off = CartoonX(model, fold_batchnorm=False, **kwargs).explain(x)
    assert on.fold_report is not None and on.fold_report.accepted
    for a, b in zip(res_on.mask, res_off.mask, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
    assert _count_bn(model) == 1  # explaining never rewrites the caller's model
