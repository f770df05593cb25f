"""captum-style attribution classes for CartoonX and RDE.

``CartoonXAttribution(model).attribute(inputs, target=...)`` returns a tensor shaped like
``inputs``, as captum's ``IntegratedGradients(model).attribute(...)`` does, so that
``captum.attr.visualization`` and pipelines built on captum take it unchanged. The classes
subclass captum's :class:`captum.attr.Attribution`.

What the values are (``values=``):

* ``"share"`` (default): per pixel, the share of the image the mask keeps there, in ``[0, 1]``:
  the mask of every band weighted by the energy of the image's coefficients at that pixel
  (:func:`rdex.metrics.pixel_relevance`); for Pixel RDE simply the mask. It is an importance that
  does not depend on how bright a pixel is, which is what captum's heat maps and every
  pixel-ranking metric (deletion, faithfulness correlation, region perturbation) read an
  attribution as. The same value is written to every colour channel, since RDE's mask is shared
  by the channels (paper, section 4.1).
* ``"picture"``: the explanation picture rdex shows (CartoonX's greyscale cartoon, Pixel RDE's
  mask), copied to every channel. The cartoon is an image, not an importance: a dark region the
  mask keeps looks as unimportant as one it deletes, so it suits display, not metrics.
* ``"retained"``: the masked image ``f(s * h)`` in colour, clipped to ``[0, 1]``.

The mask itself and everything else rdex computed stays on :attr:`RDEAttribution.last_result`.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022 (Algorithm 1).
    Kokhlikyan et al., "Captum: A unified and generic model interpretability library for
    PyTorch", 2020.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from captum.attr import Attribution
from torch import Tensor, nn

from rdex import config as _config
from rdex._interop import InputSpace, captum_target
from rdex.methods import CartoonX, PixelRDE, get_method
from rdex.metrics import pixel_relevance
from rdex.obfuscations import Obfuscation
from rdex.rde import RDE, RDEConfig, RDEResult, preset
from rdex.representations import Pixel, Representation, Wavelet
from rdex.types import Distortion, ExplanationKind

__all__ = [
    "AttributionValues",
    "RDEAttribution",
    "CartoonXAttribution",
    "PixelRDEAttribution",
    "ATTRIBUTION_CLASSES",
    "attribution_class",
]

#: What :meth:`RDEAttribution.attribute` returns; see the module docstring.
AttributionValues = Literal["share", "picture", "retained"]
_VALUES = ("share", "picture", "retained")

# Settings that choose the explainer rather than tune its config.
_EXPLAINER_KEYS = ("preset", "config", "values", "mean", "std", "normalise")


class RDEAttribution(Attribution):
    """Rate-distortion explanation over any representation, as a captum attribution.

    Args:
        model: Classifier on ``[0, 1]`` images (an rdex :class:`~rdex.models.Classifier`), or a
            network on normalised inputs together with ``mean``/``std`` or ``normalise``. Outputs
            with ``.logits`` (transformers) are unwrapped.
        representation: The representation ``x = f(h)`` of the mask.
        obfuscation: Obfuscation strategy or name.
        values: ``"share"``, ``"picture"`` or ``"retained"`` (module docstring). ``"share"``
            needs a pixel or wavelet representation.
        preset: Schedule from :data:`rdex.rde.PRESETS`; default
            :data:`rdex.config.DEFAULT_PRESET` (the CLI's).
        config: A full :class:`~rdex.rde.RDEConfig` instead of a preset.
        distortion: A distortion callable (a name goes in ``**settings`` as ``distortion=``).
        explanation: The picture kind (``"greyscale"``, ``"mask"``, ``"retained"``).
        mean, std: Per-channel normalisation of the inputs ``attribute`` gets: the inputs are
            mapped back to ``[0, 1]`` with ``x = inputs * std + mean`` and the model is called on
            ``(x - mean) / std``.
        normalise: Instead of ``mean``/``std``: the (per-channel affine) function that
            normalises ``[0, 1]`` images, e.g. ``torchvision.transforms.Normalize(mean, std)``.
        **settings: :class:`~rdex.rde.RDEConfig` fields (``lambda_k``, ``steps``, ``samples``,
            ``lr``, ``seed``, ...).

    Attributes:
        last_result: The :class:`~rdex.rde.RDEResult` of the last call (masks, pictures, history).
    """

    method = "rde"
    default_lambda_k: float | None = None

    def __init__(
        self,
        model: Callable[..., Any],
        representation: Representation | None = None,
        obfuscation: Obfuscation | str = "gaussian",
        *,
        values: AttributionValues = "share",
        preset: str | None = None,
        config: RDEConfig | None = None,
        distortion: Distortion | None = None,
        explanation: ExplanationKind = "retained",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        normalise: Callable[[Tensor], Tensor] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(model)
        if representation is None:
            raise TypeError("RDEAttribution needs a representation, e.g. rdex.Wavelet()")
        self.representation = representation
        self.obfuscation = obfuscation
        self.distortion = distortion
        self.explanation = explanation
        self.options: dict[str, Any] = {
            "values": values,
            "preset": preset,
            "config": config,
            "mean": mean,
            "std": std,
            "normalise": normalise,
            **settings,
        }
        self._check_values(values)
        InputSpace.check(mean=mean, std=std, normalise=normalise)
        self._settings_config(self.options)  # fail on a bad setting now, not at the first call
        self.last_result: RDEResult | None = None

    # captum's Attribution interface ---------------------------------------------------------

    def has_convergence_delta(self) -> bool:
        return False

    @property
    def multiplies_by_inputs(self) -> bool:
        return False

    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor],
        target: Any = None,
        *,
        show_progress: bool = False,
        **overrides: Any,
    ) -> Tensor | tuple[Tensor]:
        """Explain ``inputs`` and return attributions shaped like them.

        Args:
            inputs: Images ``(B, C, H, W)`` (or a tuple holding one such tensor, as captum
                allows); in ``[0, 1]``, or normalised when the attribution was built with
                ``mean``/``std`` or ``normalise``.
            target: captum's conventions: an int (every image), a list with one int per image,
                a tensor (scalar or ``(B,)``), tuples of one index; ``None`` explains the
                prediction. rdex classifiers also take class names.
            show_progress: Show a progress bar with the current loss.
            **overrides: For this call only: ``values``, ``preset``, ``config``, ``mean``,
                ``std``, ``normalise`` or any :class:`~rdex.rde.RDEConfig` field (``steps``,
                ``samples``, ``lambda_k``, ``seed``, ...).

        Returns:
            Attributions of the shape of ``inputs`` (a tuple if ``inputs`` was one), on its
            device, detached.
        """
        is_tuple = isinstance(inputs, tuple)
        if is_tuple:
            if len(inputs) != 1:
                raise ValueError("rdex explains one input tensor; got a tuple of several")
            (x_in,) = inputs
        else:
            x_in = inputs  # type: ignore[assignment]
        if not isinstance(x_in, Tensor) or x_in.dim() != 4 or not x_in.is_floating_point():
            raise ValueError(
                "inputs must be a float tensor of images (B, C, H, W), got "
                f"{getattr(x_in, 'shape', type(x_in).__name__)}"
            )
        options = {**self.options, **overrides}
        values = options["values"]
        self._check_values(values)
        space = InputSpace.of(
            x_in.shape[1], mean=options["mean"], std=options["std"], normalise=options["normalise"]
        )
        if space.is_identity and x_in.numel() and (x_in.min() < 0 or x_in.max() > 1):
            raise ValueError(
                f"inputs lie in [{float(x_in.min()):.3g}, {float(x_in.max()):.3g}], not [0, 1]: "
                "pass the normalisation your model expects as mean=/std= (or normalise=)"
            )
        x = space.to_unit(x_in.detach())
        model = space.wrap(self.forward_func)
        explainer = self._explainer(model, options)
        result = explainer.explain(x, target=captum_target(target), progress=show_progress)
        self.last_result = result
        attr = self._values(values, x, result).to(x_in.dtype)
        return (attr,) if is_tuple else attr

    # internals ------------------------------------------------------------------------------

    def _check_values(self, values: str) -> None:
        if values not in _VALUES:
            raise ValueError(f"unknown values {values!r}; choose from {', '.join(_VALUES)}")
        if values == "share" and not isinstance(self.representation, Pixel | Wavelet):
            raise ValueError(
                f"values='share' needs a pixel or wavelet representation, not "
                f"{type(self.representation).__name__}; use values='retained'"
            )

    def _settings_config(self, options: dict[str, Any]) -> RDEConfig:
        settings = {k: v for k, v in options.items() if k not in _EXPLAINER_KEYS}
        base = options["config"] or preset(options["preset"] or _config.DEFAULT_PRESET)
        if options["config"] is None and self.default_lambda_k is not None:
            base = base.replace(lambda_k=self.default_lambda_k)
        return base.replace(**settings)

    def _explainer(self, model: nn.Module, options: dict[str, Any]) -> RDE:
        return RDE(
            model,
            self.representation,
            self.obfuscation,
            config=self._settings_config(options),
            distortion=self.distortion,
            explanation=self.explanation,
        )

    def _values(self, values: str, x: Tensor, result: RDEResult) -> Tensor:
        if values == "retained":
            return result.explanation_rgb.detach()
        if values == "picture":
            picture = result.explanation
        else:
            picture = pixel_relevance(result.mask, x, self.representation)
        return picture.detach().expand_as(x).contiguous()


class CartoonXAttribution(RDEAttribution):
    """CartoonX (DWT db3, 5 scales; adaptive Gaussian noise per scale) as a captum attribution.

    Args:
        model: As for :class:`RDEAttribution`.
        values: ``"share"`` (default), ``"picture"`` (the cartoon) or ``"retained"``.
        preset: Default :data:`rdex.config.DEFAULT_PRESET`; ``"paper"`` is appendix A.2.
        wavelet, levels, mode: The DWT.
        obfuscation: Obfuscation (default adaptive Gaussian per scale).
        mean, std, normalise: The inputs' normalisation (see :class:`RDEAttribution`).
        **settings: :class:`~rdex.rde.RDEConfig` fields; ``lambda_k`` defaults to CartoonX's 20.

    Examples::

        >>> import torch
        >>> from rdex.captum import CartoonXAttribution
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
        >>> explainer = CartoonXAttribution(net, steps=3, samples=2, mean=[0.5] * 3, std=[0.5] * 3)
        >>> inputs = torch.rand(2, 3, 32, 32) * 2 - 1      # normalised batch
        >>> explainer.attribute(inputs, target=[0, 3]).shape
        torch.Size([2, 3, 32, 32])
    """

    method = CartoonX.method
    default_lambda_k = CartoonX.default_lambda_k

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        values: AttributionValues = "share",
        wavelet: str = "db3",
        levels: int = 5,
        mode: str = "zero",
        obfuscation: Obfuscation | str = "gaussian",
        **settings: Any,
    ) -> None:
        super().__init__(
            model,
            Wavelet(wavelet, levels=levels, mode=mode),
            obfuscation,
            values=values,
            explanation="greyscale",
            **settings,
        )

    def _explainer(self, model: nn.Module, options: dict[str, Any]) -> RDE:
        rep = self.representation
        assert isinstance(rep, Wavelet)
        return CartoonX(
            model,
            wavelet=rep.wavelet,
            levels=rep.levels,
            mode=rep.mode,
            obfuscation=self.obfuscation,
            distortion=self.distortion or "label",
            config=self._settings_config(options),
        )


class PixelRDEAttribution(RDEAttribution):
    """Pixel RDE (one adaptive Gaussian over all pixels) as a captum attribution.

    ``values="share"`` and ``"picture"`` are both the mask here.

    Args:
        model, values, obfuscation, mean, std, normalise: As for :class:`RDEAttribution`.
        **settings: :class:`~rdex.rde.RDEConfig` fields; ``lambda_k`` defaults to Pixel RDE's 4.
    """

    method = PixelRDE.method
    default_lambda_k = PixelRDE.default_lambda_k

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        values: AttributionValues = "share",
        obfuscation: Obfuscation | str = "gaussian",
        **settings: Any,
    ) -> None:
        super().__init__(model, Pixel(), obfuscation, values=values, explanation="mask", **settings)

    def _explainer(self, model: nn.Module, options: dict[str, Any]) -> RDE:
        return PixelRDE(
            model,
            obfuscation=self.obfuscation,
            distortion=self.distortion or "label",
            config=self._settings_config(options),
        )


#: The captum classes of the RDE methods that have one, by registry name.
ATTRIBUTION_CLASSES: dict[str, type[RDEAttribution]] = {
    cls.method: cls for cls in (CartoonXAttribution, PixelRDEAttribution)
}


def attribution_class(method: str) -> type[RDEAttribution]:
    """The attribution class of an RDE method name or alias (``"cartoonx"``, ``"pixel-rde"``).

    Raises:
        ValueError: For an unknown method, or one without a captum class.
    """
    name = get_method(method).name
    if name not in ATTRIBUTION_CLASSES:
        raise ValueError(
            f"no attribution class for {method!r}; choose from {', '.join(ATTRIBUTION_CLASSES)}"
        )
    return ATTRIBUTION_CLASSES[name]
