"""Command-line front end: ``rdex COMMAND ...``.

Each command lives in its own module under :mod:`rdex.cli` and exposes ``add_parser(subparsers)``,
which registers an ``argparse`` sub-parser whose ``func`` default is called with the parsed
arguments and returns an exit code. Only the CLI (and the batch runner) choose devices.

Errors a user can cause (bad file, unknown model or label, missing weights) surface as
``ValueError``/``FileNotFoundError``/``KeyError`` from the library; here they become one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Module names under rdex.cli, in the order their commands appear in ``rdex --help``.
COMMANDS: tuple[str, ...] = (
    "explain",
    "compare",
    "sweep",
    "models_compare",
    "dwt",
    "classify",
    "models_cmd",
    "demo",
    "batch",
    "evaluate",
    "experiment",
    "report",
    "bench",
)


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    from rdex import __version__

    parser = argparse.ArgumentParser(
        prog="rdex",
        description="CartoonX and rate-distortion explanations for PyTorch image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"rdex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"rdex.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rdex`` console script."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    from rdex.inference import keep_freed_memory

    keep_freed_memory()  # the rdex process's own allocator: no page faults per chunk
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("rdex: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError, KeyError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"rdex {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
