"""Classifier wrapper, label lookup and the offline model loaders."""

from __future__ import annotations

import copy
import os
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from rdex.models import (
    DEFAULT_MODEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    available_models,
    imagenet_labels,
    load_classifier,
    wrap_classifier,
)
from rdex.models import default as lite0
from tiny_models import model_untouched


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@pytest.fixture
def offline_caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


# --------------------------------------------------------------------------- the wrapper


def test_wrapper_normalises_inside(tiny_model):
    net = tiny_model(4)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    clf = wrap_classifier(net, mean=mean, std=std)
    x = torch.rand(2, 3, 16, 16)
    reference = copy.deepcopy(net).eval()
    with torch.no_grad():
        expected = reference(_normalise(x, mean, std))
        unnormalised = reference(x)
    assert torch.allclose(clf(x), expected, atol=1e-6)
    assert not torch.allclose(clf(x), unnormalised, atol=1e-3)
    assert clf.mean == mean and clf.std == std


def test_wrapper_defaults_to_imagenet_statistics(tiny_model):
    net = tiny_model()
    clf = wrap_classifier(net)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        expected = copy.deepcopy(net).eval()(_normalise(x, IMAGENET_MEAN, IMAGENET_STD))
    assert torch.allclose(clf(x), expected, atol=1e-6)


def test_wrapper_stays_in_eval_mode(tiny_model):
    clf = wrap_classifier(tiny_model().train())
    x = torch.rand(3, 3, 8, 8)
    for switch in (clf.train, lambda: clf.train(True), clf.eval):
        switch()
        assert not any(m.training for m in clf.modules())
    # Dropout and BatchNorm in train mode would make two passes differ / depend on the batch.
    assert torch.equal(clf(x), clf(x))
    assert torch.allclose(clf(x[:1]), clf(x)[:1], atol=1e-6)


def test_wrapper_freezes_parameters_but_input_gradients_flow(tiny_model):
    clf = wrap_classifier(tiny_model())
    assert all(not p.requires_grad for p in clf.parameters())
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    clf(x)[0, 1].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in clf.parameters())


def test_wrapper_leaves_the_callers_model_alone(tiny_model):
    net = tiny_model().train()
    net[0].bias.requires_grad_(False)  # a mixed set of flags must survive as it is
    with model_untouched(net):
        clf = wrap_classifier(net)
        clf(torch.rand(4, 3, 8, 8)).sum()
        with torch.no_grad():  # the wrapper owns a copy: changing it must not reach the caller
            for p in clf.parameters():
                p.add_(1.0)


def test_wrapper_follows_the_input_dtype_and_rejects_wrong_channels(tiny_model):
    clf = wrap_classifier(tiny_model())
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        clf(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="std"):
        wrap_classifier(tiny_model(), std=(0.0, 1.0, 1.0))


def test_default_labels_follow_the_number_of_outputs(tiny_model):
    assert wrap_classifier(tiny_model(1000)).labels == imagenet_labels()
    assert wrap_classifier(tiny_model(3)).labels == ["class 0", "class 1", "class 2"]
    assert wrap_classifier(tiny_model(2), labels=["a", "b"]).labels == ["a", "b"]


# --------------------------------------------------------------------------- labels


def test_imagenet_labels_offline():
    labels = imagenet_labels()
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert (labels[0], labels[281], labels[285], labels[967], labels[968]) == (
        "tench",
        "tabby",
        "Egyptian cat",
        "espresso",
        "cup",
    )


def test_label_lookup_by_index_name_and_synonym(tiny_classifier):
    clf = tiny_classifier(3, labels=["cat, kitty", "dog", "Red fox"])
    assert clf.label_index(1) == 1
    assert clf.label_index("2") == 2
    assert clf.label_index("DOG") == 1
    assert clf.label_index("kitty") == 0
    assert clf.label_index("cat, kitty") == 0
    assert clf.label_index("red_fox") == 2
    assert clf.label_name(2) == "Red fox"


def test_label_lookup_errors(tiny_classifier):
    clf = tiny_classifier(3, labels=["cat", "dog", "fox"])
    with pytest.raises(ValueError, match="'dog'"):  # close match suggested
        clf.label_index("dgo")
    with pytest.raises(ValueError, match="out of range"):
        clf.label_index(3)
    with pytest.raises(ValueError, match="out of range"):
        clf.label_index("7")
    with pytest.raises(ValueError, match="out of range"):
        clf.label_name(-1)


def test_imagenet_synonyms(tiny_classifier):
    clf = tiny_classifier(1000)
    assert clf.label_index("tabby") == 281
    assert clf.label_index("Tabby Cat") == 281  # WordNet synonym, not in the short name
    assert clf.label_index("Tinca tinca") == 0
    assert clf.label_index("egyptian_cat") == 285
    assert clf.label_index("espresso") == 967
    with pytest.raises(ValueError, match="ambiguous.*134.*517"):
        clf.label_index("crane")  # a bird and a machine
    with pytest.raises(ValueError, match="egyptian cat"):
        clf.label_index("egyptain cat")


# --------------------------------------------------------------------------- default model


def test_default_model_recognises_cat_and_espresso():
    from rdex.images import sample_image

    clf = load_classifier()
    assert isinstance(clf, Classifier) and clf.name == DEFAULT_MODEL
    x = torch.stack([sample_image("chelsea"), sample_image("coffee")])
    with torch.no_grad():
        pred = clf(x).argmax(1).tolist()
    assert 281 <= pred[0] <= 285, clf.label_name(pred[0])
    assert pred[1] in (967, 968), clf.label_name(pred[1])


def test_default_weights_map_in_order_onto_timm():
    source = torch.load(lite0._lite0_weights_file(), map_location="cpu", weights_only=True)
    clf = load_classifier()
    state = clf.model.state_dict()
    assert torch.equal(state["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(
        state["blocks.0.0.conv_dw.weight"], source["_blocks.0._depthwise_conv.weight"]
    )
    assert torch.equal(state["classifier.weight"], source["_fc.weight"])
    assert torch.equal(state["bn2.running_var"], source["_bn1.running_var"])
    before = lite0._lite0_state_dict.cache_info().hits
    load_classifier()
    assert lite0._lite0_state_dict.cache_info().hits == before + 1  # cached, not re-read


def test_default_weights_with_a_wrong_shape_raise(tmp_path, monkeypatch):
    source = torch.load(lite0._lite0_weights_file(), map_location="cpu", weights_only=True)
    source["_blocks.0._depthwise_conv.weight"] = torch.zeros(32, 1, 5, 5)
    bad = tmp_path / "lite0.pth"
    torch.save(source, bad)
    monkeypatch.setattr(lite0, "_lite0_weights_file", lambda: bad)
    lite0._lite0_state_dict.cache_clear()
    try:
        with pytest.raises(ValueError, match="_blocks.0._depthwise_conv.weight"):
            lite0._lite0_state_dict()
    finally:
        lite0._lite0_state_dict.cache_clear()


# --------------------------------------------------------------------------- torchvision


def test_torchvision_without_weights_says_where_to_put_them(offline_caches):
    with pytest.raises(FileNotFoundError) as info:
        load_classifier("torchvision:mobilenet_v3_small")
    message = str(info.value)
    assert "--weights" in message
    assert "mobilenet_v3_small-047dcff4.pth" in message
    assert str(offline_caches / "torch" / "hub" / "checkpoints") in message


def _random_mobilenet() -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(weights=None).eval()


def test_torchvision_with_weights_file(offline_caches):
    net = _random_mobilenet()
    path = offline_caches / "mine.pth"
    torch.save(net.state_dict(), path)
    clf = load_classifier("torchvision:mobilenet_v3_small", weights=path)
    assert clf.name == "torchvision:mobilenet_v3_small"
    assert clf.labels == imagenet_labels() and clf.input_size == 224
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(clf(x), net(_normalise(x, IMAGENET_MEAN, IMAGENET_STD)), atol=1e-5)


def test_torchvision_from_the_hub_cache(offline_caches):
    net = _random_mobilenet()
    folder = offline_caches / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(net.state_dict(), folder / "mobilenet_v3_small-047dcff4.pth")
    clf = load_classifier("torchvision:mobilenet_v3_small")
    assert torch.equal(clf.model.classifier[3].weight, net.classifier[3].weight)
    listed = {m.name: m for m in available_models()}
    assert listed["torchvision:mobilenet_v3_small"].weights_present
    assert not listed["torchvision:resnet50"].weights_present


def test_torchvision_errors(offline_caches, tiny_model):
    with pytest.raises(ValueError, match="mobilenet_v3_small"):
        load_classifier("torchvision:mobilenet_v3_smal")
    wrong = offline_caches / "wrong.pth"
    torch.save(tiny_model().state_dict(), wrong)
    with pytest.raises(ValueError, match="does not fit"):
        load_classifier("torchvision:mobilenet_v3_small", weights=wrong)
    with pytest.raises(FileNotFoundError):
        load_classifier("torchvision:mobilenet_v3_small", weights=offline_caches / "absent.pth")
    text = offline_caches / "text.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable state dict"):
        load_classifier("torchvision:mobilenet_v3_small", weights=text)


# --------------------------------------------------------------------------- timm


def test_timm_without_weights_and_with_a_file(offline_caches):
    import timm

    with pytest.raises(FileNotFoundError, match="--weights"):
        load_classifier("timm:test_efficientnet")
    torch.manual_seed(1)
    net = timm.create_model("test_efficientnet", pretrained=False).eval()
    path = offline_caches / "test_efficientnet.pth"
    torch.save(net.state_dict(), path)
    clf = load_classifier("timm:test_efficientnet", weights=path)
    cfg = net.pretrained_cfg
    assert clf.mean == tuple(cfg["mean"]) and clf.std == tuple(cfg["std"])
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(clf(x), net(_normalise(x, cfg["mean"], cfg["std"])), atol=1e-5)
    with pytest.raises(ValueError, match="unknown timm model"):
        load_classifier("timm:no_such_net_at_all")


# --------------------------------------------------------------------------- user models


def test_torchscript_round_trip(tmp_path, tiny_model):
    net = tiny_model(5).eval()
    path = tmp_path / "net.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(net, torch.rand(1, 3, 16, 16)).save(str(path))
    clf = load_classifier(str(path))
    assert clf.labels == [f"class {i}" for i in range(5)]
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(clf(x), net(_normalise(x, IMAGENET_MEAN, IMAGENET_STD)), atol=1e-5)


def test_a_state_dict_is_not_torchscript(tmp_path, tiny_model):
    path = tmp_path / "weights.pth"
    torch.save(tiny_model().state_dict(), path)
    with pytest.raises(ValueError, match="not a TorchScript model"):
        load_classifier(str(path))
    with pytest.raises(FileNotFoundError):
        load_classifier(str(tmp_path / "missing.pt"))


def test_module_factory_with_state_dict(tmp_path, monkeypatch, tiny_model):
    (tmp_path / "rdex_user_factory.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def make():
                torch.manual_seed(123)
                return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(7)
    trained = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    path = tmp_path / "trained.pth"
    torch.save(trained.state_dict(), path)

    plain = load_classifier("rdex_user_factory:make")
    loaded = load_classifier("rdex_user_factory:make", weights=path)
    assert loaded.labels == [f"class {i}" for i in range(4)]
    assert torch.equal(loaded.model[1].weight, trained[1].weight)
    assert not torch.equal(plain.model[1].weight, trained[1].weight)
    with pytest.raises(ValueError, match="cannot import"):
        load_classifier("rdex_no_such_module:make")
    with pytest.raises(ValueError, match="no attribute"):
        load_classifier("rdex_user_factory:missing")


def test_unknown_model_lists_the_valid_forms():
    with pytest.raises(ValueError) as info:
        load_classifier("not a model")
    for form in ("efficientnet_lite0", "torchvision:NAME", "timm:NAME", "TorchScript", "factory"):
        assert form in str(info.value)


def test_available_models(offline_caches):
    listed = {m.name: m for m in available_models()}
    expected = {
        DEFAULT_MODEL,
        *(
            f"torchvision:{n}"
            for n in (
                "mobilenet_v3_small",
                "vgg16",
                "alexnet",
                "inception_v3",
                "resnext50_32x4d",
                "resnet50",
            )
        ),
    }
    assert expected <= set(listed)
    assert sum(n.startswith("timm:") for n in listed) >= 2
    default = listed[DEFAULT_MODEL]
    assert default.weights_present and Path(default.where).is_file()
    vgg = listed["torchvision:vgg16"]
    assert not vgg.weights_present
    assert vgg.where == os.path.join(
        str(offline_caches / "torch" / "hub" / "checkpoints"), "vgg16-397923af.pth"
    )
    assert all(not m.weights_present for n, m in listed.items() if n.startswith("timm:"))
