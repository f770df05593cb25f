"""Command-line front end: ``rdex COMMAND ...``.

Each command lives in its own module under :mod:`rdex.cli` and exposes ``add_parser(subparsers)``,
which registers an ``argparse`` sub-parser whose ``func`` default is called with the parsed
arguments and returns an exit code. Only the CLI (and the batch runner) choose devices.

Exit codes (the same for every command):

* 0: success.
* 1: ``rdex batch`` only: the run finished, but some images failed (see the manifest).
* 2: a usage error: a bad option or value, a missing or unreadable input, an unknown model,
  method or label. The library raises these as ``ValueError`` / ``FileNotFoundError``; here they
  become one line on stderr, never a traceback.
* 3: an I/O failure while reading or writing files (disk full, read-only file system, permission
  denied): the results written so far are intact (every write is atomic).
* 4: an internal error (a bug in rdex): the traceback is printed; please report it.
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

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


EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_IO = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (with a pointer to ``--help``), exit 2."""

    def error(self, message: str) -> NoReturn:
        from rdex.io import display_name

        self.exit(
            EXIT_USAGE, f"{self.prog}: error: {display_name(message)} (see {self.prog} --help)\n"
        )


def build_parser() -> argparse.ArgumentParser:
    from rdex import __version__
    from rdex.cli._common import harden_numbers

    parser = Parser(
        prog="rdex",
        description="CartoonX and rate-distortion explanations for PyTorch image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"rdex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"rdex.cli.{name}")
        module.add_parser(sub)
    for command in sub.choices.values():
        harden_numbers(command)
    return parser


def _io_failure(exc: OSError) -> bool:
    """An ``OSError`` of the machine (disk full, read-only, permissions, hardware), not of the
    user's arguments (a file that does not exist, a folder given for a file)."""
    if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT):
        return True
    return not isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rdex`` console script."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad option (one line printed, code 2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from rdex.inference import keep_freed_memory

    keep_freed_memory()  # the rdex process's own allocator: no page faults per chunk
    from rdex.io import display_name

    def say(kind: str, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"rdex {args.command}: {kind}: {display_name(text)}", file=sys.stderr)

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("rdex: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if _io_failure(exc):
            say("I/O error", exc)
            return EXIT_IO
        say("error", exc)
        return EXIT_USAGE
    except (CLIError, ValueError) as exc:
        say("error", exc)
        return EXIT_USAGE
    except Exception:  # a bug: show it, with its own exit code
        traceback.print_exc()
        print(
            f"rdex {args.command}: internal error (a bug in rdex; please report it with the "
            "traceback above)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
