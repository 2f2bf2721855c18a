"""A model directory refers to a shipped encoder: followed only to a shipped joint encoder, kept valid by convert."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from artdiff.errors import UserError
from artdiff.models import components
from artdiff.models.components import combined_precision, component, round_to_precision, shipped_component
from artdiff.models.convert_dtype import convert_model_dtype
from artdiff.models.encoders import load_encoder
from artdiff.models.factory import read_model_info

from model_fixtures import tiny_encoder, tiny_vae


@pytest.fixture
def assets(tmp_path, monkeypatch):
    """A stand-in for artdiff's assets/ holding a tiny joint encoder and a folder of another kind."""
    root = tmp_path / "assets"
    tiny_encoder(root / "tiny-encoder", ["a red circle", "a blue square"])
    tiny_vae(root / "a-vae")
    monkeypatch.setattr(components, "ASSETS", root)
    return root


def referring_model(folder, entry) -> object:
    """A model directory (just a vae/) whose artdiff.json refers to its encoder with `entry`."""
    tiny_vae(folder / "vae")
    (folder / "artdiff.json").write_text(json.dumps({"kind": "embedding-ldm", "components": {"encoder": entry}}))
    return read_model_info(folder)


def test_a_reference_resolves_to_the_shipped_folder(assets, tmp_path):
    info = referring_model(tmp_path / "m", {"asset": "tiny-encoder", "precision": "fp16"})
    part = component(tmp_path / "m", info, "encoder")
    assert part.path == assets / "tiny-encoder" and part.precision == "fp16"
    assert part.reference() == {"asset": "tiny-encoder", "precision": "fp16"}
    assert shipped_component(assets / "tiny-encoder").reference() == {"asset": "tiny-encoder"}
    assert shipped_component(tmp_path / "m" / "vae").reference() is None  # a user's folder is copied, not named


@pytest.mark.parametrize("entry, match", [
    ({"asset": "../m"}, "not the name of a folder shipped"),
    ({"asset": "/etc"}, "not the name of a folder shipped"),
    ({"asset": "tiny-encoder/../a-vae"}, "not the name of a folder shipped"),
    ({"asset": "a-vae"}, "a vae, not a joint-encoder"),
    ({"asset": "absent"}, "which this install lacks"),
    ({"asset": "tiny-encoder", "precision": "int8"}, "precision 'int8'"),
    ({"asset": "tiny-encoder", "path": "x"}, "must be"),
    ("tiny-encoder", "must be"),
])
def test_a_reference_outside_the_rule_is_one_line(assets, tmp_path, entry, match):
    info = referring_model(tmp_path / "m", entry)
    with pytest.raises(UserError, match=match) as error:
        component(tmp_path / "m", info, "encoder")
    assert "\n" not in str(error.value)


def test_unknown_parts_and_ambiguous_models_are_refused(assets, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "artdiff.json").write_text(json.dumps({"kind": "embedding-ldm",
                                                             "components": {"vae": {"asset": "a-vae"}}}))
    with pytest.raises(UserError, match="components.vae is not a part a model may refer to"):
        component(tmp_path / "m", read_model_info(tmp_path / "m"), "encoder")
    info = referring_model(tmp_path / "both", {"asset": "tiny-encoder"})
    shutil.copytree(assets / "tiny-encoder", tmp_path / "both" / "encoder")
    with pytest.raises(UserError, match="has both its own encoder/ folder and components.encoder"):
        component(tmp_path / "both", info, "encoder")
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "artdiff.json").write_text('{"kind": "embedding-ldm"}')
    with pytest.raises(UserError, match="missing its encoder/ folder"):
        component(tmp_path / "none", read_model_info(tmp_path / "none"), "encoder")


def test_rounding_equals_loading_an_fp16_copy(assets, tmp_path):
    convert_model_dtype(assets / "tiny-encoder", tmp_path / "half", "fp16")
    copied = load_encoder(tmp_path / "half")
    referred = round_to_precision(load_encoder(assets / "tiny-encoder"), "fp16")
    full = load_encoder(assets / "tiny-encoder")
    a, b, c = copied.state_dict(), referred.state_dict(), full.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and b[next(iter(b))].dtype == torch.float32
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the rounding did something
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(copied.embed_images(images), referred.embed_images(images))
    assert torch.equal(copied.embed_text(["a red circle"]), referred.embed_text(["a red circle"]))


def test_precisions_combine_as_successive_conversions():
    assert combined_precision(None, "fp16") == "fp16" and combined_precision("fp16", "fp32") == "fp16"
    assert combined_precision("fp16", "fp16") == "fp16" and combined_precision(None, "fp32") == "fp32"
    assert combined_precision("fp16", "bf16") is None  # no single precision rounds like both in turn


def test_convert_keeps_the_reference_at_the_copy_precision(assets, tmp_path):
    referring_model(tmp_path / "m", {"asset": "tiny-encoder"})
    convert_model_dtype(tmp_path / "m", tmp_path / "half", "fp16")
    data = json.loads((tmp_path / "half" / "artdiff.json").read_text())
    assert data["components"] == {"encoder": {"asset": "tiny-encoder", "precision": "fp16"}}
    assert not (tmp_path / "half" / "encoder").exists()
    convert_model_dtype(tmp_path / "half", tmp_path / "full", "fp32")  # fp32 of fp16 weights is still fp16's values
    assert json.loads((tmp_path / "full" / "artdiff.json").read_text())["components"]["encoder"]["precision"] == "fp16"


def test_convert_copies_the_encoder_in_when_no_single_precision_fits(assets, tmp_path):
    referring_model(tmp_path / "m", {"asset": "tiny-encoder", "precision": "fp16"})
    convert_model_dtype(tmp_path / "m", tmp_path / "bf", "bf16")
    data = json.loads((tmp_path / "bf" / "artdiff.json").read_text())
    assert "components" not in data
    tensors = load_file(tmp_path / "bf" / "encoder" / "model.safetensors")
    source = load_file(assets / "tiny-encoder" / "model.safetensors")
    key = next(k for k in source if source[k].is_floating_point())
    assert tensors[key].dtype == torch.bfloat16
    assert torch.equal(tensors[key], source[key].half().bfloat16())
    part = component(tmp_path / "bf", read_model_info(tmp_path / "bf"), "encoder")
    assert part.path == tmp_path / "bf" / "encoder" and part.reference() is None


def test_convert_refuses_a_bad_reference_before_writing(assets, tmp_path):
    referring_model(tmp_path / "m", {"asset": "../elsewhere"})
    with pytest.raises(UserError, match="not the name of a folder shipped"):
        convert_model_dtype(tmp_path / "m", tmp_path / "out", "fp16")
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.tmp").exists()
