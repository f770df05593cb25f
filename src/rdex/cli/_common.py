"""Arguments and helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch

from rdex.rde import PRESETS, RDEConfig, preset

__all__ = [
    "add_model_args",
    "add_image_args",
    "add_rde_args",
    "add_seeds_arg",
    "pick_device",
    "rde_config",
    "method_names",
    "finite_float",
    "finite_float_value",
    "bounded_int",
    "seed_int",
    "size_int",
    "obfuscation_spec",
    "harden_numbers",
]

#: Largest integer any option takes (int64): beyond it torch and numpy overflow.
MAX_INT = 2**63 - 1


def finite_float(text: str) -> float:
    """An argparse type: a finite float within float32's range (``nan``, ``inf`` and values that
    overflow float32, in which rdex computes, are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    if abs(value) > torch.finfo(torch.float32).max:  # rdex computes in float32
        raise argparse.ArgumentTypeError(f"out of range (beyond float32), got {text!r}")
    return value


def finite_float_value(text: str, option: str) -> float:
    """A finite float from one item of a list option (a ``ValueError`` naming ``option``)."""
    try:
        return finite_float(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"{option}: {exc}") from None


def bounded_int(text: str) -> int:
    """An argparse type: an integer that fits in 64 bits (signed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not -MAX_INT <= value <= MAX_INT:
        raise argparse.ArgumentTypeError(f"must be between {-MAX_INT} and {MAX_INT}, got {text}")
    return value


def seed_int(text: str) -> int:
    """An argparse type: a seed, ``0 <= seed < 2**63`` (what every torch generator takes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_INT:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_INT} (2**63 - 1), got {text}")
    return value


def size_int(text: str) -> int:
    """An argparse type: an image side between ``MIN_SIDE`` and ``MAX_SIZE`` pixels."""
    from rdex.images import MAX_SIZE, MIN_SIDE

    value = bounded_int(text)
    if not MIN_SIDE <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError(
            f"must be between {MIN_SIDE} and {MAX_SIZE} pixels, got {text}"
        )
    return value


def obfuscation_spec(text: str) -> str:
    """An argparse type: an obfuscation name whose ``:VALUE`` parameter, if any, is finite."""
    name, sep, value = text.partition(":")
    if sep:
        for part in value.split(","):
            try:
                number = float(part)
            except ValueError:
                continue  # not a number: the obfuscation itself says what it expects
            if not math.isfinite(number):
                raise argparse.ArgumentTypeError(f"{name}: the value must be finite, got {part!r}")
            if abs(number) > torch.finfo(torch.float32).max:  # images are float32
                raise argparse.ArgumentTypeError(f"{name}: the value is out of range, got {part!r}")
    return text


def harden_numbers(parser: argparse.ArgumentParser) -> None:
    """Give every numeric option of ``parser`` (and its sub-parsers) a checked type.

    ``float`` options refuse NaN and infinities, ``int`` options stay within 64 bits, ``--seed``
    within a generator's range, ``--size`` within ``[MIN_SIDE, MAX_SIZE]``, and ``--obfuscation``
    parameters must be finite. Done once over the whole parser so that no option is forgotten.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                harden_numbers(child)
            continue
        if action.dest == "seed" and action.type in (int, bounded_int):
            action.type = seed_int
        elif action.dest == "size" and action.type in (int, bounded_int):
            from rdex.images import MAX_SIZE, MIN_SIDE

            action.type = size_int
            action.help = f"{action.help or 'image side'}; {MIN_SIDE} to {MAX_SIZE} pixels"
        elif action.dest == "obfuscation" and action.type is None:
            action.type = obfuscation_spec
        elif action.type is float:
            action.type = finite_float
        elif action.type is int:
            action.type = bounded_int


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
    from rdex.images import MAX_SIZE, MIN_SIDE

    group.add_argument(
        "--size",
        type=size_int,
        default=256,
        help=f"image side in pixels, {MIN_SIDE} to {MAX_SIZE} (default 256, the paper's)",
    )
    group.add_argument(
        "--fit",
        choices=("resize", "crop"),
        default="resize",
        help="resize: squash to size x size (default); crop: keep aspect, centre-crop",
    )


def add_rde_args(
    parser: argparse.ArgumentParser, *, default_preset: str | None = None
) -> argparse._ArgumentGroup:
    """The RDE optimisation options; returns their group, for a command's own additions."""
    from rdex.config import DEFAULT_PRESET

    default_preset = default_preset or DEFAULT_PRESET
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
    group.add_argument(
        "--distortion",
        default=None,
        help="label, max-label, l2, kl (default: the method's own: label; max-label for "
        "ShearletX and WaveletX)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    return group


def add_seeds_arg(group: Any) -> None:
    """``--seeds``, for the commands that explain with :mod:`rdex.seeds` (explain, batch)."""
    group.add_argument("--seeds", default=None, metavar="LIST",
                       help="run once per seed (comma-separated, e.g. 0,1,2; replaces --seed) and "
                       "explain with the median of their masks; records how far the seeds agree "
                       "(SSIM between their pictures) and every seed's mask (rdex.seeds; costs "
                       "one run per seed)")  # fmt: skip


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


def rde_config(args: argparse.Namespace, method: str) -> RDEConfig:
    """The :class:`RDEConfig` the RDE arguments describe for ``method``: what the user did not
    give (``--lambda-k``, ``--distortion``) is the method's own default."""
    from rdex.methods import get_method

    cls: Any = get_method(method).factory
    overrides: dict[str, Any] = {
        "lambda_k": args.lambda_k if args.lambda_k is not None else cls.default_lambda_k,
        "steps": args.steps,
        "samples": args.samples,
        "lr": args.lr,
        "schedule": args.schedule,
        "distortion": args.distortion or cls.default_distortion,
        "seed": args.seed,
    }
    return preset(args.preset, **overrides)


def method_names(value: str) -> list[str]:
    """Comma-separated method names, checked against the RDE methods."""
    from rdex.methods import method_choices, resolve_methods

    if not any(v.strip() for v in value.split(",")):
        raise ValueError(f"--method {value!r} names no method; choose from {method_choices('rde')}")
    return list(dict.fromkeys(resolve_methods(value, kind="rde")))
