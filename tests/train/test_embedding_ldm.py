"""Embedding-LDM training: caption-free conditioning on image embeddings, cache reuse, a complete model dir."""

import json

import pytest
import torch

from artdiff.data.manifest import read_manifest
from artdiff.models.factory import read_model_info
from artdiff.train.embedding_ldm import EmbeddingLDMConfig, EmbeddingLDMTask, train_embedding_ldm

from model_fixtures import tiny_encoder, tiny_synth, tiny_vae


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ldm")
    data = tiny_synth(root / "synth")
    captions = [r["caption"] for r in read_manifest(data)]
    return {"data": data, "encoder": tiny_encoder(root / "encoder", captions), "vae": tiny_vae(root / "vae")}


def config(parts, out, **options):
    return EmbeddingLDMConfig(data=parts["data"], encoder=str(parts["encoder"]), vae=parts["vae"], out=out,
                              preset="tiny", size=16, batch_size=4, max_steps=3, warmup_steps=1, progress=False,
                              **options)


def test_caption_free_training_conditions_on_image_embeddings(parts, tmp_path, monkeypatch):
    task = EmbeddingLDMTask(config(parts, tmp_path / "run", cond_dropout=0.0))
    assert "text_embedding" not in task.features  # no caption was embedded
    seen = {}
    forward = task.model.forward

    def spy(x, t, encoder_hidden_states=None, **kwargs):
        seen["condition"] = encoder_hidden_states
        return forward(x, t, encoder_hidden_states=encoder_hidden_states, **kwargs)

    monkeypatch.setattr(task.model, "forward", spy)
    batch = task.batch([0, 1])
    task.loss(task.model, batch, [5, 6], step=0)
    images = task.data.images([0, 1])
    assert torch.allclose(seen["condition"][:, 0], task.encoder.embed_images(images), atol=1e-5)


def test_dropout_gives_the_null_embedding(parts, tmp_path):
    task = EmbeddingLDMTask(config(parts, tmp_path / "run", cond_dropout=0.99))
    _, _, _, keep, _ = task._draws(task.batch([0, 1, 2, 3]), [1, 2, 3, 4])
    assert keep.sum() == 0


def test_train_writes_a_complete_model_dir_and_reuses_the_cache(parts, tmp_path):
    result = train_embedding_ldm(config(parts, tmp_path / "run"))
    model = result.model_dir
    assert {p.name for p in model.iterdir()} >= {"unet", "vae", "encoder", "artdiff.json"}
    info = read_model_info(model)
    assert (info.kind, info.parameterization, info.schedule, info.conditioning["null"]) == \
        ("embedding-ldm", "v", {"type": "cosine"}, "zeros")
    assert info.preprocessing["size"] == 32 and info.latent_scale == pytest.approx(1.0)
    assert len(list((parts["data"] / ".cache").glob("features-*.safetensors"))) == 1
    train_embedding_ldm(config(parts, tmp_path / "again", schedule="discrete", objective="eps"))
    assert len(list((parts["data"] / ".cache").glob("features-*.safetensors"))) == 1  # same data, encoder, VAE
    assert json.loads((tmp_path / "again" / "model" / "artdiff.json").read_text())["schedule"]["type"] == "discrete"
    assert result.samples and result.samples[0].is_file()


def test_text_condition_embeds_captions(parts, tmp_path):
    task = EmbeddingLDMTask(config(parts, tmp_path / "run", condition="text"))
    captions = [r["caption"] for r in task.data.records[:2]]
    assert torch.allclose(task.features["text_embedding"][:2], task.encoder.embed_text(captions), atol=1e-5)
