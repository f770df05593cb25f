"""Metrics for explanations: faithfulness curves, sparsity and smoothness, CP and hallucination.

Every metric works on plain tensors, so it applies to any method: an RDE result (mask per band of
a representation) or a pixel attribution ``(B, 1, H, W)`` from a gradient or propagation method.

* :func:`rate_distortion_curve`: keep the top-``k`` fraction of mask entries (or attribution
  values), obfuscate the rest with an obfuscation strategy of the RDE core and measure the
  expected distortion (Macdonald et al., 2019; Kolek et al., 2022, section 4.1). Pixel
  attributions use the :class:`~rdex.representations.Pixel` representation, so curves of all
  methods share the distortion axis.
* :func:`deletion_curve`, :func:`insertion_curve`: the target probability while the most relevant
  pixels are deleted from the image (replaced by a baseline) or inserted into the baseline
  (Petsiuk et al., "RISE", BMVC 2018).
* :func:`mask_sparsity`, :func:`total_variation`, :func:`wavelet_sparsity`, :func:`wavelet_l1`:
  how sparse and how smooth an explanation is.
* :func:`ssim`: how alike two explanation pictures are (structural similarity).
* :func:`cp_scores`: conciseness-preciseness scores and :func:`hallucination_score`, both as
  defined by Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image
  Representation" (ShearletX), CVPR 2023, section 5 (our own implementation of their definitions).

:class:`Explanation` bundles what the metrics need of one method's output and
:func:`evaluate` computes all metrics for it; :func:`manifest_metrics` returns plain floats for one
image (what the batch runner writes into its manifest).

Modules: :mod:`~rdex.metrics.curves` (curve type, area, ranking, deletion and insertion),
:mod:`~rdex.metrics.rate_distortion`, :mod:`~rdex.metrics.sparsity` (sparsity, smoothness and the
information measures), :mod:`~rdex.metrics.cp` (CP and hallucination),
:mod:`~rdex.metrics.similarity` (SSIM) and :mod:`~rdex.metrics.evaluation` (:class:`Explanation`, :func:`evaluate`); every public name is
re-exported here.

Conventions: curves are sampled at fractions ``0 .. 1`` of the ranked entries and their area is the
trapezoid rule over ``[0, 1]``. Lower is better for the rate-distortion and deletion areas, higher
for the insertion area and the CP scores, lower for the hallucination score.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022. Petsiuk et al., "RISE:
    Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018. Kolek et al.,
    "Explaining Image Classifiers with Multiscale Directional Image Representation", CVPR 2023.
    Hurley & Rickard, "Comparing Measures of Sparsity", IEEE Trans. Inf. Theory 2009 (Gini index).
"""

from rdex.metrics.cp import cp_scores, edge_map, hallucination_score
from rdex.metrics.curves import (
    DEFAULT_FRACTIONS,
    Curve,
    area_under_curve,
    deletion_curve,
    insertion_curve,
    make_baseline,
    rank_order,
    top_fraction_mask,
)
from rdex.metrics.evaluation import (
    METRIC_DIRECTIONS,
    Evaluation,
    Explanation,
    attribution_picture,
    evaluate,
    manifest_metrics,
    pixel_relevance,
)
from rdex.metrics.rate_distortion import obfuscated_outputs, rate_distortion_curve
from rdex.metrics.similarity import ssim
from rdex.metrics.sparsity import (
    ComplexityKind,
    complexity,
    gini_index,
    mask_sparsity,
    total_variation,
    wavelet_l1,
    wavelet_sparsity,
)

__all__ = [
    "Curve",
    "Explanation",
    "Evaluation",
    "area_under_curve",
    "top_fraction_mask",
    "rank_order",
    "rate_distortion_curve",
    "obfuscated_outputs",
    "deletion_curve",
    "insertion_curve",
    "make_baseline",
    "mask_sparsity",
    "total_variation",
    "gini_index",
    "wavelet_sparsity",
    "wavelet_l1",
    "complexity",
    "cp_scores",
    "edge_map",
    "hallucination_score",
    "pixel_relevance",
    "attribution_picture",
    "evaluate",
    "manifest_metrics",
    "METRIC_DIRECTIONS",
    "DEFAULT_FRACTIONS",
    "ComplexityKind",
    "ssim",
]
