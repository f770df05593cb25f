"""How alike two explanation pictures are: the structural similarity (SSIM).

The benchmark compares a fast schedule's picture with the paper schedule's, and the sensitivity
experiments compare pictures at neighbouring hyperparameters, both with :func:`ssim`.

References:
    Wang et al., "Image Quality Assessment: From Error Visibility to Structural Similarity", IEEE
    Trans. Image Process. 2004 (as implemented by scikit-image).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["ssim"]


def _grey(picture: Tensor | np.ndarray) -> np.ndarray:
    t = torch.as_tensor(picture).detach().cpu()
    if not t.is_floating_point():
        t = t.float()
    if t.dim() == 3:
        t = t.mean(dim=0)
    if t.dim() != 2:
        raise ValueError(f"a picture is (H, W) or (C, H, W), got shape {tuple(t.shape)}")
    return t.numpy()


def ssim(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """SSIM of two pictures with values in ``[0, 1]`` (scikit-image, data range 1).

    Args:
        a, b: Pictures ``(H, W)`` or ``(C, H, W)`` (the channels are averaged to grey first),
            tensors or arrays. The SSIM is computed in the pictures' own precision (float32
            pictures in float32, as scikit-image does).

    Returns:
        The mean SSIM, 1 for equal pictures.
    """
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_grey(a), _grey(b), data_range=1.0))
