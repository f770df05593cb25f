"""Vision transformers: transformers models through ``hf:``, timm ViTs, CartoonX on both.

Every model here is tiny, randomly initialised from a config and saved to a temporary folder:
nothing downloads.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import transformers  # the hf extra: pip install 'rdex[hf]' (make test installs it)

from rdex.baselines import check_baselines, lrp
from rdex.captum import CartoonXAttribution
from rdex.methods import CartoonX
from rdex.models import load_classifier, wrap_classifier

LABELS = {0: "red", 1: "green", 2: "blue"}
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def save_tiny_vit(folder: Path, *, processor: bool = True, size: int = 32) -> torch.nn.Module:
    """A two-layer ViT for 32 x 32 images with three labels, saved as ``save_pretrained`` does."""
    config = transformers.ViTConfig(
        image_size=size,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)
        if processor:
            transformers.ViTImageProcessor(
                size={"height": size, "width": size}, image_mean=MEAN, image_std=STD
            ).save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-vit")
    save_tiny_vit(folder)
    return folder


def test_hf_folder_loads_with_its_processor_and_labels(vit_folder):
    reference = transformers.ViTForImageClassification.from_pretrained(vit_folder).eval()
    clf = load_classifier(f"hf:{vit_folder}")
    assert clf.labels == ["red", "green", "blue"]
    assert clf.mean == tuple(MEAN) and clf.std == tuple(STD) and clf.input_size == 32
    assert clf.label_index("green") == 1
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    normalised = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(pixel_values=normalised).logits
        got = clf(x)
    assert isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, expected)
    assert not any(p.requires_grad for p in clf.parameters())


def test_hf_vit_inputs_are_resized_to_its_size(vit_folder):
    """A ViT's position embeddings fix its input size; other sizes are resized to it, as its
    image processor would."""
    clf = load_classifier(f"hf:{vit_folder}")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    small = torch.nn.functional.interpolate(
        x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True
    )
    with torch.no_grad():
        torch.testing.assert_close(clf(x), clf(small))


def test_hf_from_the_local_cache_by_name(tmp_path, monkeypatch):
    """``hf:owner/name`` reads the Hugging Face cache layout (never the network)."""
    snapshot = tmp_path / "hub" / "models--tiny-org--tiny-vit" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    save_tiny_vit(snapshot)
    refs = tmp_path / "hub" / "models--tiny-org--tiny-vit" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    clf = load_classifier("hf:tiny-org/tiny-vit")
    assert clf.labels == ["red", "green", "blue"] and clf.name == "hf:tiny-org/tiny-vit"
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_classifier("hf:tiny-org/not-cached")


def test_hf_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_classifier(f"hf:{tmp_path / 'missing'}")
    bare = tmp_path / "bare"
    save_tiny_vit(bare, processor=False)
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        load_classifier(f"hf:{bare}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no transformers image classifier"):
        load_classifier(f"hf:{empty}")
    with pytest.raises(ValueError, match="needs a folder"):
        load_classifier("hf:")


def test_cli_classify_and_explain_an_hf_vit(vit_folder, tmp_path, capsys):
    from rdex.cli import main

    assert main(["classify", "chelsea", "--model", f"hf:{vit_folder}", "--size", "32"]) == 0
    printed = capsys.readouterr().out
    assert all(label in printed for label in LABELS.values())
    code = main(
        ["explain", "chelsea", "--model", f"hf:{vit_folder}", "--size", "32", "--preset",
         "preview", "--steps", "3", "--samples", "2", "--out", str(tmp_path / "out"), "--quiet"]
    )  # fmt: skip
    assert code == 0
    assert list((tmp_path / "out").rglob("*.npz"))
    assert main(["classify", "chelsea", "--model", f"hf:{tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "Traceback" not in err


def test_cartoonx_explains_an_hf_vit(vit_folder):
    clf = load_classifier(f"hf:{vit_folder}")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    result = CartoonX(clf, preset="fast", steps=8, samples=2).explain(x, target=["red", "blue"])
    assert result.target.tolist() == [0, 2]
    assert result.explanation.shape == (2, 1, 32, 32)
    assert all(bool((m >= 0).all() and (m <= 1).all()) for m in result.mask)
    assert torch.isfinite(result.history["loss"]).all()
    # The masks moved: the distortion of a ViT reaches the mask through attention.
    assert float(result.mask_flat.mean()) < 1.0
    attr = CartoonXAttribution(clf, steps=8, samples=2).attribute(x, target=[0, 2])
    assert attr.shape == x.shape


def tiny_timm_vit():
    import timm

    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=3,
    )


def test_cartoonx_explains_a_timm_vit():
    model = wrap_classifier(tiny_timm_vit(), labels=list(LABELS.values()), name="tiny-vit")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    first = CartoonX(model, preset="fast", steps=8, samples=2).explain(x)
    again = CartoonX(model, preset="fast", steps=8, samples=2).explain(x)
    torch.testing.assert_close(first.mask_flat, again.mask_flat)  # seeded: reproducible
    assert float(first.mask_flat.mean()) < 1.0
    assert first.explanation.shape == (1, 1, 32, 32)


def test_baselines_on_a_vit():
    """IG and SmoothGrad work on a ViT; Guided Backprop warns (GELU); LRP refuses and says what
    it would need (attention and LayerNorm rules)."""
    model = wrap_classifier(tiny_timm_vit(), labels=list(LABELS.values()), name="tiny-vit")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    report = check_baselines(model, x)
    assert report["integrated-gradients"][0] == "ok"
    assert report["smoothgrad"][0] == "ok"
    assert report["guided-backprop"][0] == "warning" and "GELU" in report["guided-backprop"][1]
    status, message = report["lrp"]
    assert status == "refused" and "attention" in message and "AttnLRP" in message
    assert lrp(model, x, check=False).shape == x.shape  # the unchecked map is still available


def test_baselines_on_an_hf_vit(vit_folder):
    clf = load_classifier(f"hf:{vit_folder}")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    report = check_baselines(clf, x)
    assert report["integrated-gradients"][0] == "ok" and report["smoothgrad"][0] == "ok"
    assert report["lrp"][0] == "refused" and "attention" in report["lrp"][1]
