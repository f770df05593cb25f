"""rdex: CartoonX and rate-distortion explanations (RDE) for PyTorch image classifiers.

Quick start::

    import rdex
    model = rdex.load_classifier()                 # EfficientNet-Lite0, offline ImageNet weights
    x = rdex.sample_image("chelsea").unsqueeze(0)  # (1, 3, 256, 256) in [0, 1]
    result = rdex.CartoonX(model, preset="fast").explain(x)
    result.explanation                              # (1, 1, 256, 256) piece-wise smooth picture
"""

from rdex.distortions import DISTORTIONS
from rdex.methods import METHODS, CartoonX, PixelRDE
from rdex.obfuscations import Blur, Constant, GaussianAdaptive, UniformAdaptive, Zeros
from rdex.rde import PRESETS, RDE, RDEConfig, RDEResult, preset
from rdex.representations import Fourier, Pixel, Representation, Wavelet

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "RDE",
    "RDEConfig",
    "RDEResult",
    "PRESETS",
    "preset",
    "CartoonX",
    "PixelRDE",
    "METHODS",
    "Representation",
    "Pixel",
    "Wavelet",
    "Fourier",
    "GaussianAdaptive",
    "UniformAdaptive",
    "Zeros",
    "Constant",
    "Blur",
    "DISTORTIONS",
    "load_classifier",
    "sample_image",
    "load_image",
]


def __getattr__(name: str) -> object:
    # Models and images are written alongside; import them lazily so `import rdex` stays light.
    if name == "load_classifier":
        from rdex.models import load_classifier

        return load_classifier
    if name in ("sample_image", "load_image"):
        from rdex import images

        return getattr(images, name)
    raise AttributeError(f"module 'rdex' has no attribute {name!r}")
