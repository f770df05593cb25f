"""rdex: CartoonX and rate-distortion explanations (RDE) for PyTorch image classifiers.

Quick start::

    import rdex
    model = rdex.load_classifier()                 # EfficientNet-Lite0, offline ImageNet weights
    x = rdex.sample_image("chelsea").unsqueeze(0)  # (1, 3, 256, 256) in [0, 1]
    result = rdex.CartoonX(model, preset="fast").explain(x)
    result.explanation                              # (1, 1, 256, 256) piece-wise smooth picture
"""

from rdex.distortions import DISTORTIONS
from rdex.methods import METHODS, CartoonX, PixelRDE, ShearletX, WaveletX
from rdex.obfuscations import Blur, Constant, GaussianAdaptive, UniformAdaptive, Zeros
from rdex.rde import PRESETS, RDE, ModelError, NonFiniteError, RDEConfig, RDEResult, preset
from rdex.representations import Fourier, Pixel, Representation, Wavelet

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "RDE",
    "RDEConfig",
    "RDEResult",
    "ModelError",
    "NonFiniteError",
    "PRESETS",
    "preset",
    "CartoonX",
    "ShearletX",
    "WaveletX",
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


#: Submodules reachable as attributes after ``import rdex`` (``rdex.models.wrap_classifier``),
#: imported on first use so that ``import rdex`` stays light.
_SUBMODULES = frozenset(
    {
        "models",
        "images",
        "io",
        "viz",
        "metrics",
        "baselines",
        "batch",
        "figures",
        "inference",
        "seeds",
        "objective",
    }
)


def __getattr__(name: str) -> object:
    # Models and images are written alongside; import them lazily so `import rdex` stays light.
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"rdex.{name}")
    if name == "load_classifier":
        from rdex.models import load_classifier

        return load_classifier
    if name in ("sample_image", "load_image"):
        from rdex import images

        return getattr(images, name)
    raise AttributeError(f"module 'rdex' has no attribute {name!r}")
