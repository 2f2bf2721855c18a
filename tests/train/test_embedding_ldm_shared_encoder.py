"""A model trained on the shipped encoder refers to it; one trained on a user's encoder carries a copy."""

import json
import shutil

import pytest
import torch

from artdiff.generate.embedding_generate import load_embedding_model
from artdiff.models import components
from artdiff.train.embedding_ldm import EmbeddingLDMConfig, EmbeddingLDMTask, train_embedding_ldm

from model_fixtures import tiny_encoder, tiny_synth, tiny_vae


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    data = tiny_synth(root / "synth", n=8)
    return {"data": data, "vae": tiny_vae(root / "vae"), "assets": root / "assets", "root": root,
            "encoder": tiny_encoder(root / "assets" / "tiny-encoder", ["a red circle", "a blue square"])}


@pytest.fixture
def shipped(parts, monkeypatch):
    monkeypatch.setattr(components, "ASSETS", parts["assets"])  # the tiny encoder stands for cloob-mini


def train(parts, out, **options):
    """One step without the EMA copy or the end-of-run sample grid: these tests look at the encoder only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EmbeddingLDMTask, "sample", lambda task, model: None)  # the loop skips a None grid
        return train_embedding_ldm(EmbeddingLDMConfig(data=parts["data"], vae=parts["vae"], out=out, preset="tiny",
                                                      size=16, batch_size=4, max_steps=1, warmup_steps=1,
                                                      ema_decay=0.0, progress=False, **options)).model_dir


@pytest.fixture(scope="module")
def referring(parts):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(components, "ASSETS", parts["assets"])
        return train(parts, parts["root"] / "run", encoder=str(parts["encoder"]))


def test_the_shipped_encoder_is_referred_to_and_init_keeps_the_reference(parts, referring, shipped, tmp_path):
    data = json.loads((referring / "artdiff.json").read_text())
    assert data["components"] == {"encoder": {"asset": "tiny-encoder"}} and not (referring / "encoder").exists()
    assert load_embedding_model(str(referring)).encoder.name == str(parts["encoder"])
    again = train(parts, tmp_path / "again", init=str(referring))  # --init reads the encoder it refers to
    assert json.loads((again / "artdiff.json").read_text())["components"] == data["components"]


def test_init_from_an_fp16_reference_embeds_with_the_rounded_encoder(parts, referring, shipped, tmp_path):
    model = shutil.copytree(referring, tmp_path / "model")
    info = json.loads((model / "artdiff.json").read_text())
    info["components"]["encoder"]["precision"] = "fp16"
    (model / "artdiff.json").write_text(json.dumps(info))
    task = EmbeddingLDMTask(EmbeddingLDMConfig(data=parts["data"], out=tmp_path / "again", init=str(model),
                                               preset="tiny", size=16, batch_size=4, max_steps=1, progress=False))
    weight = task.encoder.visual_projection.weight
    assert torch.equal(weight, weight.half().float()) and task.encoder_part.precision == "fp16"
    assert task.encoder_part.reference() == {"asset": "tiny-encoder", "precision": "fp16"}


def test_a_users_encoder_is_copied_in(parts, tmp_path):
    model = train(parts, tmp_path / "run", encoder=str(parts["encoder"]))  # assets/ not patched: a user folder
    assert "components" not in json.loads((model / "artdiff.json").read_text())
    assert (model / "encoder" / "model.safetensors").is_file()
