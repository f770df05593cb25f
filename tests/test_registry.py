"""Every registered method, RDE preset and baseline alike, through the same checks.

The cases are generated from :mod:`rdex.methods.registry` (as zennit's tests are from its
composites and captum's invariant tests from one list of algorithms): registering a method is
enough for it to be checked here for shapes, the explained target, determinism, the caller's model
and bad input.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from rdex.baselines import ALIASES, ATTRIBUTIONS, BASELINES, QUICK_SETTINGS, UnsupportedModelError
from rdex.methods import METHODS, get_method, list_methods, method_title, resolve_methods
from rdex.methods.registry import MethodInfo, paper_methods, register_method
from tiny_models import ColourNet, colour_classifier, make_tiny_model, model_untouched

ALL = [pytest.param(info, id=info.name) for info in list_methods()]
RDE = [pytest.param(info, id=info.name) for info in list_methods(kind="rde")]


def quick(info: MethodInfo) -> dict:
    """Settings that make a method cheap: few RDE steps and samples, few IG steps."""
    if info.is_rde:
        return {"steps": 5, "samples": 2, "seed": 0, "lr": 0.1, "lambda_k": 1.0}
    return dict(QUICK_SETTINGS.get(info.name, {}))


def images(batch: int = 2, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# The registry itself


def test_names_titles_and_aliases_are_consistent() -> None:
    infos = list_methods()
    names = [i.name for i in infos]
    assert len(set(names)) == len(names)
    for info in infos:
        assert info.title and method_title(info.name) == info.title
        assert get_method(info.name) is info
        for alias in info.aliases:
            assert get_method(alias) is info and ALIASES[alias] == info.name
    assert list(ATTRIBUTIONS) == names
    assert set(METHODS) | set(BASELINES) == set(names) and not set(METHODS) & set(BASELINES)
    assert {"cartoonx", "pixel-rde"} <= set(paper_methods("rde"))


@pytest.mark.parametrize("info", RDE)
def test_rde_entries_carry_their_class_facts(info: MethodInfo) -> None:
    assert METHODS[info.name] is info.factory
    assert info.factory.method == info.name
    assert info.default_lambda_k == info.factory.default_lambda_k > 0
    assert info.config("fast").lambda_k == info.default_lambda_k


def test_unknown_names_and_taken_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown method 'gradcam'.*cartoonx"):
        get_method("gradcam")
    with pytest.raises(ValueError, match="unknown method 'lrp'"):
        resolve_methods("cartoonx,lrp", kind="rde")
    assert resolve_methods("ig, pixel,") == ["integrated-gradients", "pixel-rde"]
    with pytest.raises(ValueError, match="already registered"):
        register_method("cartoonx", title="again")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        register_method("new-method", title="New", aliases=("ig",))(lambda: None)
    assert "new-method" not in ATTRIBUTIONS


# --------------------------------------------------------------------------------------------
# Every method


def red_left_green_right(batch: int = 2, size: int = 32) -> torch.Tensor:
    x = images(batch, size) * 0.3
    x[:, 0, :, : size // 2] += 0.6
    x[:, 1, :, size // 2 :] += 0.6
    return x


def left_minus_right(picture: torch.Tensor) -> float:
    half = picture.shape[-1] // 2
    return float(picture[..., :half].mean() - picture[..., half:].mean())


@pytest.mark.parametrize("info", ALL)
def test_picture_per_image_and_target_respected(info: MethodInfo) -> None:
    # Each logit of the colour net is one channel's mean: red is on the left, green on the right.
    net, x = colour_classifier(), red_left_green_right()
    red = info.attribution(net, x, target=[0, 0], **quick(info))
    assert red.shape == (2, 1, 32, 32) and red.dtype == x.dtype
    assert torch.isfinite(red).all()
    if info.is_rde:
        green = info.attribution(net, x, target=["green", 1], **quick(info))
        assert left_minus_right(red) > left_minus_right(green)
        result = info.factory(net, preset="fast", **quick(info)).explain(x, target=[0, 2])
        assert result.target.tolist() == [0, 2]
    else:  # the gradients of a linear net are constant in space: compare the channels
        red, green = (
            info.attribution(net, x, target=t, channels="none", **quick(info)) for t in (0, 1)
        )
        assert red.shape == x.shape
        assert (red - green).abs().max() > 1e-2 * red.abs().max(), "the label makes no difference"


@pytest.mark.parametrize("info", ALL)
def test_same_seed_same_picture(info: MethodInfo) -> None:
    net, x = ColourNet(), images(1)
    first = info.attribution(net, x, **quick(info))
    torch.manual_seed(123)  # the global generator must not matter
    again = info.attribution(net, x, **quick(info))
    assert torch.equal(first, again)


@pytest.mark.parametrize("info", ALL)
def test_callers_model_is_untouched(info: MethodInfo) -> None:
    net = make_tiny_model().train()  # batch norm and dropout: train and eval differ
    net[0].bias.requires_grad_(False)  # a mixed set of flags survives as it is
    # LRP may refuse this net; refusing must leave it alone as well
    with model_untouched(net), contextlib.suppress(UnsupportedModelError):
        info.attribution(net, images(1), **quick(info))


@pytest.mark.parametrize("info", ALL)
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), id="integer"),
        pytest.param(torch.zeros(16, 16), id="2-d"),
        pytest.param(torch.zeros(1, 1, 3, 16, 16), id="5-d"),
    ],
)
def test_bad_input_is_a_clear_error(info: MethodInfo, bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)|float"):
        info.attribution(ColourNet(), bad, **quick(info))


def test_default_preset_is_written_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI, the batch runner's configs, the attribution functions and captum read one
    constant: changing it changes them all."""
    import argparse

    import rdex.config
    from rdex.captum import CartoonXAttribution
    from rdex.cli._common import add_rde_args
    from rdex.methods.registry import get_method

    monkeypatch.setattr(rdex.config, "DEFAULT_PRESET", "preview")
    want = rdex.config.PRESETS["preview"]
    assert get_method("cartoonx").config().steps == want["steps"]
    assert get_method("pixel-rde").config().lr == want["lr"]
    parser = argparse.ArgumentParser()
    add_rde_args(parser)
    assert parser.parse_args([]).preset == "preview"
    attribution = CartoonXAttribution(make_tiny_model())
    attribution.attribute(torch.rand(1, 3, 16, 16), target=0)
    assert attribution.last_result is not None
    assert attribution.last_result.config.steps == want["steps"]
    picture = ATTRIBUTIONS["cartoonx"]  # the attribution function of the registry
    assert picture(make_tiny_model(), torch.rand(1, 3, 16, 16), target=0).shape == (1, 1, 16, 16)
