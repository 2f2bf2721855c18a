"""JointEncoder on tiny random CLIP folders in the real formats: shapes, norms, preprocessing, layouts, errors."""

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

from artdiff.errors import UserError
from artdiff.models import factory
from artdiff.models.encoders import JointEncoder, load_encoder, save_encoder
from artdiff.models.preprocessing import CLIP_MEAN, CLIP_STD, Preprocessing, preprocess
from artdiff.models.specs import ClipSpec, build_clip_model, clip_config, clip_preset
from artdiff.models.tokenizer import build_tokenizer

CAPTIONS = ["a watercolor painting of three red circles", "an oil painting of a blue square",
            "a pencil sketch of green triangles"] * 10
# A contract unlike the default in every field that changes pixels.
CUSTOM = Preprocessing(size=32, kernel="bilinear", antialias=False, crop=False, mean=(0.5, 0.5, 0.5),
                       std=(0.25, 0.25, 0.25))
# transformers' preprocessor_config.json of openai/clip-vit-large-patch14, at the tiny model's size.
HF_PROCESSOR = {"crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": list(CLIP_MEAN),
                "image_std": list(CLIP_STD), "resample": 3, "size": 32}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    info = build_tokenizer(CAPTIONS, root / "tokenizer", vocab_size=560)
    torch.manual_seed(0)
    model = build_clip_model(clip_preset("tiny"), vocab_size=info.vocab_size, bos_token_id=info.bos_token_id,
                             eos_token_id=info.eos_token_id)
    save_encoder(model, root / "custom", tokenizer_dir=info.path, preprocessing=CUSTOM,
                 info={"objective": "cloob"})
    factory.save_pretrained_dir(model, root / "plain")  # a CLIPModel folder as transformers writes it
    factory.copy_tokenizer(info.path, root / "plain")
    factory.save_pretrained_dir(model, root / "no-tokenizer")
    towers = root / "towers"  # diffusers-style: image_encoder/, text_encoder/, tokenizer/
    for cls, config, sub in ((CLIPVisionModelWithProjection, model.config.vision_config, "image_encoder"),
                             (CLIPTextModelWithProjection, model.config.text_config, "text_encoder")):
        tower = cls(config)
        missing, _ = tower.load_state_dict(model.state_dict(), strict=False)
        assert not missing
        factory.save_pretrained_dir(tower, towers / sub)
    factory.copy_tokenizer(info.path, towers / "tokenizer")
    return root


@pytest.fixture(scope="module")
def encoder(folders):
    return load_encoder(folders / "custom")


def _images(n=3, height=40, width=48, seed=0):
    return torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_embeddings_have_the_projection_shape_and_unit_norm(encoder):
    images, texts = encoder.embed_images(_images()), encoder.embed_text(CAPTIONS[:3])
    assert encoder.dim == 16 and images.shape == (3, 16) and texts.shape == (3, 16)
    assert images.dtype == texts.dtype == torch.float32
    for embeddings in (images, texts):
        assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3))


def test_embeddings_are_deterministic_and_batch_independent(encoder):
    images = _images()
    assert torch.equal(encoder.embed_images(images), encoder.embed_images(images))
    assert torch.allclose(encoder.embed_images(images[1:2]), encoder.embed_images(images)[1:2], atol=1e-6)
    texts = ["red", "a much longer caption of blue squares on a yellow background"]
    # Padding to the longest caption must not change the short one.
    assert torch.allclose(encoder.embed_text(texts)[0], encoder.embed_text("red")[0], atol=1e-6)


def test_preprocessing_comes_from_artdiff_json_and_is_applied_exactly(folders, encoder):
    assert encoder.preprocessing == CUSTOM
    images = _images(height=64, width=40)
    x = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
    x = (x.clamp(0, 1) - 0.5) / 0.25
    model = factory.load_clip_model(folders / "custom")
    expected = F.normalize(model.visual_projection(model.vision_model(pixel_values=x).pooler_output), dim=-1)
    assert torch.allclose(encoder.embed_images(images), expected, atol=1e-5)


def test_without_a_contract_clip_defaults_apply_at_the_model_size(folders, encoder):
    plain = load_encoder(folders / "plain")
    assert plain.preprocessing == Preprocessing(size=32)
    images = _images(height=64, width=40)
    assert not torch.allclose(plain.embed_images(images), encoder.embed_images(images), atol=1e-3)
    # Same weights, so the same input gives the same text embedding.
    assert torch.allclose(plain.embed_text(CAPTIONS[:2]), encoder.embed_text(CAPTIONS[:2]), atol=1e-6)


def test_real_clip_preprocessor_config_is_read(folders, tmp_path):
    target = shutil.copytree(folders / "plain", tmp_path / "hf")
    factory.write_artdiff_json(target, {"kind": "joint-encoder"})  # an artdiff.json without a contract
    (target / "preprocessor_config.json").write_text(json.dumps(HF_PROCESSOR))
    assert load_encoder(target).preprocessing == Preprocessing(size=32)
    openai = {**HF_PROCESSOR, "size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}}
    assert Preprocessing.from_hf_processor_config(openai) == Preprocessing()
    wider = Preprocessing.from_hf_processor_config({**HF_PROCESSOR, "size": 256, "crop_size": 224, "resample": 2})
    assert (wider.size, wider.output_size, wider.kernel, wider.antialias) == (256, 224, "bilinear", True)


def test_pil_and_tensor_inputs_agree(encoder):
    array = np.random.default_rng(0).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float().div(255)
    from_pil = encoder.embed_images([Image.fromarray(array), Image.fromarray(array[::-1].copy())])
    assert torch.allclose(from_pil[0], encoder.embed_images(tensor)[0], atol=1e-6)
    assert torch.allclose(from_pil[0], encoder.embed_images(Image.fromarray(array))[0], atol=1e-6)


def test_centre_crop_follows_the_shortest_edge_rule():
    prep = Preprocessing(size=8, kernel="nearest", mean=(0, 0, 0), std=(1, 1, 1))
    images = torch.zeros(1, 3, 16, 32)
    images[..., 8:24] = 1.0  # the middle half of the width survives the crop
    assert preprocess(images, prep).shape == (1, 3, 8, 8) and preprocess(images, prep).min() == 1.0
    assert preprocess(images[..., :8], prep).shape == (1, 3, 8, 8)  # upscaled, then nothing to crop


def test_lanczos_follows_pil():
    array = np.random.default_rng(1).integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    prep = Preprocessing(size=16, kernel="lanczos", crop=False, mean=(0, 0, 0), std=(1, 1, 1))
    tensor = torch.from_numpy(array).permute(2, 0, 1).float().div(255)
    reference = np.asarray(Image.fromarray(array).resize((16, 16), Image.Resampling.LANCZOS), dtype=np.float32)
    got = preprocess(tensor, prep)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(got - reference).max() <= 1.0  # PIL rounds to 8 bits; the float path does not


def test_gradients_reach_input_images_while_weights_stay_frozen(encoder):
    images = _images(n=2).requires_grad_(True)
    (encoder.embed_images(images) @ encoder.embed_text(["red circles"]).T).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in encoder.parameters())


def test_tower_subfolders_give_the_same_embeddings(folders, encoder):
    towers = load_encoder(folders / "towers")
    images = _images()
    plain = load_encoder(folders / "plain")
    assert torch.allclose(towers.embed_images(images), plain.embed_images(images), atol=1e-6)
    assert torch.allclose(towers.embed_text(CAPTIONS[:3]), encoder.embed_text(CAPTIONS[:3]), atol=1e-6)


def test_an_image_only_folder_refuses_text(folders, tmp_path):
    only = shutil.copytree(folders / "towers" / "image_encoder", tmp_path / "image_encoder")
    encoder = load_encoder(tmp_path)
    assert encoder.embed_images(_images(n=1)).shape == (1, 16)
    with pytest.raises(UserError, match="no text encoder"):
        encoder.embed_text("red")
    assert load_encoder(only).dim == 16  # the lone CLIPVisionModelWithProjection folder too


def test_missing_tokenizer_names_the_folder_and_the_fix(folders):
    with pytest.raises(UserError, match="no-tokenizer has no tokenizer .*copy the tokenizer files"):
        load_encoder(folders / "no-tokenizer")


def test_bad_folders_give_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_encoder(tmp_path / "missing" / "deeper")
    with pytest.raises(UserError, match="not a CLIP model folder"):
        load_encoder(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UserError, match="holds a bert model"):
        load_encoder(tmp_path)


def test_hub_ids_resolve_from_the_local_cache_only(folders, tmp_path):
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        load_encoder("artdiff-test/not-cached", cache_dir=tmp_path)
    # The cache layout huggingface_hub writes: refs/main names a snapshot folder.
    repo = tmp_path / "models--artdiff-test--tiny-clip"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folders / "custom", repo / "snapshots" / commit)
    cached = load_encoder("artdiff-test/tiny-clip", cache_dir=tmp_path)
    assert cached.preprocessing == CUSTOM and cached.embed_text("red").shape == (1, 16)


def test_mismatched_contract_size_is_a_user_error(folders):
    model = factory.load_clip_model(folders / "plain")
    tokenizer = factory.load_clip_tokenizer(folders / "plain")
    with pytest.raises(UserError, match="makes 64 px inputs"):
        JointEncoder.from_clip_model(model, tokenizer, preprocessing=Preprocessing(size=64))


def test_preprocessing_round_trips_and_validates():
    assert Preprocessing.from_dict(CUSTOM.to_dict()) == CUSTOM
    with pytest.raises(UserError, match="unknown option"):
        Preprocessing.from_dict({"size": 32, "resample": 3})
    with pytest.raises(ValueError, match="always antialiases"):
        Preprocessing(kernel="lanczos", antialias=False)
    with pytest.raises(ValueError, match="float image tensors"):
        preprocess(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), Preprocessing(size=8))


def test_specs_build_configs_with_the_tokenizer_ids():
    config = clip_config(clip_preset("mini"), vocab_size=1000, bos_token_id=998, eos_token_id=999)
    vision = config.vision_config
    assert (vision.image_size, vision.patch_size, config.projection_dim) == (64, 16, 128)
    assert config.text_config.eos_token_id == config.text_config.pad_token_id == 999
    assert ClipSpec.from_dict(clip_preset("tiny").to_dict()) == clip_preset("tiny")
    with pytest.raises(ValueError, match="unknown encoder preset"):
        clip_preset("huge")


def test_loading_prints_no_progress_bars_and_leaves_them_enabled(folders, capfd):
    from transformers.utils import logging as transformers_logging

    transformers_logging.enable_progress_bar()
    load_encoder(folders / "custom")
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()  # other bars (downloads) are the user's to see
