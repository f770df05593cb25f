"""Explanation methods as presets over the RDE core (:mod:`rdex.rde`)."""

from rdex.methods.cartoonx import CartoonX
from rdex.methods.pixel_rde import PixelRDE

#: CLI names of the RDE methods.
METHODS = {"cartoonx": CartoonX, "pixel-rde": PixelRDE}

__all__ = ["CartoonX", "PixelRDE", "METHODS"]
