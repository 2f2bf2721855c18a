"""Image-variation training: what each stage changes, the projection, a diffusers-loadable model dir, resume."""

import json

import pytest
import torch
from diffusers import StableDiffusionImageVariationPipeline
from safetensors.torch import load_file

from artdiff.cli.main import main
from artdiff.cli.train import METHODS
from artdiff.data.manifest import read_manifest
from artdiff.errors import UserError
from artdiff.models.factory import load_clip_model
from artdiff.models.image_variation import image_condition, load_image_variation, pixel_values
from artdiff.train.image_variation import ImageVariationConfig, ImageVariationTask, train_image_variation
from iv_fixtures import tiny_image_encoder_dir
from sd_fixtures import tiny_sd

from model_fixtures import tiny_encoder, tiny_synth


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("iv-train")
    data = tiny_synth(root / "synth", n=8)
    captions = [r["caption"] for r in read_manifest(data)]
    return {"data": data, "sd": tiny_sd(root / "sd"),  # cross_attention_dim 32
            "vision32": tiny_image_encoder_dir(root / "vision32", 32),  # as wide as the UNet's cross-attention
            "clip16": tiny_encoder(root / "clip16", captions)}  # a CLIPModel folder with 16-d embeddings


def config(parts, out, encoder="vision32", **options):
    base = dict(data=parts["data"], init=str(parts["sd"]), image_encoder=str(parts[encoder]), out=out, size=16,
                batch_size=2, max_steps=2, lr=1e-3, warmup_steps=1, progress=False)
    return ImageVariationConfig(**{**base, **options})


@pytest.fixture
def no_samples(monkeypatch):
    """Skip the fixed-seed grid (most of a tiny run's time); the stage-attn and projection tests keep it."""
    monkeypatch.setattr(ImageVariationTask, "sample", lambda self, model: None)


def unet_weights(folder):
    return load_file(str(next((folder / "unet").glob("*.safetensors"))))


def changed(parts, model_dir):
    before, after = unet_weights(parts["sd"]), unet_weights(model_dir)
    assert set(before) <= set(after)
    return {k for k in after if k not in before or not torch.equal(before[k], after[k])}


def test_stage_attn_changes_only_cross_attention(parts, tmp_path):
    result = train_image_variation(config(parts, tmp_path / "run", stage="attn"))
    moved = changed(parts, result.model_dir)
    assert moved and all(".attn2." in k for k in moved), sorted(k for k in moved if ".attn2." not in k)
    assert {k.rsplit(".attn2.", 1)[1] for k in moved} >= {"to_q.weight", "to_k.weight", "to_v.weight",
                                                          "to_out.0.weight", "to_out.0.bias"}
    assert result.samples and result.samples[0].is_file()


def test_stage_full_changes_the_rest_too(parts, tmp_path, no_samples):
    moved = changed(parts, train_image_variation(config(parts, tmp_path / "run", stage="full")).model_dir)
    assert any(".attn1." in k for k in moved) and any(k.startswith("conv_in.") for k in moved)


def test_a_projection_is_trained_when_widths_differ_and_diffusers_loads_the_model(parts, tmp_path):
    result = train_image_variation(config(parts, tmp_path / "run", encoder="clip16", stage="attn"))
    model_dir = result.model_dir
    moved = changed(parts, model_dir)
    assert {"encoder_hid_proj.weight", "encoder_hid_proj.bias"} <= moved
    assert all(".attn2." in k or k.startswith("encoder_hid_proj.") for k in moved)
    unet_config = json.loads((model_dir / "unet" / "config.json").read_text())
    assert (unet_config["encoder_hid_dim"], unet_config["encoder_hid_dim_type"]) == (16, "text_proj")
    info = json.loads((model_dir / "artdiff.json").read_text())
    assert info["kind"] == "image-variation" and info["conditioning"]["dim"] == 16
    assert info["preprocessing"]["align_corners"] is True and info["preprocessing"]["antialias"] is False

    model = load_image_variation(model_dir)  # the CLIPModel's vision half was saved as image_encoder/
    clip = load_clip_model(parts["clip16"])
    pixels = pixel_values(torch.rand(1, 3, 16, 16), model.preprocessing)
    with torch.no_grad():
        reference = clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)
        assert torch.allclose(image_condition(model.image_encoder, pixels)[:, 0], reference, atol=1e-6)

    pipe = StableDiffusionImageVariationPipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(pixels, num_inference_steps=2, height=16, width=16, guidance_scale=3.0, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 3, 16, 16) and torch.isfinite(images).all()


def test_the_condition_is_the_unnormalised_image_embedding_and_dropout_gives_zeros(parts, tmp_path, monkeypatch):
    task = ImageVariationTask(config(parts, tmp_path / "run", cond_dropout=0.0))
    images = task.data.images([0, 1])
    with torch.no_grad():
        embeds = task.image_encoder(pixel_values=pixel_values(images, task.contract)).image_embeds
    assert torch.allclose(task.features["image_embeds"][:2], embeds, atol=1e-6)
    assert not torch.allclose(embeds.norm(dim=-1), torch.ones(2))  # not L2-normalised, as the published model
    seen = {}
    forward = task.model.forward

    def spy(x, t, encoder_hidden_states=None, **kwargs):
        seen["condition"] = encoder_hidden_states
        return forward(x, t, encoder_hidden_states=encoder_hidden_states, **kwargs)

    monkeypatch.setattr(task.model, "forward", spy)
    task.loss(task.model, task.batch([0, 1]), [5, 6], step=0)
    assert seen["condition"].shape == (2, 1, 32) and torch.allclose(seen["condition"][:, 0], embeds, atol=1e-6)
    task.cfg.cond_dropout = 0.99
    task.loss(task.model, task.batch([0, 1]), [5, 6], step=0)
    assert torch.count_nonzero(seen["condition"]) == 0


def test_interrupted_and_resumed_equals_uninterrupted(parts, tmp_path, no_samples):
    common = dict(encoder="clip16", lr_schedule="constant", log_every=1)
    whole = train_image_variation(config(parts, tmp_path / "whole", max_steps=4, **common))
    train_image_variation(config(parts, tmp_path / "split", max_steps=2, **common))
    resumed = train_image_variation(config(parts, tmp_path / "split", max_steps=4, **common))
    log = [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert resumed.steps == 4 and log == [1, 2, 3, 4]  # the second call went on from step 2
    a, b = unet_weights(whole.model_dir), unet_weights(resumed.model_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_trains_through_main(parts, tmp_path, capsys, monkeypatch, no_samples):
    monkeypatch.setitem(METHODS, "image-variation", ("artdiff.train.image_variation",
                                                     "artdiff.train.image_variation_config", "ImageVariationConfig",
                                                     "train_image_variation", "image variations"))
    code = main(["train", "image-variation", "--data", str(parts["data"]), "--init", str(parts["sd"]),
                 "--image-encoder", str(parts["vision32"]), "--stage", "full", "--size", "16", "--batch-size", "2",
                 "--max-steps", "1", "--warmup-steps", "1", "--encoder-antialias", "--out", str(tmp_path / "run"),
                 "--json"])
    assert code == 0
    model_dir = json.loads(capsys.readouterr().out)["model_dir"]
    info = json.loads((tmp_path / "run" / "model" / "artdiff.json").read_text())
    assert model_dir.endswith("model") and info["recipe"]["stage"] == "full" and info["preprocessing"]["antialias"]


@pytest.mark.parametrize("options, message", [
    ({"init": "data"}, "neither a Stable Diffusion nor an image-variation"),
    ({"image_encoder": "sd"}, "not a CLIP image encoder"),
    ({"image_encoder": None}, "pass --image-encoder"),
    ({"size": 15}, "multiple of 2"),
])
def test_bad_inputs_are_one_line_errors(parts, tmp_path, options, message):
    options = {k: (str(parts[v]) if v in parts else v) for k, v in options.items()}
    with pytest.raises(UserError, match=message):
        ImageVariationTask(config(parts, tmp_path / "run", **options))


def test_init_is_required(parts, tmp_path):
    with pytest.raises(ValueError, match="--init is required"):
        config(parts, tmp_path / "run", init=None)
