"""``rdex report OUTPUT_DIR``: a static HTML gallery of a batch run."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML gallery of a batch run",
        description="Write OUTPUT_DIR/index.html from the manifest of `rdex batch`: one card per "
        "image with the input, the explanations side by side, labels (red when misclassified), "
        "probabilities and runtime, with filters for misclassified images and classes. Open it "
        "from disk; no server needed.",
    )
    p.add_argument("out", metavar="OUTPUT_DIR", help="the --out folder of `rdex batch`")
    p.add_argument("--title", default=None, help="page title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rdex.report import write_report

    path = write_report(
        args.out,
        title=args.title,
        log=lambda m: print(f"rdex report: warning: {m}", file=sys.stderr),
    )
    print(path)
    return 0
