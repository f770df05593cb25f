"""Inference-only rewrites of a frozen classifier that keep its function and cut its cost.

RDE evaluates the model tens of thousands of times per explanation, always in eval mode with
frozen weights. In eval mode a BatchNorm that follows a convolution is an affine map per channel,
so it can be folded into the convolution's weight and bias: the network computes the same function
(up to float rounding) with one memory-bound elementwise pass less in the forward and in the
backward. What that saves on the default model is measured in the documentation
(docs/performance.md).

The arithmetic is PyTorch's :func:`torch.nn.utils.fusion.fuse_conv_bn_weights`. What no library
does for an arbitrary ``nn.Module`` is *finding* the pairs: torch.fx's fusion needs a traceable
model and matches exact types only, so timm's ``Conv2dSame``/``BatchNormAct2d`` and torchvision's
blocks would be missed. Here the pairs are found by running the model once with hooks (a BatchNorm
whose input is the very tensor a convolution returned), and the folded copy is checked against the
original on the example input; if they disagree the original is used. :func:`frozen` is how
every part of rdex runs a caller's model: eval mode, no parameter gradients, flags restored.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["FoldReport", "fold_batchnorm", "freed_memory_kept", "frozen", "keep_freed_memory"]


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode with no parameter gradients; the caller's flags come back after.

    The one place rdex touches a caller's module: every explainer, baseline and benchmark enters
    it around its work, so a user's model leaves exactly as it came in.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass(frozen=True)
class FoldReport:
    """What :func:`fold_batchnorm` did.

    Attributes:
        folded: Number of BatchNorms folded into the convolution before them.
        batchnorms: Number of BatchNorm layers the model ran.
        max_error: Largest absolute difference of the outputs on the example (0 if nothing folded).
        accepted: False when the check failed and the original model is returned.
    """

    folded: int
    batchnorms: int
    max_error: float
    accepted: bool


def _replacement(bn: nn.BatchNorm2d) -> nn.Module | None:
    """What is left of ``bn`` once its affine map lives in the convolution, or None if unknown."""
    if type(bn).forward is nn.BatchNorm2d.forward:
        return nn.Identity()
    # timm's BatchNormAct2d: batch norm, then dropout and activation (norm_act.py).
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    known = type(bn).__name__ == "BatchNormAct2d"
    if known and isinstance(drop, nn.Module) and isinstance(act, nn.Module):
        return nn.Sequential(drop, act)
    return None


def _find_pairs(model: nn.Module, example: Tensor) -> tuple[list[tuple[str, str]], int, Tensor]:
    """(conv, batchnorm) name pairs where the BatchNorm's input is the conv's own output.

    Only modules that ran exactly once qualify (a shared layer could not be folded for one use).
    Also returns how many BatchNorm layers ran, and the model's output on ``example``.
    """
    produced: dict[int, tuple[str, Tensor]] = {}
    calls: dict[str, int] = {}
    pair_of: dict[str, str] = {}
    handles = []

    def on_conv(name: str) -> Callable[[nn.Module, Any, Tensor], None]:
        def hook(module: nn.Module, args: Any, output: Tensor) -> None:
            calls[name] = calls.get(name, 0) + 1
            produced[id(output)] = (name, output)  # the tensor is kept alive, so ids stay unique

        return hook

    def on_bn(name: str) -> Callable[[nn.Module, Any], None]:
        def hook(module: nn.Module, args: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            source = produced.get(id(args[0])) if args else None
            if source is not None and source[1] is args[0]:
                pair_of[name] = source[0]

        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(on_conv(name)))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(on_bn(name)))
    try:
        with torch.no_grad():
            output = model(example)
    finally:
        for h in handles:
            h.remove()
    pairs = [(conv, bn) for bn, conv in pair_of.items() if calls[bn] == 1 and calls[conv] == 1]
    ran = sum(
        1 for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and name in calls
    )
    return pairs, ran, output


def fold_batchnorm(
    model: nn.Module, example: Tensor, *, rtol: float = 1e-3
) -> tuple[nn.Module, FoldReport]:
    """A copy of ``model`` with every eval-mode BatchNorm folded into the convolution before it.

    Args:
        model: A model in eval mode (BatchNorms use their running statistics). Not modified.
        example: An input the model accepts; one forward pass finds the conv -> BatchNorm pairs and
            checks the folded copy against ``model``.
        rtol: Accepted output difference, relative to the output's largest magnitude.

    Returns:
        ``(model_to_run, report)``: the folded copy, or ``model`` itself when nothing could be
        folded or the folded copy's output differs by more than ``rtol``.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (running statistics)")
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return model, FoldReport(0, 0, 0.0, False)
    work = copy.deepcopy(model)
    probe = example[:1]
    pairs, ran, unfolded = _find_pairs(work, probe)  # work is still an exact copy here
    modules = dict(work.named_modules())
    folded = 0
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        if bn.running_mean is None or bn.running_var is None or bn.training:
            continue
        substitute = _replacement(bn)
        if substitute is None:
            continue
        weight, bias = fuse_conv_bn_weights(
            conv.weight.detach(),
            None if conv.bias is None else conv.bias.detach(),
            bn.running_mean,
            bn.running_var,
            bn.eps,
            None if bn.weight is None else bn.weight.detach(),
            None if bn.bias is None else bn.bias.detach(),
        )
        conv.weight = nn.Parameter(weight.detach(), requires_grad=False)
        conv.bias = nn.Parameter(bias.detach(), requires_grad=False)
        parent_name, _, child = bn_name.rpartition(".")
        setattr(modules[parent_name] if parent_name else work, child, substitute)
        folded += 1
    if folded == 0:
        return model, FoldReport(0, ran, 0.0, False)
    want = unfolded.float()
    with torch.no_grad():
        got = work(probe).float()
    error = float((want - got).abs().max())
    scale = float(want.abs().max()) or 1.0
    if not torch.isfinite(got).all() or error > rtol * scale:
        return model, FoldReport(folded, ran, error, False)
    return work, FoldReport(folded, ran, error, True)


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_freed_memory_kept = False


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` raised this process's allocator thresholds."""
    return _freed_memory_kept


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Let glibc's allocator keep freed blocks below ``threshold`` bytes for reuse.

    Every chunk of obfuscations allocates activations of tens of MiB and frees them again. glibc
    serves blocks above its mmap threshold (at most 32 MiB by default) with fresh ``mmap`` pages and
    unmaps them on free, so every chunk pays the page faults of zeroing them anew (the system
    time this costs is measured in docs/performance.md). Raising the mmap and trim thresholds keeps the memory in the heap; the
    peak resident memory is unchanged, but the process does not give it back until it exits.

    Process-wide, so the ``rdex`` command calls it for its own process; a library user calls it
    (or sets ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``) only if that suits the
    application. A no-op returning False where glibc is not the C library, or when the
    environment variable ``RDEX_KEEP_FREED_MEMORY`` is ``0`` (to benchmark the default allocator).
    """
    import ctypes
    import ctypes.util
    import platform

    if os.environ.get("RDEX_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    global _freed_memory_kept
    kept = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, threshold)
    )
    _freed_memory_kept = _freed_memory_kept or kept
    return kept
