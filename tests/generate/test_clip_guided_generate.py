"""`artdiff generate --clip-guidance` on a tiny pixel model and a tiny CLIP: outputs, records, progress, refusals."""

import json

import numpy as np
import pytest
from PIL import Image

from artdiff.cli.main import main
from artdiff.utils.pngmeta import read_parameters, read_sidecar
from model_fixtures import tiny_encoder
from pixel_model_fixtures import tiny_pixel_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_pixel_model(tmp_path_factory.mktemp("models") / "tiny-pixel")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return tiny_encoder(tmp_path_factory.mktemp("enc") / "encoder", ["a red square", "a blue circle"])


def generate(model, encoder, out, *argv) -> int:
    return main(["generate", "--model", str(model), "--out", str(out), "--respacing", "ddim4", "--seed", "3",
                 "--clip-model", str(encoder), *argv])


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_guided_images_record_the_guidance_and_move_away_from_unguided(model, encoder, tmp_path, capsys):
    assert main(["generate", "--model", str(model), "--out", str(tmp_path / "plain"), "--respacing", "ddim4",
                 "--seed", "3", "-n", "1"]) == 0
    assert generate(model, encoder, tmp_path / "guided", "a red square:2", "--clip-guidance", "-n", "1",
                    "--cutn", "4", "--cutn-batches", "2", "--clip-guidance-scale", "50000", "--clamp-max", "0") == 0
    (plain,), (guided,) = sorted((tmp_path / "plain").glob("*.png")), sorted((tmp_path / "guided").glob("*.png"))
    assert np.abs(pixels(plain) - pixels(guided)).max() > 0
    text = read_parameters(guided)
    assert text.startswith("a red square:2\n") and "CLIP guidance scale: 50000" in text and "Cutn: 4" in text
    assert 'CLIP models: "encoder:1"' in text  # quoted, as A1111 quotes values with a colon
    record = read_sidecar(guided)["clip_guidance"]
    assert record["encoders"] == [{"model": str(encoder), "weight": 1.0}]
    assert record["prompts"] == [{"kind": "text", "value": "a red square", "weight": 2.0}]
    assert (record["guided_steps"], record["skipped_steps"]) == (4, 0)
    assert read_sidecar(guided)["request"]["cutn_batches"] == 2


def test_zero_scales_sample_exactly_the_unguided_image(model, encoder, tmp_path):
    assert main(["generate", "--model", str(model), "--out", str(tmp_path / "plain"), "--respacing", "ddim4",
                 "--seed", "3", "-n", "1"]) == 0
    assert generate(model, encoder, tmp_path / "zero", "a red square", "--clip-guidance", "-n", "1", "--cutn", "2",
                    "--clip-guidance-scale", "0", "--tv-scale", "0", "--range-scale", "0") == 0
    (plain,), (zero,) = sorted((tmp_path / "plain").glob("*.png")), sorted((tmp_path / "zero").glob("*.png"))
    assert np.array_equal(pixels(plain), pixels(zero))  # the wrapper clamps x0 as plain sampling does


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_an_image_does_not_depend_on_its_batch(model, encoder, tmp_path, sampler):
    common = ("an image prompt", "--clip-guidance", "--sampler", sampler, "--cutn", "3", "--cutn-batches", "1",
              "--clip-guidance-scale", "20000")
    assert generate(model, encoder, tmp_path / "one", *common, "-n", "2", "--batch-size", "1") == 0
    assert generate(model, encoder, tmp_path / "two", *common, "-n", "2", "--batch-size", "2") == 0
    for a, b in zip(sorted((tmp_path / "one").glob("*.png")), sorted((tmp_path / "two").glob("*.png"))):
        assert np.array_equal(pixels(a), pixels(b)), (a.name, b.name)


def test_an_image_prompt_and_save_progress(model, encoder, tmp_path):
    ref = tmp_path / "ref.png"
    Image.fromarray(np.full((24, 24, 3), (200, 30, 30), np.uint8)).save(ref)
    out = tmp_path / "out"
    assert generate(model, encoder, out, "--clip-guidance", "--image", f"{ref}:1", "-n", "1", "--cutn", "2",
                    "--save-progress") == 0
    (image,) = sorted(out.glob("*.png"))
    frames = sorted((out / f"{image.stem}-progress").glob("step-*.png"))
    assert [f.name for f in frames] == [f"step-{i:03d}.png" for i in range(4)]
    assert np.array_equal(pixels(frames[-1]), pixels(image))  # the last x0 is the image
    with Image.open(out / f"{image.stem}-progress.gif") as gif:
        assert gif.n_frames == 4
    prompt = read_sidecar(image)["clip_guidance"]["prompts"][0]
    assert prompt["kind"] == "image" and len(prompt["sha256"]) == 64


@pytest.mark.parametrize("argv,expected", [
    (("--cutn", "8"), "sets up CLIP guidance; add --clip-guidance"),
    (("--clip-guidance",), "--clip-guidance needs something to steer towards"),
    (("x", "--clip-guidance", "--cutn", "[4]*"), "--cutn"),
    (("x", "--clip-guidance", "--clip-guidance-scale", "lots"), "--clip-guidance-scale"),
    (("x", "--clip-guidance", "--cut-overview", "[12]*7"), "--cut-overview has 7 entries"),
    (("x:1", "y:-1", "--clip-guidance"), "sum to 0"),
    (("x", "--clip-guidance", "--image", "missing.png"), "--image missing.png does not exist"),
    (("x", "--clip-guidance", "--clamp-max", "-1"), "--clamp-max -1.0 must be a number from 0"),
    (("x", "--clip-guidance", "--cutn-batches", "0"), "--cutn-batches 0 must be a whole number from 1 to 64"),
])
def test_bad_guidance_requests_are_one_line_and_write_nothing(model, encoder, tmp_path, capsys, argv, expected):
    assert generate(model, encoder, tmp_path / "out", "-n", "1", *argv) == 2
    error = capsys.readouterr().err
    assert expected in error and error.count("\n") == 1 and "bug in artdiff" not in error, error
    assert not (tmp_path / "out").exists()


def test_an_encoder_weight_must_be_positive(model, encoder, tmp_path, capsys):
    assert main(["generate", "--model", str(model), "--out", str(tmp_path / "out"), "x", "--clip-guidance",
                 "--clip-model", f"{encoder}:0"]) == 2
    assert "the weight must be a number above 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_sidecar_request_replays_the_guided_image(model, encoder, tmp_path):
    out = tmp_path / "out"
    assert generate(model, encoder, out, "a blue circle", "--clip-guidance", "-n", "1", "--cutn", "2") == 0
    (first,) = sorted(out.glob("*.png"))
    request = read_sidecar(first)["request"]
    (tmp_path / "again.yaml").write_text(json.dumps({**request, "out": str(tmp_path / "again")}))
    assert main(["generate", "--config", str(tmp_path / "again.yaml")]) == 0
    (second,) = sorted((tmp_path / "again").glob("*.png"))
    assert np.array_equal(pixels(first), pixels(second))


@pytest.fixture(scope="module")
def latent_model(tmp_path_factory):
    from model_fixtures import tiny_embedding_model

    return tiny_embedding_model(tmp_path_factory.mktemp("ldm"), steps=1)


def test_latent_models_take_clip_guidance_with_and_without_cfg(latent_model, encoder, tmp_path):
    def run(out, *argv):
        return main(["generate", "--model", str(latent_model), "--out", str(tmp_path / out), "a red square",
                     "--seed", "1", "-n", "1", "--steps", "3", "--sampler", "ddim", *argv])

    assert run("cfg") == 0
    assert run("both", "--clip-guidance", "--clip-model", str(encoder), "--cutn", "2", "--clamp-max", "0",
               "--clip-guidance-scale", "1e6") == 0
    assert run("clip-only", "--cfg", "0", "--clip-guidance", "--clip-model", str(encoder), "--cutn", "2") == 0
    (cfg,), (both,) = sorted((tmp_path / "cfg").glob("*.png")), sorted((tmp_path / "both").glob("*.png"))
    assert np.abs(pixels(cfg) - pixels(both)).max() > 0  # the gradient reached the latents through the decoder
    (alone,) = sorted((tmp_path / "clip-only").glob("*.png"))
    record = read_sidecar(alone)["clip_guidance"]
    assert record["guided_steps"] == 3 and record["prompts"][0]["value"] == "a red square"
    assert "CLIP guidance scale: 5000" in read_parameters(alone)


def test_latent_models_save_progress_decoded_and_refuse_stray_guidance_flags(latent_model, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["generate", "--model", str(latent_model), "--out", str(out), "x", "-n", "1", "--steps", "3",
                 "--sampler", "ddim", "--save-progress"]) == 0
    (image,) = sorted(out.glob("*.png"))
    frames = sorted((out / f"{image.stem}-progress").glob("step-*.png"))
    assert len(frames) == 3 and np.array_equal(pixels(frames[-1]), pixels(image))  # decoded pixels, not latents
    assert main(["generate", "--model", str(latent_model), "--out", str(tmp_path / "o"), "x", "--cutn", "4"]) == 2
    assert "--cutn sets up CLIP guidance; add --clip-guidance" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
