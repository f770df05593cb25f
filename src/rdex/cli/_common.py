"""Arguments and helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from rdex.rde import PRESETS, RDEConfig, preset

__all__ = [
    "add_model_args",
    "add_image_args",
    "add_rde_args",
    "pick_device",
    "rde_config",
    "method_names",
]


def add_model_args(parser: argparse.ArgumentParser) -> None:
    from rdex.models import DEFAULT_MODEL

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"classifier: {DEFAULT_MODEL} (default, bundled weights), torchvision:NAME, timm:NAME, "
        "a TorchScript file, or package.module:factory (see `rdex models`)",
    )
    group.add_argument("--weights", default=None, help="state-dict file for the model")
    group.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when available)"
    )


def add_image_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("images")
    group.add_argument(
        "--size", type=int, default=256, help="image side in pixels (default 256, the paper's)"
    )
    group.add_argument(
        "--fit",
        choices=("resize", "crop"),
        default="resize",
        help="resize: squash to size x size (default); crop: keep aspect, centre-crop",
    )


def add_rde_args(parser: argparse.ArgumentParser, *, default_preset: str = "fast") -> None:
    group = parser.add_argument_group("RDE optimisation")
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=default_preset,
        help=f"named schedule (default {default_preset}); 'paper' is appendix A.2 exactly "
        "(lr 0.001, 2000 steps, 64 samples)",
    )
    group.add_argument(
        "--lambda-k", type=float, default=None, help="sparsity lambda * k (default per method)"
    )
    group.add_argument("--steps", type=int, default=None, help="optimisation steps N")
    group.add_argument("--samples", type=int, default=None, help="noise samples L per step")
    group.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    group.add_argument("--schedule", choices=("constant", "cosine"), default=None)
    group.add_argument(
        "--obfuscation", default="gaussian", help="gaussian, uniform, zeros, constant:V, blur:SIGMA"
    )
    group.add_argument("--distortion", default="label", help="label, max-label, l2, kl")
    group.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; a named CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested, but CUDA is not available on this machine")
    return device


def rde_config(args: argparse.Namespace, lambda_k: float | None = None) -> RDEConfig:
    """The :class:`RDEConfig` the RDE arguments describe (``lambda_k``: the method's default)."""
    overrides: dict[str, Any] = {
        "lambda_k": args.lambda_k if args.lambda_k is not None else lambda_k,
        "steps": args.steps,
        "samples": args.samples,
        "lr": args.lr,
        "schedule": args.schedule,
        "distortion": args.distortion,
        "seed": args.seed,
    }
    return preset(args.preset, **overrides)


def method_names(value: str) -> list[str]:
    """Comma-separated method names, checked against the RDE methods."""
    from rdex.methods import METHODS

    names = [v.strip() for v in value.split(",") if v.strip()]
    for n in names:
        if n not in METHODS:
            raise ValueError(f"unknown method {n!r}; choose from {', '.join(METHODS)}")
    return names
