"""All metrics of one method's explanations: :class:`Explanation` bundles what the metrics need,
:func:`evaluate` computes them, :func:`manifest_metrics` gives plain floats for one image (what the
batch runner writes into its manifest).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from rdex.metrics._model import _target_index
from rdex.metrics.cp import cp_scores, hallucination_score
from rdex.metrics.curves import Curve, deletion_curve, insertion_curve
from rdex.metrics.rate_distortion import rate_distortion_curve
from rdex.metrics.sparsity import mask_sparsity, total_variation, wavelet_l1, wavelet_sparsity
from rdex.obfuscations import Obfuscation, obfuscate
from rdex.rde import frozen
from rdex.representations import Pixel, Representation
from rdex.types import Distortion, ModelOutput

#: For every scalar metric :func:`evaluate` returns: +1 when higher is better, -1 when lower is
#: better, 0 when it describes the explanation without a preferred direction.
METRIC_DIRECTIONS: dict[str, int] = {
    "rd_auc": -1,
    "deletion_auc": -1,
    "insertion_auc": 1,
    "retained_fraction": -1,
    "mask_l1": -1,
    "tv": -1,
    "tv_retained": -1,
    "wavelet_gini": 1,
    "wavelet_l1": -1,
    "cp_pixel_l1": 1,
    "cp_coeff_l1": 1,
    "cp_entropy": 1,
    "retained_prob_ratio": 1,
    "hallucination": -1,
    "hallucinated_edge_fraction": -1,
}


def pixel_relevance(mask: Sequence[Tensor], x: Tensor, representation: Representation) -> Tensor:
    """A mask over a representation pulled back to pixels, for pixel-space metrics ``(B, 1, H, W)``.

    Every band's mask is resized to the image (nearest neighbour) and weighted by the energy of the
    input's coefficients there (summed over channels and orientations); the relevance of a pixel is
    the energy-weighted mean mask value, i.e. the share of the local coefficient energy the mask
    keeps. For :class:`Pixel` it is the mask itself. Where all coefficients vanish the plain mean
    is used.
    """
    import torch.nn.functional as F

    height, width = x.shape[-2:]
    bands = representation.encode(x)
    if isinstance(representation, Pixel):
        (m,) = mask
        return m.to(x).expand(x.shape[0], 1, height, width).clone()
    num = x.new_zeros(x.shape[0], 1, height, width)
    den = x.new_zeros(x.shape[0], 1, height, width)
    for m, h in zip(mask, bands, strict=True):
        if h.dim() < 4:
            raise ValueError("pixel_relevance needs spatial bands (B, C, ..., h, w)")
        energy = (h.double() ** 2).sum(dim=tuple(range(1, h.dim() - 2)))
        m2 = m.to(x).expand_as(h).mean(dim=tuple(range(1, h.dim() - 2)))
        weight = energy.float().unsqueeze(1) + 1e-12
        weight = F.interpolate(weight, size=(height, width), mode="nearest")
        num += weight * F.interpolate(m2.unsqueeze(1), size=(height, width), mode="nearest")
        den += weight
    return num / den


def attribution_picture(attribution: Tensor) -> Tensor:
    """An attribution ``(B, C, H, W)`` as a picture in ``[0, 1]`` ``(B, 1, H, W)``: the channel sum's
    positive part divided by its per-image maximum (zero images stay zero)."""
    attr = attribution if attribution.dim() == 4 else attribution.unsqueeze(1)
    a = attr.sum(dim=1, keepdim=True).clamp_min(0.0)
    top = a.flatten(1).max(dim=1).values.clamp_min(1e-12).view(-1, 1, 1, 1)
    return a / top


@dataclass
class Explanation:
    """What the metrics need of one method's explanation of a batch.

    Attributes:
        method: Name of the method.
        relevance: Pixel relevance ``(B, 1, H, W)`` ranking pixels for deletion/insertion.
        picture: The picture shown to users ``(B, 1, H, W)`` in ``[0, 1]`` (TV, wavelet sparsity).
        retained: The masked image ``(B, C, H, W)`` (CP, hallucination, TV of what is kept).
        scores: Scores of the entries ranked by the rate-distortion curve (mask bands, or the
            pixel relevance for attributions).
        representation: Representation of ``scores``.
        obfuscation: Obfuscation the rate-distortion curve uses (the method's own).
        mask: The mask bands for sparsity (``None`` for attributions: the normalised picture is
            used).
        target: Explained label per input ``(B,)`` (``None``: the prediction).
        reference_output: Output the method's distortion compared against (A.4), or ``None``.
        distortion: The method's distortion name (used by the rate-distortion curve).
    """

    method: str
    relevance: Tensor
    picture: Tensor
    retained: Tensor
    scores: Tensor | list[Tensor]
    representation: Representation
    obfuscation: Obfuscation | str = "gaussian"
    mask: list[Tensor] | None = None
    target: Tensor | None = None
    reference_output: Tensor | None = None
    distortion: str | Distortion = "label"

    @classmethod
    def from_rde(cls, explainer: Any, x: Tensor, result: Any) -> Explanation:
        """From an :class:`~rdex.rde.RDE` (or method preset) and its :class:`~rdex.rde.RDEResult`."""
        rep: Representation = explainer.representation
        # The distortion the method optimised (a callable given to RDE overrides the config's name).
        distortion = getattr(explainer, "_distortion", None) or explainer.config.distortion
        return cls(
            method=result.method,
            relevance=pixel_relevance(result.mask, x, rep),
            picture=result.explanation,
            retained=result.explanation_rgb,
            scores=list(result.mask),
            representation=rep,
            obfuscation=explainer.obfuscation,
            mask=list(result.mask),
            target=result.target,
            distortion=distortion,
        )

    @classmethod
    def from_mask(
        cls,
        method: str,
        x: Tensor,
        mask: Sequence[Tensor],
        representation: Representation,
        *,
        obfuscation: Obfuscation | str = "gaussian",
        target: Tensor | None = None,
        picture: Tensor | None = None,
        distortion: str | Distortion = "label",
    ) -> Explanation:
        """From mask bands over ``representation`` (e.g. loaded from an ``.npz`` file).

        The retained image is ``f(s * h)`` clipped to ``[0, 1]``; the picture defaults to its
        channel mean.
        """
        bands = representation.encode(x)
        masks = [m.to(x) for m in mask]
        retained = obfuscate(
            representation, bands, shape=tuple(x.shape[1:]), mask=masks, clip=(0.0, 1.0)
        )
        return cls(
            method=method,
            relevance=pixel_relevance(masks, x, representation),
            picture=retained.mean(dim=1, keepdim=True) if picture is None else picture.to(x),
            retained=retained,
            scores=masks,
            representation=representation,
            obfuscation=obfuscation,
            mask=masks,
            target=target,
            distortion=distortion,
        )

    @classmethod
    def from_attribution(
        cls,
        method: str,
        x: Tensor,
        attribution: Tensor,
        *,
        target: Tensor | None = None,
        obfuscation: Obfuscation | str = "gaussian",
    ) -> Explanation:
        """From a pixel attribution ``(B, 1 or C, H, W)`` (gradient or propagation methods).

        Pixels are ranked by the channel sum of the attribution. Its picture is the positive part
        normalised to ``[0, 1]`` (:func:`attribution_picture`), used as a soft mask on the input for
        the retained image; the rate-distortion curve ranks pixels in the Pixel representation
        with adaptive Gaussian noise, as Pixel RDE.
        """
        attr = attribution.to(x)
        if attr.dim() == 3:
            attr = attr.unsqueeze(1)
        relevance = attr.sum(dim=1, keepdim=True)
        picture = attribution_picture(attr)
        return cls(
            method=method,
            relevance=relevance,
            picture=picture,
            retained=x * picture,
            scores=relevance,
            representation=Pixel(),
            obfuscation=obfuscation,
            mask=None,
            target=target,
        )


@dataclass
class Evaluation:
    """All metrics of one method's explanations of a batch.

    Attributes:
        method: Name of the method.
        scores: Scalar metrics per input, each ``(B,)`` (see :data:`METRIC_DIRECTIONS`).
        curves: ``rate-distortion``, ``deletion`` and ``insertion`` curves.
    """

    method: str
    scores: dict[str, Tensor]
    curves: dict[str, Curve] = field(default_factory=dict)

    def rows(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One dict per input: ``method``, ``image`` (name or index) and every scalar metric."""
        batch = len(next(iter(self.scores.values())))
        out = []
        for i in range(batch):
            row: dict[str, Any] = {"method": self.method, "image": names[i] if names else i}
            row.update({k: float(v[i]) for k, v in self.scores.items()})
            out.append(row)
        return out

    def __getitem__(self, i: int) -> Evaluation:
        return dataclasses.replace(
            self,
            scores={k: v[i : i + 1] for k, v in self.scores.items()},
            curves={k: c[i] for k, c in self.curves.items()},
        )


def evaluate(
    model: nn.Module,
    x: Tensor,
    explanation: Explanation,
    *,
    target: Any = None,
    fractions: Sequence[float] | Tensor | None = None,
    samples: int = 16,
    steps: int = 32,
    deletion_baseline: str | float | Tensor = "zeros",
    insertion_baseline: str | float | Tensor = "blur",
    rd_obfuscation: Obfuscation | str | None = None,
    seed: int = 0,
    model_output: ModelOutput = "softmax",
    batch_size: int | None = 64,
    curves: bool = True,
) -> Evaluation:
    """Every metric of this module for one method's explanations of ``x``.

    Args:
        model: Classifier taking ``x``.
        x: Images ``(B, C, H, W)`` in ``[0, 1]``.
        explanation: See :class:`Explanation`.
        target: Label per input; default the explanation's target, else the prediction.
        fractions: Fractions of the rate-distortion curve.
        samples: Obfuscation draws per point of the rate-distortion curve.
        steps: Steps of the deletion and insertion curves.
        deletion_baseline, insertion_baseline: See :func:`make_baseline`.
        rd_obfuscation: Obfuscation of the rate-distortion curve; default the method's own (give
            one fixed strategy to compare methods that differ in obfuscation).
        seed: Seed of the obfuscation draws.
        model_output: ``"softmax"`` or ``"identity"``.
        batch_size: Largest number of images sent through the model at once.
        curves: Compute the three curves (the costly part); ``False`` gives the cheap scores only.

    Returns:
        An :class:`Evaluation` with scores ``rd_auc``, ``deletion_auc``, ``insertion_auc``,
        ``retained_fraction``, ``mask_l1``, ``tv``, ``tv_retained``, ``wavelet_gini``,
        ``wavelet_l1``, ``cp_pixel_l1``, ``cp_coeff_l1``, ``cp_entropy``, ``retained_prob_ratio``,
        ``hallucination``, ``hallucinated_edge_fraction``.
    """
    ex = explanation
    if target is None:
        target = ex.target
    with frozen(model):
        target_idx, _ = _target_index(model, x, target, model_output)
        scores: dict[str, Tensor] = {}
        out_curves: dict[str, Curve] = {}
        if curves:
            rd = rate_distortion_curve(
                model, x, ex.scores, representation=ex.representation,
                obfuscation=rd_obfuscation if rd_obfuscation is not None else ex.obfuscation,
                distortion=ex.distortion, target=target_idx, reference_output=ex.reference_output,
                fractions=fractions, samples=samples, seed=seed, model_output=model_output,
                batch_size=batch_size,
            )  # fmt: skip
            dele = deletion_curve(
                model, x, ex.relevance, target=target_idx, steps=steps, baseline=deletion_baseline,
                model_output=model_output, batch_size=batch_size,
            )  # fmt: skip
            ins = insertion_curve(
                model, x, ex.relevance, target=target_idx, steps=steps, baseline=insertion_baseline,
                model_output=model_output, batch_size=batch_size,
            )  # fmt: skip
            out_curves = {"rate-distortion": rd, "deletion": dele, "insertion": ins}
            scores["rd_auc"] = rd.area
            scores["deletion_auc"] = dele.area
            scores["insertion_auc"] = ins.area
        sparsity = mask_sparsity(ex.mask if ex.mask is not None else ex.picture)
        scores.update({k: v.cpu() for k, v in sparsity.items()})
        scores["tv"] = total_variation(ex.picture).cpu()
        scores["tv_retained"] = total_variation(ex.retained).cpu()
        scores["wavelet_gini"] = wavelet_sparsity(ex.picture).cpu()
        scores["wavelet_l1"] = wavelet_l1(ex.picture).cpu()
        scores.update(
            cp_scores(model, x, ex.retained, target=target_idx, model_output=model_output)
        )
        scores.update(
            {k: v for k, v in hallucination_score(x, ex.retained).items() if k in METRIC_DIRECTIONS}
        )
    return Evaluation(ex.method, scores, out_curves)


def manifest_metrics(
    model: nn.Module,
    x: Tensor,
    explanation: Explanation | Any,
    index: int = 0,
    *,
    explainer: Any = None,
    curves: bool = True,
    **kwargs: Any,
) -> dict[str, float]:
    """Metric values of input ``index`` as plain floats, for a batch manifest line.

    Args:
        model: The classifier.
        x: The explained images ``(B, C, H, W)``.
        explanation: An :class:`Explanation`, or an :class:`~rdex.rde.RDEResult` (then pass
            ``explainer``, the RDE object that produced it).
        index: Which input of the batch.
        explainer: The RDE method that produced an ``RDEResult``.
        curves: Include the curve areas (``False``: cheap scores only).
        **kwargs: Passed on to :func:`evaluate`.

    Returns:
        ``{"metric": value}``, keys as :data:`METRIC_DIRECTIONS` (prefixed ``metric_`` is left to the
        caller).
    """
    if not isinstance(explanation, Explanation):
        if explainer is None:
            raise ValueError("pass the explainer that produced an RDEResult")
        explanation = Explanation.from_rde(explainer, x, explanation)
    one = _select(explanation, index)
    ev = evaluate(model, x[index : index + 1], one, curves=curves, **kwargs)
    return {k: float(v[0]) for k, v in ev.scores.items()}


def _select(ex: Explanation, i: int) -> Explanation:
    """The explanation of input ``i`` alone (batch dimension kept)."""

    def pick(t: Any) -> Any:
        if t is None:
            return None
        if isinstance(t, Tensor):
            return t[i : i + 1] if t.dim() and t.shape[0] > 1 else t
        return [pick(b) for b in t]

    return dataclasses.replace(
        ex,
        relevance=pick(ex.relevance),
        picture=pick(ex.picture),
        retained=pick(ex.retained),
        scores=pick(ex.scores),
        mask=pick(ex.mask),
        target=pick(ex.target),
        reference_output=pick(ex.reference_output),
    )
