"""rdex.captum: CartoonX and RDE the way captum users call attribution methods."""

from __future__ import annotations

import doctest
import sys

import matplotlib
import numpy as np
import pytest
import torch
from torch import Tensor, nn

import rdex.captum
from rdex.captum import (
    ATTRIBUTION_CLASSES,
    CartoonXAttribution,
    PixelRDEAttribution,
    RDEAttribution,
)
from rdex.methods import METHODS
from rdex.metrics import pixel_relevance
from rdex.models import wrap_classifier
from rdex.representations import Fourier, Pixel, Wavelet
from tiny_models import HalfNet, model_untouched

matplotlib.use("Agg")

TINY = {"steps": 6, "samples": 2}


def test_module_is_not_captum_itself():
    import captum.attr

    assert rdex.captum.Attribution is captum.attr.Attribution
    assert sys.modules["captum"].__file__ != rdex.captum.__file__


def test_docstring_examples_run():
    result = doctest.testmod(rdex.captum)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("cls", list(ATTRIBUTION_CLASSES.values()))
def test_attribute_is_shaped_like_inputs_and_agrees_with_rdex(tiny_classifier, cls):
    import captum.attr

    model = tiny_classifier()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    explainer = cls(model, **TINY)
    assert isinstance(explainer, captum.attr.Attribution)
    attr = explainer.attribute(x, target=[0, 2])
    assert attr.shape == x.shape and attr.dtype == x.dtype and not attr.requires_grad
    # The same run through rdex's own method class gives the same mask.
    method = METHODS[cls.method]
    result = method(model, preset="fast", **TINY).explain(x, target=[0, 2])
    for ours, theirs in zip(explainer.last_result.mask, result.mask, strict=True):
        torch.testing.assert_close(ours, theirs)
    rep = Wavelet() if cls is CartoonXAttribution else Pixel()
    share = pixel_relevance(result.mask, x, rep)
    torch.testing.assert_close(attr, share.expand_as(x))
    assert bool((attr >= 0).all()) and bool((attr <= 1).all())


def test_values_picture_and_retained(tiny_classifier):
    model = tiny_classifier()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    explainer = CartoonXAttribution(model, values="picture", **TINY)
    picture = explainer.attribute(x)
    result = explainer.last_result
    torch.testing.assert_close(picture, result.explanation.expand_as(x))
    retained = explainer.attribute(x, values="retained")
    torch.testing.assert_close(retained, result.explanation_rgb)
    with pytest.raises(ValueError, match="unknown values"):
        explainer.attribute(x, values="heat")


def test_share_follows_what_the_model_looks_at():
    """A model that reads only the left half: the attribution is larger there (a low sparsity
    weight, so that keeping the left half pays)."""
    model = wrap_classifier(HalfNet(), mean=(0, 0, 0), std=(1, 1, 1), labels=["r", "g", "b"])
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 0.3
    x[:, 0, :, :32] += 0.6  # red left half (what the model sees), green right half
    x[:, 1, :, 32:] += 0.6
    for attribution in (
        CartoonXAttribution(model, levels=3, steps=60, samples=4, lambda_k=0.2),
        PixelRDEAttribution(model, steps=60, samples=4, lambda_k=0.2),
    ):
        attr = attribution.attribute(x, target=0)
        left, right = attr[..., :28].mean(), attr[..., 36:].mean()
        assert left > 2 * right, (type(attribution).__name__, float(left), float(right))


@pytest.mark.parametrize(
    "target",
    [2, [2, 2], (2,), [(2,), (2,)], torch.tensor(2), torch.tensor([2, 2]), np.int64(2)],
    ids=["int", "list", "tuple", "list-of-tuples", "scalar-tensor", "tensor", "numpy"],
)
def test_captum_target_conventions(tiny_classifier, target):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    explainer = CartoonXAttribution(tiny_classifier(), steps=1, samples=1)
    explainer.attribute(x, target=target)
    assert explainer.last_result.target.tolist() == [2, 2]


def test_per_image_targets_and_default_prediction(tiny_classifier):
    model = tiny_classifier()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    explainer = PixelRDEAttribution(model, steps=1, samples=1)
    explainer.attribute(x, target=[1, 0])
    assert explainer.last_result.target.tolist() == [1, 0]
    explainer.attribute(x)
    assert explainer.last_result.target.tolist() == model(x).argmax(1).tolist()
    with pytest.raises(ValueError, match="one index"):
        explainer.attribute(x, target=(0, 1))
    with pytest.raises(ValueError, match="3 targets for 2 inputs"):
        explainer.attribute(x, target=[0, 1, 2])


def test_class_names_as_targets_with_an_rdex_classifier(tiny_model):
    """An rdex classifier's label names work through the adapter."""
    model = wrap_classifier(tiny_model(), labels=["cat", "dog", "cow"])
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    explainer = CartoonXAttribution(model, steps=1, samples=1)
    explainer.attribute(x, target="dog")
    assert explainer.last_result.target.tolist() == [1, 1]
    explainer.attribute(x, target=["cow", "cat"])
    assert explainer.last_result.target.tolist() == [2, 0]
    with pytest.raises(ValueError, match="unknown label"):
        explainer.attribute(x, target="horse")


def test_tuple_inputs_give_a_tuple(tiny_classifier):
    x = torch.rand(1, 3, 32, 32)
    out = CartoonXAttribution(tiny_classifier(), steps=1, samples=1).attribute((x,))
    assert isinstance(out, tuple) and len(out) == 1 and out[0].shape == x.shape


def test_show_progress(tiny_classifier, capsys):
    x = torch.rand(1, 3, 32, 32)
    explainer = CartoonXAttribution(tiny_classifier(), steps=3, samples=1)
    explainer.attribute(x)
    assert "cartoonx" not in capsys.readouterr().err
    explainer.attribute(x, show_progress=True)
    assert "cartoonx" in capsys.readouterr().err


def test_normalised_inputs_match_unit_inputs(tiny_model):
    """A raw network on normalised batches (the captum user's setting) gives the attribution of
    the same network wrapped by rdex on [0, 1] images."""
    from torchvision.transforms import Normalize

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    net = tiny_model()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    reference = CartoonXAttribution(wrap_classifier(net, mean=mean, std=std), **TINY)
    expected = reference.attribute(x, target=[0, 1])
    by_stats = CartoonXAttribution(net, mean=mean, std=std, **TINY)
    torch.testing.assert_close(by_stats.attribute(normalised, target=[0, 1]), expected)
    by_callable = CartoonXAttribution(net, normalise=Normalize(mean, std), **TINY)
    torch.testing.assert_close(by_callable.attribute(normalised, target=[0, 1]), expected)


def test_normalisation_errors(tiny_model, tiny_classifier):
    x = torch.rand(1, 3, 32, 32) * 4 - 2
    with pytest.raises(ValueError, match="mean=/std="):
        CartoonXAttribution(tiny_classifier(), steps=1).attribute(x)
    with pytest.raises(ValueError, match="per-channel affine"):
        CartoonXAttribution(tiny_model(), normalise=torch.tanh, steps=1).attribute(x)
    with pytest.raises(ValueError, match="not both"):
        CartoonXAttribution(tiny_model(), normalise=torch.tanh, mean=[0] * 3, std=[1] * 3)
    with pytest.raises(ValueError, match="std must be positive"):
        CartoonXAttribution(tiny_model(), mean=[0] * 3, std=[0] * 3).attribute(x)


def test_callers_model_is_left_as_it_was(tiny_model):
    net = tiny_model().train()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with model_untouched(net):
        CartoonXAttribution(net, mean=[0.5] * 3, std=[0.5] * 3, **TINY).attribute(x)


def test_model_output_with_logits_attribute(tiny_model):
    """transformers models return an output object; its ``.logits`` is what gets explained."""

    class Output:
        def __init__(self, logits: Tensor) -> None:
            self.logits = logits

    class HFLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_model()

        def forward(self, x: Tensor) -> Output:
            return Output(self.net(x))

    x = torch.rand(1, 3, 32, 32)
    ours = CartoonXAttribution(HFLike(), mean=[0] * 3, std=[1] * 3, **TINY).attribute(x, target=1)
    plain = CartoonXAttribution(tiny_model(), mean=[0] * 3, std=[1] * 3, **TINY)
    torch.testing.assert_close(ours, plain.attribute(x, target=1))


def test_generic_rde_attribution(tiny_classifier):
    model = tiny_classifier()
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="values='retained'"):
        RDEAttribution(model, Fourier(), steps=1)
    attr = RDEAttribution(model, Fourier(), values="retained", steps=3, samples=2).attribute(x)
    assert attr.shape == x.shape
    wave = RDEAttribution(model, Wavelet("haar", levels=2), "zeros", steps=3, lambda_k=5.0)
    share = wave.attribute(x)
    assert wave.last_result.config.lambda_k == 5.0
    torch.testing.assert_close(
        share, pixel_relevance(wave.last_result.mask, x, Wavelet("haar", levels=2)).expand_as(x)
    )
    with pytest.raises(TypeError):
        RDEAttribution(model, steps="many")


def test_captum_visualisation_takes_the_attribution_unchanged(tiny_classifier):
    """What a captum user does with an attribution: transpose to (H, W, C) and visualise."""
    import matplotlib.pyplot as plt
    from captum.attr import visualization as viz

    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    attr = CartoonXAttribution(tiny_classifier(), **TINY).attribute(x, target=0)
    attr_hwc = np.transpose(attr.squeeze(0).cpu().detach().numpy(), (1, 2, 0))
    image_hwc = np.transpose(x.squeeze(0).numpy(), (1, 2, 0))
    fig, ax = viz.visualize_image_attr(
        attr_hwc, image_hwc, method="heat_map", sign="positive", outlier_perc=0, use_pyplot=False
    )
    shown = np.asarray(ax.images[-1].get_array())
    summed = attr_hwc.sum(axis=2)
    np.testing.assert_allclose(shown, summed / summed.max(), rtol=1e-5, atol=1e-6)
    fig2, _ = viz.visualize_image_attr_multiple(
        attr_hwc,
        image_hwc,
        ["original_image", "blended_heat_map"],
        ["all", "positive"],
        use_pyplot=False,
    )
    plt.close(fig)
    plt.close(fig2)
