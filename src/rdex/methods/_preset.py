"""What the RDE method presets share: preset schedules, config overrides, single images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from rdex.obfuscations import Obfuscation
from rdex.rde import RDE, RDEConfig, RDEResult, check_images, preset
from rdex.representations import Representation
from rdex.types import Distortion, ExplanationKind


class MethodPreset(RDE):
    """An RDE method: fixed representation and picture kind, a named schedule, a default lambda_k.

    Args:
        model: Classifier taking images in ``[0, 1]``.
        representation: Representation of the method.
        obfuscation: Obfuscation strategy or name.
        preset: Named schedule from :data:`rdex.rde.PRESETS` (``"paper"``: appendix A.2).
        lambda_k: Sparsity level ``lambda * k``.
        distortion: Name (or callable) of the distortion; ``None`` keeps the one of ``config``
            (or of the preset: ``"label"``).
        explanation: Picture kind of the result.
        **overrides: Any other :class:`~rdex.rde.RDEConfig` field (``steps``, ``samples``, ``lr``,
            ``seed``, ...).
    """

    default_lambda_k: float = 20.0
    #: The distortion the method uses when none is named or configured.
    default_distortion: str = "label"

    def __init__(
        self,
        model: nn.Module,
        representation: Representation,
        obfuscation: Obfuscation | str,
        *,
        preset_name: str,
        lambda_k: float | None,
        distortion: str | Distortion | None,
        explanation: ExplanationKind,
        config: RDEConfig | None = None,
        **overrides: Any,
    ) -> None:
        # A distortion named here wins; otherwise an explicit config keeps its own (a default
        # argument must not silently replace what the caller configured).
        named = isinstance(distortion, str)
        base = config or preset(preset_name)
        base = base.replace(
            lambda_k=self.default_lambda_k if lambda_k is None and config is None else lambda_k,
            distortion=distortion if named else None,
            **overrides,
        )
        super().__init__(
            model,
            representation,
            obfuscation,
            config=base,
            distortion=None if named or distortion is None else distortion,  # type: ignore[arg-type]
            explanation=explanation,
        )

    def explain(
        self,
        x: Tensor,
        *,
        target: int | str | Sequence[int | str] | Tensor | None = None,
        reference_output: Tensor | None = None,
        progress: bool = False,
        desc: str | None = None,
        init_mask: Sequence[Tensor] | None = None,
    ) -> RDEResult:
        """Explain images ``(B, C, H, W)`` or one image ``(C, H, W)``; see :meth:`RDE.explain`."""
        x = check_images(x)
        return super().explain(
            x,
            target=target,
            reference_output=reference_output,
            progress=progress,
            desc=desc,
            init_mask=init_mask,
        )

    def __call__(self, x: Tensor, *, target: Any = None) -> Tensor:
        """The explanation picture ``(B, 1, H, W)``: the common signature of all methods."""
        return self.explain(x, target=target).explanation
