"""Make the figures of docs/how-to/shearletx.md.

* ``docs/figures/shearlet-system.png``: the shearlet system at 128 px (4 scales, 49 filters): the
  frequency tiling and a few filters in space.
* ``docs/figures/shearletx.png``: CartoonX, ShearletX and WaveletX on one bundled image with
  EfficientNet-Lite0 (ShearletX and WaveletX with their paper settings, CartoonX with the
  ``fast`` schedule): the masked colour image brightened to its maximum (the factor in the
  title), the retained probability (label probability of the masked image without noise over
  that of the image) and the mask's mean; the runtimes and the final distortion under noise are
  printed.

Usage (from the repository root; one thread, about 10 minutes at 128 px on a loaded CPU):
    OMP_NUM_THREADS=1 python docs/how-to/shearletx_figure.py --image chelsea --size 128
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import rdex  # noqa: E402
from rdex.methods import CartoonX, ShearletX, WaveletX  # noqa: E402
from rdex.shearlets import shearlet_system  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "figures"


def system_figure(size: int, out: Path) -> None:
    system = shearlet_system(size, size, scales=4, dtype=torch.float64)
    half = system.filters.numpy()  # the rfft half-plane (w_x >= 0)
    # back to space (real kernels) and to the whole frequency plane, centred
    kernels = np.stack([np.fft.irfft2(h, s=(size, size)) for h in half])
    spectra = np.fft.fftshift(np.real(np.fft.fft2(kernels)), axes=(1, 2))
    owner = spectra.argmax(axis=0)
    strength = spectra.max(axis=0)
    picks = [
        ("low-pass", 0),
        ("scale 2, cone 1, shear 0", system.index.index((1, 2, 0))),
        ("scale 3, cone 1, shear 2", system.index.index((1, 3, 2))),
        ("scale 4, cone 2, shear -3", system.index.index((2, 4, -3))),
    ]
    fig, axes = plt.subplots(1, 2 + len(picks), figsize=(3.0 * (2 + len(picks)), 3.2))
    rng = np.random.default_rng(0)
    colours = rng.permutation(system.count)
    axes[0].imshow(np.ma.masked_where(strength < 0.3, colours[owner]), cmap="tab20")
    axes[0].set_title(f"{system.count} filters: who owns\neach frequency")
    axes[1].imshow(spectra[system.index.index((1, 3, 2))], cmap="magma")
    axes[1].set_title("|filter| in frequency\n(scale 3, cone 1, shear 2)")
    for ax, (title, i) in zip(axes[2:], picks, strict=True):
        kernel = np.fft.fftshift(kernels[i])
        c = size // 2
        crop = kernel[c - 24 : c + 24, c - 24 : c + 24]
        lim = np.abs(crop).max()
        ax.imshow(crop, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{title}\n(in space, 48x48 px)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def explanations_figure(image: str, size: int, out: Path) -> None:
    model = rdex.load_classifier()
    x = rdex.sample_image(image, size=size)[None]
    runs = [
        ("CartoonX (fast)", CartoonX(model, preset="fast")),
        ("ShearletX (paper)", ShearletX(model)),
        ("WaveletX (paper)", WaveletX(model)),
    ]
    fig, axes = plt.subplots(1, 1 + len(runs), figsize=(3.2 * (1 + len(runs)), 3.6))
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)[0]
    label = int(probs.argmax())
    axes[0].imshow(x[0].permute(1, 2, 0).numpy())
    axes[0].set_title(f"{model.labels[label]} ({float(probs[label]):.1%})")
    for ax, (title, explainer) in zip(axes[1:], runs, strict=True):
        cpu = time.process_time()
        result = explainer.explain(x)
        cpu = time.process_time() - cpu
        picture = result.explanation_rgb
        with torch.no_grad():
            kept = torch.softmax(model(picture), dim=1)[0, label] / probs[label]
        # under the noise the optimiser saw: distortion (1 - p)^2 for max-label, (p0 - p)^2 else
        noisy = float(result.final_distortion[0])
        # shown brightened to its maximum, as the authors show theirs; the factor is in the title
        gain = 1.0 / max(float(picture.max()), 1e-6)
        ax.imshow((picture[0] * gain).permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(
            f"{title}\nretained {float(kept):.1%}, mask mean {float(result.mask_flat.mean()):.3f}"
            f"\nshown x{gain:.1f}"
        )
        print(
            f"{title}: label {model.labels[label]}, retained {float(kept):.3f}, "
            f"mask mean {float(result.mask_flat.mean()):.3f}, final distortion under noise "
            f"{noisy:.4f} ({result.config.distortion}), {result.runtime_s:.1f} s wall, "
            f"{cpu:.1f} s CPU, {result.config.steps} steps x {result.config.samples} samples",
            flush=True,
        )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--image", default="chelsea")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--skip-explanations", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"load average {os.getloadavg()}", flush=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    system_figure(args.size, FIGURES / "shearlet-system.png")
    if not args.skip_explanations:
        explanations_figure(args.image, args.size, FIGURES / "shearletx.png")


if __name__ == "__main__":
    main()
