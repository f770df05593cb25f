"""BatchNorm folding: same function, fewer layers, the caller's model untouched, unsafe folds refused."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from rdex.inference import fold_batchnorm
from rdex.methods import CartoonX
from tiny_models import make_tiny_model


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


_FAULTS = """
import resource, sys, torch
from rdex.inference import freed_memory_kept, keep_freed_memory
if sys.argv[1] == "on":
    assert keep_freed_memory()
assert freed_memory_kept() == (sys.argv[1] == "on")
def one_round():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffers = [torch.empty(4 << 20).fill_(1.0) for _ in range(6)]  # 6 x 16 MiB, like activations
    del buffers
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print([one_round() for _ in range(4)][-1])
"""


def test_keep_freed_memory_reuses_pages_instead_of_faulting_them_in_again() -> None:
    import os
    import platform
    import subprocess
    import sys

    from rdex.inference import keep_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert keep_freed_memory() is False  # documented no-op elsewhere
        return

    # glibc's thresholds start at 128 KiB and adapt to the process's history, so both runs start
    # from the initial values pinned (the state in which every freed activation is given back).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}

    def faults(mode: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", _FAULTS, mode],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        return int(run.stdout.strip())

    # 96 MiB allocated and freed per round: returned to the OS, ~24000 pages fault back in every
    # round; kept in the heap (keep_freed_memory), the later rounds reuse it.
    assert faults("off") > 10_000
    assert faults("on") < 1_000


def test_keep_freed_memory_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from rdex.inference import keep_freed_memory

    monkeypatch.setenv("RDEX_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False
