"""`artdiff generate` on unconditional pixel models: outputs, per-seed images, sampler defaults and every refusal."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from artdiff.cli.main import main
from artdiff.models.pixel.openai_flags import parse_flags
from artdiff.models.pixel.pixel_model import convert_openai_checkpoint
from artdiff.utils import memory
from artdiff.utils.pngmeta import read_parameters, read_sidecar
from pixel_model_fixtures import tiny_pixel_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_pixel_model(tmp_path_factory.mktemp("models") / "tiny-pixel")


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    return tiny_pixel_model(tmp_path_factory.mktemp("models") / "tiny-classes", num_classes=10)


def generate(model, out, *argv) -> int:
    return main(["generate", "--model", str(model), "--out", str(out), *argv])


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def fails(capsys, model, tmp_path, *argv) -> str:
    assert generate(model, tmp_path / "out", *argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "bug in artdiff" not in error, error
    assert not (tmp_path / "out").exists()
    return error


def test_images_are_numbered_and_carry_infotext_and_a_sidecar(model, tmp_path, capsys):
    out = tmp_path / "out"
    assert generate(model, out, "-n", "3", "--seed", "5", "--respacing", "ddim5") == 0
    assert "(seed 5, ddim, 5 steps)" in capsys.readouterr().out
    paths = sorted(out.glob("*.png"))
    assert [p.name for p in paths] == ["00000-5.png", "00001-6.png", "00002-7.png"]
    text = read_parameters(paths[1])
    assert text.startswith("Steps: 5, Sampler: DDIM, Seed: 6, Size: 16x16, Model hash: ")
    assert "Model: tiny-pixel" in text and "Respacing: ddim5" in text and "CFG scale" not in text
    assert "Skip steps" not in text and "Class label" not in text and "Clip denoised" not in text
    sidecar = read_sidecar(paths[1])
    assert sidecar["kind"] == "unconditional" and sidecar["seed"] == 6 and sidecar["file"] == "00001-6.png"
    assert sidecar["timesteps"] == [0, 20, 40, 60, 80] and sidecar["variance"] == "learned_range"
    assert sidecar["schedule"]["num_train_timesteps"] == 100 and sidecar["class_label"] is None
    request = sidecar["request"]
    assert (request["sampler"], request["steps"], request["eta"], request["respacing"]) == ("ddim", 5, 0.0, "ddim5")
    assert request["seed"] == 5 and request["cfg"] is None
    image = pixels(paths[0])
    assert image.shape == (16, 16, 3) and image.std() > 1
    assert not np.array_equal(image, pixels(paths[2]))


def test_the_image_of_a_seed_does_not_depend_on_n_or_the_batch(model, tmp_path):
    assert generate(model, tmp_path / "three", "-n", "3", "--seed", "10", "--batch-size", "3", "--steps", "3") == 0
    assert generate(model, tmp_path / "one", "-n", "1", "--seed", "11", "--steps", "3") == 0
    together, alone = tmp_path / "three" / "00001-11.png", tmp_path / "one" / "00000-11.png"
    assert np.abs(pixels(together) - pixels(alone)).max() <= 1  # equal up to float rounding


@pytest.mark.parametrize("argv, sampler, steps, label", [
    ([], "ddim", 50, "DDIM"),  # clip-diffusion-art's default (ddim50) with generate's --steps
    (["--steps", "4"], "ddim", 4, "DDIM"),
    (["--respacing", "5"], "ddpm", 5, "DDPM"),
    (["--respacing", "2,3"], "ddpm", 5, "DDPM"),
    (["--respacing", "5", "--sampler", "euler"], "euler", 5, "Euler"),
    (["--respacing", "ddim5", "--steps", "5"], "ddim", 5, "DDIM"),  # an agreeing --steps is accepted
    (["--sampler", "dpm++2m", "--karras", "--steps", "3"], "dpm++2m", 3, "DPM++ 2M"),  # any sampler of the seam
])
def test_respacing_decides_the_sampler_unless_one_is_given(model, tmp_path, argv, sampler, steps, label):
    if steps == 50:
        argv = ["--skip-steps", "47"]  # the default step count, but only three of them run
    assert generate(model, tmp_path / "out", "-n", "1", "--seed", "0", *argv) == 0
    path = next((tmp_path / "out").glob("*.png"))
    assert f"Steps: {steps}, Sampler: {label}," in read_parameters(path)
    request = read_sidecar(path)["request"]
    assert (request["sampler"], request["steps"]) == (sampler, steps)
    assert request["eta"] == (0.0 if sampler == "ddim" else None)


def test_eta_acts_on_ddim_whichever_respacing_and_is_recorded(model, tmp_path, capsys):
    assert generate(model, tmp_path / "a", "-n", "1", "--steps", "3", "--eta", "0.5") == 0  # ddim by default
    assert generate(model, tmp_path / "b", "-n", "1", "--respacing", "3", "--sampler", "ddim", "--eta", "0.3") == 0
    a, b = next((tmp_path / "a").glob("*.png")), next((tmp_path / "b").glob("*.png"))
    assert "Eta DDIM: 0.5" in read_parameters(a) and read_sidecar(a)["request"]["eta"] == 0.5
    assert "Eta DDIM: 0.3" in read_parameters(b) and read_sidecar(b)["eta"] == 0.3
    error = fails(capsys, model, tmp_path, "--sampler", "heun", "--eta", "0.5")
    assert "--eta changes only ddim and euler_a steps, not heun" in error


def test_a_training_run_stands_for_its_model_and_json_names_what_ran(model, tmp_path, capsys):
    run = tmp_path / "my-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("method: unconditional\n")
    shutil.copytree(model, run / "model")
    assert main(["generate", "--model", str(run), "--out", str(tmp_path / "out"), "-n", "1", "--seed", "9",
                 "--respacing", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["sampler"], result["steps"], result["seed"], result["cfg"]) == ("ddpm", 3, 9, None)
    assert result["model"] == str(run / "model") and result["images"][0].endswith("00000-9.png")
    assert "Model: my-run" in read_parameters(result["images"][0])


def test_a_sidecar_request_runs_again_as_a_config(model, tmp_path):
    out = tmp_path / "out"
    assert generate(model, out, "-n", "1", "--seed", "3", "--respacing", "4", "--no-clip-denoised") == 0
    first = next(out.glob("*.png"))
    assert "Clip denoised: False" in read_parameters(first) and "Sampler: DDPM" in read_parameters(first)
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(read_sidecar(first)["request"]))
    assert main(["generate", "--config", str(tmp_path / "again.yaml")]) == 0
    again = out / "00001-3.png"
    assert np.array_equal(pixels(first), pixels(again))


def test_class_labels_are_drawn_per_seed_or_given(classes, tmp_path):
    assert generate(classes, tmp_path / "drawn", "-n", "4", "--seed", "0", "--steps", "2", "--batch-size", "2") == 0
    drawn = [read_sidecar(p)["class_label"] for p in sorted((tmp_path / "drawn").glob("*.png"))]
    assert all(0 <= label < 10 for label in drawn) and len(set(drawn)) > 1
    assert f"Class label: {drawn[1]}" in read_parameters(tmp_path / "drawn" / "00001-1.png")
    assert generate(classes, tmp_path / "again", "-n", "1", "--seed", "1", "--steps", "2") == 0
    assert read_sidecar(tmp_path / "again" / "00000-1.png")["class_label"] == drawn[1]  # the seed decides
    other = (drawn[1] + 1) % 10
    assert generate(classes, tmp_path / "given", "-n", "1", "--seed", "1", "--steps", "2",
                    "--class-label", str(other)) == 0
    given = tmp_path / "given" / "00000-1.png"
    assert f"Class label: {other}" in read_parameters(given) and read_sidecar(given)["request"]["class_label"] == other
    assert not np.array_equal(pixels(given), pixels(tmp_path / "again" / "00000-1.png"))


def test_an_init_image_with_skipped_steps_is_recorded_and_kept(model, tmp_path):
    init = tmp_path / "init.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], (16, 1, 3))).save(init)
    common = ["-n", "1", "--seed", "2", "--respacing", "ddim5"]
    assert generate(model, tmp_path / "skip", *common, "--init-image", str(init), "--skip-steps", "4") == 0
    assert generate(model, tmp_path / "strength", *common, "--init-image", str(init), "--strength", "0.6") == 0
    assert generate(model, tmp_path / "noise", *common) == 0
    skip, strength = next((tmp_path / "skip").glob("*.png")), next((tmp_path / "strength").glob("*.png"))
    assert "Skip steps: 4" in read_parameters(skip) and "Denoising strength" not in read_parameters(skip)
    assert "Skip steps: 2" in read_parameters(strength) and "Denoising strength: 0.6" in read_parameters(strength)
    sidecar = read_sidecar(strength)
    assert sidecar["request"]["skip_steps"] == 2 and len(sidecar["init_image"]["sha256"]) == 64
    target = pixels(init)
    assert np.abs(pixels(skip) - target).mean() < np.abs(pixels(next((tmp_path / "noise").glob("*.png"))) -
                                                         target).mean()


def test_strength_is_recorded_only_when_it_decides_and_must_agree_with_skip_steps(model, tmp_path, capsys):
    init = tmp_path / "init.png"
    Image.new("RGB", (16, 16), (200, 40, 90)).save(init)
    common = ["-n", "1", "--respacing", "ddim4", "--init-image", str(init)]
    # 4 - int(4 * 0.75) = 1: the default strength would skip the same step, but --skip-steps alone decided
    assert generate(model, tmp_path / "skip", *common, "--skip-steps", "1") == 0
    text = read_parameters(next((tmp_path / "skip").glob("*.png")))
    assert "Skip steps: 1" in text and "Denoising strength" not in text
    error = fails(capsys, model, tmp_path, *common, "--skip-steps", "2", "--strength", "0.75")  # the default, given
    assert "--skip-steps 2 and --strength 0.75 (1 of 4 steps skipped) disagree" in error
    assert generate(model, tmp_path / "both", *common, "--skip-steps", "1", "--strength", "0.75") == 0
    assert "Denoising strength: 0.75" in read_parameters(next((tmp_path / "both").glob("*.png")))


@pytest.mark.parametrize("argv, expected", [
    (["--steps", "7", "--respacing", "ddim5"], "--steps 7 and --respacing ddim5 (5 steps) disagree"),
    (["--respacing", "ddim45"], "--respacing 'ddim45'"),
    (["--respacing", "500"], "--respacing '500'"),
    (["--steps", "101"], "--steps 101: this model's schedule has 100 training timesteps"),
    (["--respacing", "ddim5", "--skip-steps", "5"], "--skip-steps 5 leaves none of the 5 steps"),
    (["--class-label", "3"], "is not class-conditional"),
    (["--flags", "lsun-uncond-256"], "--flags describes an original"),
    (["--cfg", "3"], "--cfg is for embedding and Stable Diffusion models"),
    (["--negative", "blurry"], "--negative is for embedding and Stable Diffusion models"),
    (["--width", "32"], "these models make square images: --size"),
    (["--lora", "x.safetensors"], "--lora is for embedding and Stable Diffusion models"),
    (["--size", "15"], "--size 15: this model makes sizes that are multiples of 2 px (it halves the image 1 times), "
                       "e.g. 14 or 16"),  # models.pixel's one size rule
    (["--init-image", "missing.png"], "--init-image missing.png does not exist"),
])
def test_bad_requests_are_one_line_and_write_nothing(model, tmp_path, capsys, argv, expected):
    assert expected in fails(capsys, model, tmp_path, *argv)


def test_a_prompt_or_a_wrong_class_is_one_line(model, classes, tmp_path, capsys):
    assert main(["generate", "a rothko", "--model", str(model), "--out", str(tmp_path / "out")]) == 2
    assert "a text prompt is for embedding and Stable Diffusion models" in capsys.readouterr().err
    assert "this model has 10 classes, 0 to 9" in fails(capsys, classes, tmp_path, "--class-label", "10")
    init = tmp_path / "init.png"
    Image.new("RGB", (16, 16)).save(init)
    error = fails(capsys, model, tmp_path, "--init-image", str(init), "--strength", "0.1", "--respacing", "ddim5")
    assert "--strength 0.1 leaves none of the 5 steps" in error
    error = fails(capsys, model, tmp_path, "--init-image", str(init), "--strength", "0.2", "--skip-steps", "1",
                  "--respacing", "ddim5")
    assert "--skip-steps 1 and --strength 0.2 (4 of 5 steps skipped) disagree" in error


def test_a_request_too_large_for_memory_names_what_fits(model, tmp_path, capsys, monkeypatch):
    need = memory.pixel_sampling_peak_bytes(json.loads((model / "unet" / "config.json").read_text()), batch=1,
                                            height=256, width=256, dtype_bytes=4)
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(need * memory.MARGIN))
    error = fails(capsys, model, tmp_path, "--size", "4096", "--steps", "2")
    assert "an image of 4096x4096 needs" in error and "largest size that fits is 256x256" in error


def test_an_openai_checkpoint_without_flags_asks_for_them(tmp_path, capsys):
    pt = tmp_path / "256x256_diffusion_uncond.pt"
    torch.save({"time_embed.0.weight": torch.zeros(4, 2), "input_blocks.0.0.weight": torch.zeros(2, 3, 3, 3)}, pt)
    error = fails(capsys, pt, tmp_path, "-n", "1")
    assert "--flags" in error and "lsun-uncond-256" in error and "openai-256-uncond" in error


# ---- original improved/guided-diffusion files, straight from --model FILE --flags ------------------------------

GUIDED = ("--image_size 16 --channel_mult 1,2 --num_channels 32 --num_res_blocks 1 --num_head_channels 32 "
          "--attention_resolutions 8 --resblock_updown True --use_scale_shift_norm True --learn_sigma True "
          "--diffusion_steps 100")


def openai_reference():
    """The conversion tests' own re-implementation of OpenAI's UNetModel (tests/models/pixel)."""
    path = Path(__file__).parents[1] / "models" / "pixel" / "openai_unet_reference.py"
    spec = importlib.util.spec_from_file_location("openai_unet_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    reference = openai_reference()
    state = reference.randomize(reference.OpenAIUNet(parse_flags(GUIDED)), 1).state_dict()
    folder = tmp_path_factory.mktemp("original")
    torch.save(state, folder / "tiny_diffusion_uncond.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "tiny_diffusion_uncond.safetensors"))
    return folder


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_an_original_file_with_flags_samples_as_its_converted_folder_does(original, suffix, tmp_path):
    file = original / f"tiny_diffusion_uncond{suffix}"
    argv = ["-n", "2", "--seed", "4", "--respacing", "ddim4"]
    assert generate(file, tmp_path / "direct", "--flags", GUIDED, *argv) == 0
    convert_openai_checkpoint(file, flags=GUIDED, out=tmp_path / "converted")
    assert generate(tmp_path / "converted", tmp_path / "folder", *argv) == 0
    direct, folder = sorted((tmp_path / "direct").glob("*.png")), sorted((tmp_path / "folder").glob("*.png"))
    assert [p.name for p in direct] == ["00000-4.png", "00001-5.png"] == [p.name for p in folder]
    assert all(np.abs(pixels(a) - pixels(b)).max() <= 1 for a, b in zip(direct, folder))
    text = read_parameters(direct[0])
    assert "Model: tiny_diffusion_uncond," in text and "Steps: 4, Sampler: DDIM" in text
    sidecar = read_sidecar(direct[0])
    assert sidecar["request"]["flags"] == GUIDED and sidecar["timesteps"] == [0, 25, 50, 75]
    assert sidecar["variance"] == "learned_range" and sidecar["schedule"]["num_train_timesteps"] == 100


def test_flags_that_do_not_match_the_file_are_one_line(original, tmp_path, capsys):
    wrong = GUIDED.replace("--resblock_updown True", "--resblock_updown False")
    error = fails(capsys, original / "tiny_diffusion_uncond.pt", tmp_path, "--flags", wrong, "-n", "1")
    assert "resblock_updown" in error
    error = fails(capsys, original / "tiny_diffusion_uncond.pt", tmp_path, "--flags", "--no_such_flag 3", "-n", "1")
    assert "no_such_flag" in error
    # a preset describes the published 256 px file, not this one: the first key that differs is named
    error = fails(capsys, original / "tiny_diffusion_uncond.pt", tmp_path, "--flags", "lsun-uncond-256", "-n", "1")
    assert "tiny_diffusion_uncond.pt" in error
