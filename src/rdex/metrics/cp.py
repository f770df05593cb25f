"""Conciseness-preciseness (CP) scores and the hallucination score of ShearletX (our own
implementation of their definitions).

References:
    Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image Representation",
    CVPR 2023, section 5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rdex.metrics._model import _model_output, _target_index
from rdex.metrics.sparsity import complexity
from rdex.representations import Representation
from rdex.types import ModelOutput


@torch.no_grad()
def cp_scores(
    model: nn.Module,
    x: Tensor,
    masked: Tensor,
    *,
    target: Any = None,
    representation: Representation | None = None,
    model_output: ModelOutput = "softmax",
    eps: float = 1e-12,
) -> dict[str, Tensor]:
    """Conciseness-preciseness scores of a masked image (ShearletX, CVPR 2023).

    ``CP = (p(masked) / p(x)) / (I(masked) / I(x))`` with ``p`` the probability of the target
    (default: the predicted label of ``x``) and ``I`` one of three measures of information
    (:func:`complexity`): pixel l1 (``cp_pixel_l1``), l1 of the representation's coefficients
    (``cp_coeff_l1``) and the entropy of the normalised squared coefficients (``cp_entropy``). A
    concise and precise explanation keeps the class probability with little of the image's
    information: higher is better.

    Args:
        model: Classifier taking ``x``.
        x: Images ``(B, C, H, W)``.
        masked: The explanation's masked image ``(B, C, H, W)`` (for RDE: the mask applied to the
            input's coefficients, :attr:`rdex.rde.RDEResult.explanation_rgb`).
        target: Label per input (default: the prediction).
        representation: Representation of the coefficient measures (default DWT db3, 5 scales).
        model_output: ``"softmax"`` or ``"identity"``.
        eps: Guards divisions (an empty masked image has information 0: its CP is ``ratio / eps``).

    Returns:
        ``cp_pixel_l1``, ``cp_coeff_l1``, ``cp_entropy`` and ``retained_prob_ratio``, each ``(B,)``.

    References:
        Kolek, Windesheim, Andrade-Loarca, Kutyniok, Levie, "Explaining Image Classifiers with
        Multiscale Directional Image Representation", CVPR 2023, section 5.
    """
    if masked.shape != x.shape:
        raise ValueError(f"masked images {tuple(masked.shape)} differ from inputs {tuple(x.shape)}")
    target_idx, probs = _target_index(model, x, target, model_output)
    p_masked = _model_output(model, masked.to(x), model_output)
    ratio_p = p_masked.gather(1, target_idx.view(-1, 1)).squeeze(1) / probs.gather(
        1, target_idx.view(-1, 1)
    ).squeeze(1).clamp_min(eps)
    out = {"retained_prob_ratio": ratio_p.cpu()}
    for kind, key in (
        ("pixel-l1", "cp_pixel_l1"),
        ("coeff-l1", "cp_coeff_l1"),
        ("entropy", "cp_entropy"),
    ):
        info_x = complexity(x, kind, representation=representation)  # type: ignore[arg-type]
        info_m = complexity(masked.to(x), kind, representation=representation)  # type: ignore[arg-type]
        ratio_i = info_m / info_x.clamp_min(eps)
        out[key] = (ratio_p / ratio_i.clamp_min(eps)).cpu()
    return out


def _grey_numpy(image: Tensor) -> np.ndarray:
    """``(C, H, W)`` or ``(H, W)`` tensor to a float64 greyscale ``(H, W)`` array."""
    arr = image.detach().double().cpu()
    if arr.dim() == 3:
        arr = arr.mean(dim=0)
    return arr.numpy()


def edge_map(
    image: Tensor,
    *,
    sigma: float = 1.0,
    low_threshold: float | None = 0.05,
    high_threshold: float | None = 0.15,
) -> np.ndarray:
    """Canny edges (scikit-image) of one image ``(C, H, W)`` or ``(H, W)`` (channels averaged).

    Thresholds are absolute gradient magnitudes of the smoothed ``[0, 1]`` image, the same for the
    input and the explanation, so weak noise does not count as an edge in either.
    """
    from skimage.feature import canny

    return canny(
        _grey_numpy(image), sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold
    )


def hallucination_score(
    x: Tensor,
    explanation: Tensor,
    *,
    tolerance: int = 3,
    sigma: float = 1.0,
    low_threshold: float | None = 0.05,
    high_threshold: float | None = 0.15,
) -> dict[str, Tensor]:
    """Edges in the explanation that the input does not have (ShearletX, CVPR 2023).

    Edges are Canny edges (:func:`edge_map`) of the greyscale input and of the explanation image;
    the input's edge map is dilated by ``tolerance`` pixels (a disk), and an explanation edge pixel
    outside it is *hallucinated*. The score is the number of hallucinated edge pixels divided by
    the number of the input's edge pixels (at least one, so an edge-free input such as a clear sky
    gives the raw count). Lower is better; 0 means every edge of the explanation is near an edge
    of the input.

    Args:
        x: Images ``(B, C, H, W)``.
        explanation: Explanation images ``(B, C', H, W)`` in ``[0, 1]`` (for RDE: the masked
            image :attr:`~rdex.rde.RDEResult.explanation_rgb`).
        tolerance: Dilation radius of the input's edges in pixels.
        sigma, low_threshold, high_threshold: Canny parameters (see :func:`edge_map`).

    Returns:
        ``hallucination`` (the score), ``hallucinated_edge_fraction`` (hallucinated edge pixels
        per image pixel), ``input_edges`` and ``explanation_edges`` (counts), each ``(B,)``.

    References:
        Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image
        Representation", CVPR 2023, section 5 (hallucination score).
    """
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk

    if explanation.shape[0] != x.shape[0] or explanation.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"explanations {tuple(explanation.shape)} do not match images {tuple(x.shape)}"
        )
    scores, fractions, n_in, n_ex = [], [], [], []
    for xi, ei in zip(x, explanation, strict=True):
        edges_x = edge_map(
            xi, sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold
        )
        edges_e = edge_map(
            ei, sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold
        )
        near = binary_dilation(edges_x, structure=disk(tolerance)) if tolerance > 0 else edges_x
        hallucinated = int(np.count_nonzero(edges_e & ~near))
        count_x = int(np.count_nonzero(edges_x))
        scores.append(hallucinated / max(count_x, 1))
        fractions.append(hallucinated / edges_x.size)
        n_in.append(count_x)
        n_ex.append(int(np.count_nonzero(edges_e)))
    return {
        "hallucination": torch.tensor(scores),
        "hallucinated_edge_fraction": torch.tensor(fractions),
        "input_edges": torch.tensor(n_in, dtype=torch.float32),
        "explanation_edges": torch.tensor(n_ex, dtype=torch.float32),
    }
