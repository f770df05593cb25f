"""Algorithm 1 of the paper written the plain way: the yardstick ``rdex bench`` times against.

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, Algorithm 1 and A.2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import ptwt
import torch
from torch import Tensor, nn

from rdex.rde import frozen


@dataclass
class ReferenceResult:
    """Output of :func:`reference_cartoonx`.

    Attributes:
        mask: Per band, rdex's layout: approximation ``(1, 1, h, w)``, then per scale coarse to
            fine ``(1, 1, 3, h, w)`` (horizontal, vertical, diagonal).
        loss: Monte-Carlo objective at every step (Python floats, read with ``.item()``).
        target: Explained label.
        runtime_s: Wall-clock time of the whole call.
    """

    mask: list[Tensor]
    loss: list[float]
    target: int
    runtime_s: float


def reference_cartoonx(
    model: nn.Module,
    x: Tensor,
    *,
    lambda_k: float = 20.0,
    steps: int = 2000,
    samples: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    target: int | None = None,
    wavelet: str = "db3",
    levels: int = 5,
    mode: str = "zero",
    noise: Literal["per-band", "fused"] = "per-band",
) -> ReferenceResult:
    """CartoonX written the straightforward way: the yardstick of the speed benchmark.

    Algorithm 1 as the paper's code does it, with nothing rdex adds: fp32, the model in its
    own (NCHW) memory format, one Python loop over steps, a separate noise draw per wavelet band,
    the loss read with ``.item()`` every step, ``loss.backward()`` into the masks with the model's
    parameters frozen, Adam at a constant learning rate, projection onto ``[0, 1]``. The reference
    probability is computed once without gradient. One image.

    Args:
        model: Classifier on images in ``[0, 1]`` returning logits.
        x: One image ``(1, C, H, W)`` in ``[0, 1]``.
        lambda_k: Sparsity ``lambda * k`` (penalty ``lambda_k * mean(s)``).
        steps: Steps ``N``.
        samples: Noise samples ``L`` per step.
        lr: Adam's learning rate.
        seed: Seed of the noise generator.
        target: Explained label (default: the prediction).
        wavelet, levels, mode: The DWT (paper: db3, 5 scales, zero padding).
        noise: ``"per-band"`` draws every band's noise separately (the plain way);
            ``"fused"`` draws one vector per step and splits it, which consumes the generator
            exactly as rdex does, so the two give the same masks (used by the tests).

    Returns:
        A :class:`ReferenceResult`.

    References:
        Kolek et al., ECCV 2022, Algorithm 1 and appendix A.2.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(
            f"reference_cartoonx explains one image (1, C, H, W), got {tuple(x.shape)}"
        )
    if noise not in ("per-band", "fused"):
        raise ValueError(f"noise must be 'per-band' or 'fused', got {noise!r}")
    start = time.perf_counter()
    height, width = x.shape[-2:]
    with frozen(model):
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)
            label = int(probs.argmax(dim=1)) if target is None else int(target)
            p_ref = probs[0, label]
            coeffs = ptwt.wavedec2(x, wavelet, level=levels, mode=mode)  # type: ignore[arg-type]
            bands = [coeffs[0]] + [torch.stack(tuple(d), dim=2) for d in coeffs[1:]]
            # Adaptive Gaussian noise: one mean/std per scale, over channels, orientations and
            # positions (population std), the approximation being its own group.
            stats = [(b.mean(), b.std(correction=0)) for b in bands]
        masks = [torch.ones((1, 1, *b.shape[2:]), requires_grad=True) for b in bands]
        masks = [m.to(x.device).detach().requires_grad_(True) for m in masks]
        optimizer = torch.optim.Adam(masks, lr=lr)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        sizes = [b[0].numel() for b in bands]
        history: list[float] = []
        for _ in range(steps):
            if noise == "fused":
                z = torch.randn(samples * sum(sizes), generator=generator, device=x.device)
                draws = z.view(samples, -1).split(sizes, dim=1)
            else:
                draws = tuple(
                    torch.randn(samples, n, generator=generator, device=x.device) for n in sizes
                )
            obfuscated = []
            for band, mask, (mean, std), z_band in zip(bands, masks, stats, draws, strict=True):
                v = mean + std * z_band.reshape(samples, *band.shape[1:])
                obfuscated.append(mask * band + (1 - mask) * v)
            details = [
                ptwt.WaveletDetailTuple2d(b[:, :, 0], b[:, :, 1], b[:, :, 2])
                for b in obfuscated[1:]
            ]
            y = ptwt.waverec2((obfuscated[0], *details), wavelet)[..., :height, :width]
            y = y.clamp(0.0, 1.0)
            p = torch.softmax(model(y), dim=1)[:, label]
            distortion = ((p_ref - p) ** 2).mean()
            l1 = torch.cat([m.flatten() for m in masks]).mean()
            loss = distortion + lambda_k * l1
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for m in masks:
                    m.clamp_(0.0, 1.0)
            history.append(loss.item())
    return ReferenceResult(
        mask=[m.detach() for m in masks],
        loss=history,
        target=label,
        runtime_s=time.perf_counter() - start,
    )
