"""Image variations through artdiff's engine against diffusers' StableDiffusionImageVariationPipeline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    StableDiffusionImageVariationPipeline,
)
from PIL import Image

from artdiff.cli import main as cli_main
from artdiff.errors import UserError
from artdiff.generate.vary import VaryOptions, sample_variations, vary
from artdiff.models.image_variation import image_condition, load_image_variation, pixel_values
from artdiff.models.preprocessing import CLIP_MEAN, CLIP_STD
from iv_fixtures import IMAGE_SIZE, tiny_iv
from sd_fixtures import tiny_sd

from helpers import pattern

SCHEDULERS = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpm++2m": DPMSolverMultistepScheduler}


@pytest.fixture(scope="module")
def iv_dir(tmp_path_factory):
    return tiny_iv(tmp_path_factory.mktemp("iv") / "tiny-iv")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A detailed 96x64 image: shrinking it to 32 px aliases without antialiasing."""
    path = tmp_path_factory.mktemp("img") / "source.png"
    pattern(96, 64, seed=3).save(path)
    return path


def diffusers_images(iv_dir, sampler, image, seeds, steps, cfg):
    pipe = StableDiffusionImageVariationPipeline.from_pretrained(iv_dir, local_files_only=True)
    pipe.scheduler = SCHEDULERS[sampler].from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return pipe(image, num_inference_steps=steps, guidance_scale=cfg, height=16, width=16,
                num_images_per_prompt=len(seeds), generator=generators, output_type="pt").images


@pytest.mark.parametrize("sampler", ["ddim", "euler", "dpm++2m"])
def test_variations_match_the_diffusers_pipeline(iv_dir, source, sampler):
    model = load_image_variation(iv_dir)
    pixels = pixel_values(Image.open(source), model.preprocessing)  # (1, 3, 32, 32)
    seeds, steps, cfg = [3, 4], 6, 3.0
    expected = diffusers_images(iv_dir, sampler, pixels, seeds, steps, cfg)
    with torch.inference_mode():
        condition = image_condition(model.image_encoder, pixels)
    got = sample_variations(model, condition, seeds=seeds, height=16, width=16, steps=steps, cfg_scale=cfg,
                            sampler=sampler)
    assert got.shape == expected.shape == (2, 3, 16, 16)
    assert (got - expected).abs().max() < 1e-3


def test_preprocessing_is_the_training_contract_not_the_feature_extractor(iv_dir, source):
    model = load_image_variation(iv_dir)
    prep = model.preprocessing
    assert (prep.size, prep.kernel, prep.antialias, prep.crop, prep.align_corners) == \
        (IMAGE_SIZE, "bicubic", False, False, True)
    image = Image.open(source).convert("RGB")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]  # (1, 3, 64, 96)
    resized = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=True, antialias=False)
    expected = (resized - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    ours = pixel_values(image, prep)
    assert torch.allclose(ours, expected, atol=1e-6)
    assert torch.allclose(pixel_values(x, prep), expected, atol=1e-6)  # tensors and PIL images alike
    pipe = StableDiffusionImageVariationPipeline.from_pretrained(iv_dir, local_files_only=True)
    pil_path = pipe.feature_extractor(images=image, return_tensors="pt").pixel_values  # antialiased, cropped
    assert pil_path.shape == ours.shape and (pil_path - ours).abs().mean() > 0.05


def test_vary_writes_the_pipeline_images_for_the_contract_pixels_and_seeds_are_batch_independent(iv_dir, source,
                                                                                              tmp_path):
    common = dict(image=str(source), model=str(iv_dir), steps=4, sampler="ddim", size=16, cfg=3.0)
    vary(VaryOptions(**common, n=3, seed=10, batch_size=3, out=tmp_path / "three"))
    result = vary(VaryOptions(**common, n=1, seed=11, out=tmp_path / "one"))
    alone = np.array(Image.open(tmp_path / "one" / "00000-11.png"))
    in_batch = np.array(Image.open(tmp_path / "three" / "00001-11.png"))
    # the same noise and condition; a batch of 3 may round one float differently, so at most one 8-bit level
    assert np.abs(alone.astype(int) - in_batch).max() <= 1 and (alone != in_batch).mean() < 0.01
    model = load_image_variation(iv_dir)
    contract = diffusers_images(iv_dir, "ddim", pixel_values(Image.open(source), model.preprocessing), [11], 4, 3.0)
    assert np.abs(alone / 255 - contract[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-3
    antialiased = diffusers_images(iv_dir, "ddim", Image.open(source).convert("RGB"), [11], 4, 3.0)
    assert (antialiased - contract).abs().max() > 1e-3  # the feature_extractor path is another condition
    sidecar = json.loads((tmp_path / "one" / "00000-11.json").read_text())
    assert sidecar["kind"] == "image-variation" and sidecar["seed"] == 11
    assert sidecar["preprocessing"]["antialias"] is False and sidecar["request"]["image"] == str(source)
    parameters = Image.open(result.paths[0]).text["parameters"]
    assert "Steps: 4, Sampler: DDIM, CFG scale: 3, Seed: 11, Size: 16x16" in parameters
    assert "Variation of: source.png" in parameters


def test_an_artdiff_json_contract_rules_over_the_default(iv_dir, tmp_path):
    folder = shutil.copytree(iv_dir, tmp_path / "iv")
    contract = {"size": 40, "crop": True, "crop_size": IMAGE_SIZE, "antialias": True}
    (folder / "artdiff.json").write_text(json.dumps({"kind": "image-variation", "preprocessing": contract}))
    prep = load_image_variation(folder).preprocessing
    assert (prep.size, prep.crop_size, prep.antialias, prep.align_corners) == (40, IMAGE_SIZE, True, False)
    (folder / "artdiff.json").write_text(json.dumps({"kind": "image-variation", "preprocessing": {"size": 64}}))
    with pytest.raises(UserError, match="takes 32 px"):
        load_image_variation(folder)


@pytest.fixture(scope="module")
def broken(tmp_path_factory, iv_dir):
    root = tmp_path_factory.mktemp("broken")
    (root / "notes.png").write_text("not an image")
    partial = shutil.copytree(iv_dir, root / "no-encoder")
    shutil.rmtree(partial / "image_encoder")
    return {"sd": tiny_sd(root / "sd"), "partial": partial, "text": root / "notes.png", "folder": root}


@pytest.mark.parametrize("change, message", [
    ({"image": "missing.png"}, "does not exist"),
    ({"image": "text"}, "cannot be read"),
    ({"image": "folder"}, "is a folder"),
    ({"model": "sd"}, "text-to-image Stable Diffusion"),
    ({"model": "partial"}, "no image_encoder/ folder"),
    ({"size": 13}, "multiple of"),
])
def test_bad_requests_are_one_line_errors(iv_dir, source, broken, tmp_path, change, message):
    request = {"image": str(source), "model": str(iv_dir), "steps": 2, "n": 1, "size": 16, "out": tmp_path / "out"}
    request.update({k: str(broken.get(v, v)) if k != "size" else v for k, v in change.items()})
    with pytest.raises(UserError, match=message) as error:
        vary(VaryOptions(**request))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_model_is_required():
    with pytest.raises(ValueError, match="--model is required"):
        VaryOptions(image="x.png")


@pytest.fixture
def registered(monkeypatch):
    """`artdiff vary` registered as cli/main.py will list it."""
    monkeypatch.setitem(cli_main.COMMANDS, "vary", ("artdiff.cli.vary", "make variations of an image"))


def test_cli_writes_images_and_prints_json(iv_dir, source, tmp_path, capsys, registered):
    code = cli_main.main(["vary", str(source), "--model", str(iv_dir), "-n", "2", "--steps", "2", "--size", "16",
                          "--sampler", "euler", "--seed", "5", "--out", str(tmp_path / "cli"), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert [p.rsplit("/", 1)[1] for p in printed["images"]] == ["00000-5.png", "00001-6.png"]


def test_cli_error_is_one_line(iv_dir, tmp_path, capsys, registered):
    code = cli_main.main(["vary", str(tmp_path / "missing.png"), "--model", str(iv_dir)])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "does not exist" in error
