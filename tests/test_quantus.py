"""rdex.quantus.explain as Quantus users plug it in: ``explain_func=rdex.quantus.explain``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import quantus  # the quantus extra: pip install 'rdex[quantus]' (make test installs it)
import torch
from torch import nn

import rdex.quantus
from rdex.baselines import ATTRIBUTIONS, BASELINES
from rdex.methods import METHODS
from rdex.metrics import gini_index
from rdex.models import wrap_classifier
from tiny_models import HalfNet

TINY_RDE = {"steps": 6, "samples": 2}
TINY_BASELINE = {"integrated-gradients": {"n_steps": 4}, "smoothgrad": {"samples": 2}}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_settings(method: str) -> dict:
    return dict(TINY_RDE) if method in METHODS else dict(TINY_BASELINE.get(method, {}))


def half_images(batch: int = 2, size: int = 32) -> np.ndarray:
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 0.3
    x[:, 0, :, : size // 2] += 0.6  # red left half: what the model sees
    x[:, 1, :, size // 2 :] += 0.6
    return x.numpy()


@pytest.mark.parametrize("method", rdex.quantus.METHOD_NAMES)
def test_explain_every_method_is_shaped_like_the_inputs(method):
    """Every rdex method and baseline through the explain_func contract: numpy in, numpy out,
    channel first, shaped like the inputs, and the same values as rdex's own call."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3))
    model = wrap_classifier(net, name="tiny")
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = np.array([0, 2])
    if method == "lrp":  # biases absorb relevance; without them LRP conserves it exactly
        with torch.no_grad():
            model.model[0].bias.zero_()
            model.model[3].bias.zero_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = rdex.quantus.explain(model, x.numpy(), y, method=method, **tiny_settings(method))
        if method in METHODS:
            from rdex.captum import attribution_class

            ref = attribution_class(method)(model, **TINY_RDE).attribute(x, target=[0, 2])
        else:
            ref = ATTRIBUTIONS[method](
                model, x, target=torch.tensor([0, 2]), channels="none", **tiny_settings(method)
            )
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == x.shape
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_aliases_torch_inputs_and_channel_reduction(tiny_classifier):
    model = tiny_classifier()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    by_alias = rdex.quantus.explain(model, x, [1, 1], method="ig", n_steps=4)
    by_name = rdex.quantus.explain(model, x.numpy(), 1, method="integrated-gradients", n_steps=4)
    np.testing.assert_allclose(by_alias, by_name, rtol=1e-6)
    summed = rdex.quantus.explain(model, x, 1, method="ig", n_steps=4, channels="sum")
    assert summed.shape == (2, 1, 16, 16)
    np.testing.assert_allclose(summed, by_name.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown method"):
        rdex.quantus.explain(model, x, 1, method="gradcam")


@pytest.mark.parametrize("method", ["cartoonx", "integrated-gradients"])
def test_normalised_batches_give_the_unit_explanation(tiny_model, method):
    """A network on normalised inputs plus mean/std explains like rdex on [0, 1] images."""
    from torchvision.transforms import Normalize

    net = tiny_model()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    normalised = Normalize(MEAN, STD)(x).numpy()
    y = np.array([0, 1])
    settings = tiny_settings(method)
    expected = rdex.quantus.explain(
        wrap_classifier(net, mean=MEAN, std=STD), x.numpy(), y, method=method, **settings
    )
    by_stats = rdex.quantus.explain(
        net, normalised, y, method=method, mean=MEAN, std=STD, **settings
    )
    np.testing.assert_allclose(by_stats, expected, rtol=1e-4, atol=1e-5)
    by_callable = rdex.quantus.explain(
        net, normalised, y, method=method, normalise=Normalize(MEAN, STD), **settings
    )
    np.testing.assert_allclose(by_callable, expected, rtol=1e-4, atol=1e-5)


def test_input_range(tiny_classifier, tiny_model):
    model = tiny_classifier()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    # A normalised batch given without its normalisation is refused ...
    with pytest.raises(ValueError, match="mean=/std="):
        rdex.quantus.explain(model, (x - 0.45) / 0.22, 0, **TINY_RDE)
    # ... a perturbed [0, 1] image (robustness metrics) is clipped back.
    noisy = x + 0.4 * (torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) - 0.5)
    assert noisy.min() < 0 or noisy.max() > 1
    np.testing.assert_allclose(
        rdex.quantus.explain(model, noisy, 0, **TINY_RDE),
        rdex.quantus.explain(model, noisy.clamp(0, 1), 0, **TINY_RDE),
    )
    with pytest.raises(ValueError, match="mean and std"):
        rdex.quantus.explain(tiny_model(), x, 0, mean=MEAN)


def test_quantus_pixel_flipping_sees_the_half_the_model_uses():
    """Faithfulness: flipping input entries in the order of the CartoonX attribution (Quantus
    PixelFlipping, black baseline) has removed the evidence by two thirds of the way for a model
    that reads only the left half; flipping in the reverse order leaves the prediction alone for
    the first half. (A toy at 64 px: two DWT scales keep the coefficients local.)"""
    model = wrap_classifier(HalfNet(), mean=(0, 0, 0), std=(1, 1, 1), labels=["r", "g", "b"])
    x = half_images(size=64)
    y = np.array([0, 0])
    kwargs = {"method": "cartoonx", "levels": 2, "steps": 60, "samples": 4, "lambda_k": 0.2}
    metric = quantus.PixelFlipping(features_in_step=256, disable_warnings=True)
    curves = np.asarray(
        metric(
            model=model, x_batch=x, y_batch=y, explain_func=rdex.quantus.explain,
            explain_func_kwargs=kwargs, device="cpu",
        )
    )  # fmt: skip
    a = rdex.quantus.explain(model, x, y, **kwargs)
    reverse = np.asarray(
        metric(model=model, x_batch=x, y_batch=y, a_batch=a.max() - a, device="cpu")
    )
    n = curves.shape[1]
    p0 = torch.softmax(model(torch.from_numpy(x)), 1)[:, 0].detach().numpy()
    floor = curves[:, -1]
    assert (curves[:, (2 * n) // 3] < floor + 0.05).all(), (curves, floor)
    assert (reverse[:, n // 2 - 1] > 0.9 * p0).all(), reverse
    assert (p0 - floor > 0.5).all()


@pytest.fixture(scope="module")
def default_model():
    from rdex.models import load_classifier

    try:
        return load_classifier()
    except FileNotFoundError as exc:  # pragma: no cover - the package is a dependency
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def default_batch(default_model):
    from rdex.images import sample_image

    x = torch.stack([sample_image(name, size=32) for name in ("chelsea", "coffee")])
    with torch.no_grad():
        y = default_model(x).argmax(1).numpy()
    return x.numpy(), y


def test_quantus_sparseness_is_rdex_gini(default_model, default_batch):
    """Complexity: Quantus Sparseness of rdex explanations on the default model equals rdex's
    Gini index of the same explanations."""
    x, y = default_batch
    kwargs = {"method": "cartoonx", **TINY_RDE}
    scores = quantus.Sparseness(disable_warnings=True)(
        model=default_model, x_batch=x, y_batch=y, explain_func=rdex.quantus.explain,
        explain_func_kwargs=kwargs, device="cpu",
    )  # fmt: skip
    a = rdex.quantus.explain(default_model, x, y, **kwargs)
    ours = gini_index(torch.from_numpy(a).flatten(1)).numpy()
    np.testing.assert_allclose(np.asarray(scores), ours, atol=1e-4)
    assert ((ours > 0) & (ours < 1)).all()


# Few steps leave the share nearly flat over random subsets; scipy says so, and that is expected.
@pytest.mark.filterwarnings("ignore:An input array is nearly constant")
def test_quantus_faithfulness_and_robustness_on_normalised_batches(default_model, default_batch):
    """The Quantus user's setting: the raw network and normalised batches, explanations through
    explain_func with mean/std; a faithfulness and a robustness metric run end to end."""
    x, y = default_batch
    mean, std = default_model.mean, default_model.std
    net = default_model.model  # the timm network, on normalised inputs
    normalised = (x - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    kwargs = {"method": "cartoonx", "mean": mean, "std": std, **TINY_RDE}
    faithfulness = quantus.FaithfulnessCorrelation(
        nr_runs=8, subset_size=64, disable_warnings=True, return_aggregate=False
    )(
        model=net, x_batch=normalised.astype(np.float32), y_batch=y,
        explain_func=rdex.quantus.explain, explain_func_kwargs=kwargs, device="cpu",
    )  # fmt: skip
    assert len(faithfulness) == 2
    assert all(np.isfinite(s) and -1 <= s <= 1 for s in faithfulness)
    sensitivity = quantus.MaxSensitivity(nr_samples=2, lower_bound=0.05, disable_warnings=True)(
        model=net, x_batch=normalised.astype(np.float32), y_batch=y,
        explain_func=rdex.quantus.explain, explain_func_kwargs=kwargs, device="cpu",
    )  # fmt: skip
    assert len(sensitivity) == 2 and all(np.isfinite(s) and s >= 0 for s in sensitivity)


def test_every_baseline_is_reachable():
    from rdex.captum import ATTRIBUTION_CLASSES

    assert set(BASELINES) | set(ATTRIBUTION_CLASSES) == set(rdex.quantus.METHOD_NAMES)
    for name in set(METHODS) - set(ATTRIBUTION_CLASSES):  # RDE methods without a captum class
        with pytest.raises(ValueError, match="no attribution class"):
            rdex.quantus.explain(nn.Flatten(), np.zeros((1, 3, 8, 8), np.float32), 0, method=name)
