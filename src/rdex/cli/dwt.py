"""``rdex dwt IMAGE [--mask NPZ]``: Figure 4, DWT coefficients (and a CartoonX mask) as L-shapes."""

from __future__ import annotations

import argparse
from pathlib import Path

from rdex.cli._common import add_image_args
from rdex.cli.compare import stem


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dwt",
        help="show an image's wavelet coefficients, optionally with a CartoonX mask (Figure 4)",
        description="Draw the DWT of IMAGE (greyscale) as nested L-shaped sub-images, one per "
        "scale (the outermost L is the finest scale). With --mask, the .npz that `rdex explain` "
        "saved for this image, also draw the CartoonX mask in coefficient space, the masked "
        "coefficients and the explanation. Use the --size of the explanation.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument(
        "--mask", default=None, metavar="NPZ", help="a CartoonX .npz written by `rdex explain`"
    )
    p.add_argument("--wavelet", default="db3", help="pywt wavelet (default db3, CartoonX's)")
    p.add_argument("--levels", type=int, default=5, help="scales J (default 5)")
    p.add_argument("--mode", default="zero", help="padding mode (default zero)")
    add_image_args(p)
    p.add_argument("--out", default="rdex-out", help="output folder (default rdex-out)")
    p.add_argument("--name", default=None, help="file-name stem (default dwt-IMAGE)")
    p.add_argument("--pdf", action="store_true", help="also write the figure as PDF")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rdex.figures import mask_from_npz
    from rdex.images import resolve_image
    from rdex.plots import dwt_figure
    from rdex.viz import save_figure

    name, image = resolve_image(args.image, size=args.size, fit=args.fit)
    mask = explanation = None
    if args.mask:
        mask, explanation = mask_from_npz(args.mask)
    fig = dwt_figure(
        image,
        wavelet=args.wavelet,
        levels=args.levels,
        mode=args.mode,
        mask=mask,
        explanation=explanation,
        title=f"{name}: {args.wavelet}, {args.levels} scales, {args.mode} padding",
    )
    out = args.name or stem("dwt", [name])
    paths = save_figure(fig, Path(args.out) / f"{out}.png", pdf=args.pdf)
    print(" ".join(str(p) for p in paths))
    return 0
