"""The shipped artdiff-mini: complete, within its size budget, trained caption-free, and usable with no --model."""

import json

import pytest
import torch
from PIL import Image

from artdiff.cli.main import main
from artdiff.evaluate.model_eval import ModelEvalConfig, evaluate_model
from artdiff.generate.embedding_generate import load_embedding_model
from artdiff.generate.sample import sample_from_embeddings
from artdiff.models.components import component
from artdiff.models.convert_dtype import convert_model_dtype
from artdiff.models.encoders import load_encoder
from artdiff.models.factory import read_model_info
from artdiff.utils.assets import ASSETS, SHIPPED_ENCODER, SHIPPED_MODEL

ASSET_BUDGET_BYTES = 100 * 1024 * 1024  # issue 13: every shipped asset together


def test_all_shipped_assets_fit_the_budget():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total <= ASSET_BUDGET_BYTES, f"assets hold {total / 2**20:.1f} MiB"


def test_shipped_model_is_a_caption_free_embedding_ldm():
    info = read_model_info(SHIPPED_MODEL)
    assert info.kind == "embedding-ldm" and info.conditioning["trained_on"] == "image"
    assert info.latent_scale and info.latent_scale > 0  # measured on the data, not a constant
    assert all((SHIPPED_MODEL / part / "config.json").is_file() for part in ("unet", "vae"))
    encoder = component(SHIPPED_MODEL, info, "encoder")  # the shipped cloob-mini, not a copy
    assert encoder.path == SHIPPED_ENCODER and encoder.precision == "fp16" and not (SHIPPED_MODEL / "encoder").exists()


def test_referring_to_cloob_mini_gives_the_images_its_fp16_copy_gave(tmp_path):
    """Before the reference, encoder/ was cloob-mini converted to fp16: both give the very same images."""
    model = load_embedding_model(None)
    copied = load_encoder(convert_model_dtype(SHIPPED_ENCODER, tmp_path / "encoder", "fp16").out)
    copied.preprocessing = model.encoder.preprocessing  # as load_embedding_model sets it from artdiff.json
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    images = []
    for encoder in (copied, model.encoder):
        with torch.no_grad():
            prompt_sets = [[(encoder.embed_text(["a soft rothko, pastel tones, light ground"]), 1.0)],
                           [(encoder.embed_images(image), 1.0)]]
        images.append(sample_from_embeddings(model.unet, model.latents, model.info.schedule,
                                             model.info.parameterization, prompt_sets, cfg_scale=3.0, steps=3,
                                             seed=5, latent_size=16))
    assert torch.equal(images[0], images[1])


def test_generate_without_model_uses_the_shipped_one(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["generate", "a soft rothko, pastel tones, light ground:2", "--steps", "3", "-n", "2",
                 "--seed", "5", "--out", str(out), "--json"])
    assert code == 0
    paths = json.loads(capsys.readouterr().out)["images"]
    assert len(paths) == 2
    image = Image.open(paths[0])
    assert image.size == (64, 64) and "Seed: 5" in image.text["parameters"]
    assert json.loads(open(paths[1].replace(".png", ".json")).read())["seed"] == 6


@pytest.mark.slow
def test_shipped_model_meets_the_quality_bars():
    """The bars of issue 5 at the default settings of `artdiff generate` (about a minute on 2 CPU cores)."""
    report = evaluate_model(ModelEvalConfig()).to_json()
    adherence, images = report["text_adherence"], report["image_consistency"]
    assert adherence["style"] >= 0.75 and adherence["palette"] >= 0.75 and adherence["ground"] >= 0.9
    assert images["style"] >= 0.85
    assert report["fd"]["fd_judge"] <= 3 * report["fd"]["real_vs_real"]


def test_a_converted_copy_elsewhere_still_finds_cloob_mini(tmp_path):
    convert_model_dtype(SHIPPED_MODEL, tmp_path / "copy", "fp16")
    part = component(tmp_path / "copy", read_model_info(tmp_path / "copy"), "encoder")
    assert part.path == SHIPPED_ENCODER and part.precision == "fp16" and not (tmp_path / "copy" / "encoder").exists()
