"""Stable Diffusion single files (.safetensors, .ckpt) in the original layout, against the same weights as a folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPTextConfig

from artdiff.cli.main import main
from artdiff.errors import UserError
from artdiff.generate.any_model import generate
from artdiff.generate.options import GenerateOptions
from artdiff.generate.prompt_weighting import encode_prompt_pair
from artdiff.generate.sd_sample import sample_sd
from artdiff.models import single_file
from artdiff.models.stable_diffusion import load_stable_diffusion
from sd_fixtures import ldm_state_dict, tiny_sd, tiny_sd2

RAN: list[str] = []


def _record(text: str) -> list[str]:
    RAN.append(text)
    return RAN


class Payload:
    """An object whose unpickling would run code (_record), as a malicious .ckpt would run anything."""

    def __reduce__(self):
        return _record, ("unpickled",)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """For SD 1.x and 2.x: the tiny diffusers folder, its weights as .safetensors and as a Lightning .ckpt."""
    root = tmp_path_factory.mktemp("single-file")
    out = {}
    for family, make in (("sd1", tiny_sd), ("sd2", tiny_sd2)):
        folder = make(root / f"tiny-{family}")
        state = ldm_state_dict(folder)
        save_file(state, root / f"{family}.safetensors")
        torch.save({"state_dict": state, "global_step": 875000, "epoch": 3}, root / f"{family}.ckpt")
        out[family] = {"folder": folder, "safetensors": root / f"{family}.safetensors", "ckpt": root / f"{family}.ckpt"}
    return out


def config_only(folder: Path, out: Path) -> Path:
    """The folder's JSON configs without weights or tokenizer vocabulary, like assets/sd-configs."""
    for file in folder.rglob("*.json"):
        if file.parent.name != "tokenizer":
            (out / file.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, out / file.relative_to(folder))
    return out


def sample(model, prompt="a painting of a lighthouse by the sea", negative="dark"):
    with torch.inference_mode():
        cond, uncond = encode_prompt_pair(model.text_encoder, model.tokenizer, prompt, negative)
    return sample_sd(model, cond, uncond, seeds=[3, 4], height=16, width=16, steps=4, cfg_scale=7.5, sampler="ddim")


@pytest.mark.parametrize("family, kind", [("sd1", "safetensors"), ("sd1", "ckpt"), ("sd2", "safetensors"),
                                          ("sd2", "ckpt")])
def test_a_single_file_samples_what_its_diffusers_folder_samples(files, family, kind):
    folder, file = files[family]["folder"], files[family][kind]
    reference = load_stable_diffusion(folder)
    model = load_stable_diffusion(file, config=str(folder))
    assert model.parameterization == ("v" if family == "sd2" else "eps") == reference.parameterization
    assert model.schedule == reference.schedule and model.latent_scale == reference.latent_scale
    # SD 1.x pads with end-of-text, SD 2.x with "!" (id 0)
    pad = 0 if family == "sd2" else reference.tokenizer.eos_token_id
    assert model.tokenizer.pad_token_id == reference.tokenizer.pad_token_id == pad
    for part in ("unet", "vae", "text_encoder"):
        expected, got = getattr(reference, part).state_dict(), getattr(model, part).state_dict()
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[key], got[key]) for key in expected), part
    assert (sample(model) - sample(reference)).abs().max() < 1e-4


def test_configs_without_a_tokenizer_take_it_from_tokenizer_and_old_text_keys_load(files, tmp_path):
    folder = files["sd1"]["folder"]
    state = ldm_state_dict(folder)
    # transformers < 4.22 saved CLIP without the text_model. level; A1111 and artdiff accept those files
    old = {key.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): value
           for key, value in state.items()}
    save_file(old, tmp_path / "old.safetensors")
    model = load_stable_diffusion(tmp_path / "old.safetensors", config=str(config_only(folder, tmp_path / "cfg")),
                                  tokenizer=str(folder))
    assert (sample(model) - sample(load_stable_diffusion(folder))).abs().max() < 1e-4


def test_the_cli_generates_from_a_file_as_from_its_folder(files, tmp_path):
    folder, file = files["sd1"]["folder"], files["sd1"]["safetensors"]
    common = ["generate", "a cat on a chair", "--steps", "3", "-n", "1", "--size", "16", "--sampler", "euler",
              "--seed", "0"]
    assert main([*common, "--model", str(folder), "--out", str(tmp_path / "folder")]) == 0
    assert main([*common, "--model", str(file), "--model-config", str(folder), "--out", str(tmp_path / "file")]) == 0
    [folder_png], [file_png] = sorted((tmp_path / "folder").glob("*.png")), sorted((tmp_path / "file").glob("*.png"))
    assert np.array_equal(np.array(Image.open(folder_png)), np.array(Image.open(file_png)))
    sidecar = json.loads(file_png.with_suffix(".json").read_text())
    assert sidecar["model"] == str(file) and sidecar["request"]["model_config"] == str(folder)


def test_a_pickle_that_needs_code_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "hook": Payload()},
               path)
    with pytest.raises(UserError, match=r"needs code to load .*_record.*convert it to \.safetensors"):
        load_stable_diffusion(path)
    assert RAN == []


@pytest.mark.parametrize("kind", ["safetensors", "ckpt"])
def test_truncated_and_corrupt_files_are_one_line_errors(files, tmp_path, kind, capsys):
    data = files["sd1"][kind].read_bytes()
    truncated = tmp_path / f"cut.{kind}"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_stable_diffusion(truncated)
    garbage = tmp_path / f"garbage.{kind}"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_stable_diffusion(garbage)
    assert main(["generate", "x", "--model", str(truncated), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "truncated or corrupt" in error and "Traceback" not in error


@pytest.mark.parametrize("state, message", [
    ({"weight": torch.zeros(2, 2)}, "not a Stable Diffusion 1.x/2.x checkpoint"),
    ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
      "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": torch.zeros(768)}, "SDXL"),
    ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 9, 3, 3),
      "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(8)}, "inpainting"),
    ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3)}, "no text encoder weights"),
])
def test_unknown_layouts_are_refused(tmp_path, state, message):
    save_file(state, tmp_path / "other.safetensors")
    with pytest.raises(UserError, match=message):
        load_stable_diffusion(tmp_path / "other.safetensors")


def test_a_missing_tokenizer_is_one_line_naming_the_fix(files, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = config_only(files["sd2"]["folder"], tmp_path / "cfg")
    with pytest.raises(UserError, match=r"no CLIP tokenizer is available offline.*--tokenizer DIR"):
        load_stable_diffusion(files["sd2"]["safetensors"], config=str(config))
    code = main(["generate", "x", "--model", str(files["sd2"]["safetensors"]), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "--tokenizer DIR" in error and "stable-diffusion-2-1" in error
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_in_the_hugging_face_cache_is_found_and_given_the_family_pad(files, tmp_path, monkeypatch):
    import huggingface_hub.constants

    # the cache layout huggingface_hub writes: refs/main names the snapshot that holds the files
    repo = tmp_path / "cache" / "models--openai--clip-vit-large-patch14"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copytree(files["sd1"]["folder"] / "tokenizer", repo / "snapshots" / ("0" * 40))  # pads with EOS
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    folder = files["sd2"]["folder"]
    model = load_stable_diffusion(files["sd2"]["safetensors"], config=str(config_only(folder, tmp_path / "cfg")))
    assert model.tokenizer.pad_token == "!"  # SD 2.x's pad, from the shipped sd21 tokenizer config
    assert (sample(model) - sample(load_stable_diffusion(folder))).abs().max() < 1e-4


def test_weights_that_do_not_fit_the_shipped_config_name_the_fix(files):
    # no --model-config: the tiny SD 1.x file is built with the shipped SD 1.5 configs, which it does not fit
    with pytest.raises(UserError, match=r"cannot build the UNet of sd1.safetensors .*sd15.*--model-config"):
        load_stable_diffusion(files["sd1"]["safetensors"], tokenizer=str(files["sd1"]["folder"]))


@pytest.mark.parametrize("predicts_v, parameterization, sample_size", [(True, "v", 12), (False, "eps", 8)])
def test_sd2_without_config_is_768_v_or_512_eps_by_its_unet(files, tmp_path, monkeypatch, predicts_v,
                                                            parameterization, sample_size):
    # stand-ins for the shipped sd21 (v, larger) and sd21-base (eps) folders, at the tiny model's size
    folder = files["sd2"]["folder"]
    for name, prediction, size in (("sd21", "v_prediction", 12), ("sd21-base", "epsilon", 8)):
        config = config_only(folder, tmp_path / name)
        unet_config = json.loads((config / "unet" / "config.json").read_text())
        (config / "unet" / "config.json").write_text(json.dumps({**unet_config, "sample_size": size}))
        scheduler = json.loads((config / "scheduler" / "scheduler_config.json").read_text())
        (config / "scheduler" / "scheduler_config.json").write_text(
            json.dumps({**scheduler, "prediction_type": prediction}))
    monkeypatch.setattr(single_file, "CONFIGS", tmp_path)
    monkeypatch.setattr(single_file, "predicts_v", lambda unet: predicts_v)
    model = load_stable_diffusion(files["sd2"]["safetensors"], tokenizer=str(folder))
    assert model.parameterization == parameterization and model.unet.config.sample_size == sample_size
    assert model.tokenizer.pad_token == "!"


class StubUNet(torch.nn.Module):
    """Returns x + offset: a v-model's output at t=999 sits far below x (A1111's test), an eps-model's near it."""

    config = type("Config", (), {"in_channels": 4, "cross_attention_dim": 8})

    def __init__(self, offset: float):
        super().__init__()
        self.offset = torch.nn.Parameter(torch.tensor(offset))

    def forward(self, x, t, encoder_hidden_states):
        assert t.tolist() == [999] and encoder_hidden_states.shape == (1, 2, 8)
        return type("Out", (), {"sample": x + self.offset})


def test_the_v_prediction_test_reads_the_unet_output():
    assert single_file.predicts_v(StubUNet(-1.5)) and not single_file.predicts_v(StubUNet(0.1))


def test_config_and_tokenizer_options_are_refused_where_they_do_not_apply(files, tmp_path):
    with pytest.raises(UserError, match="single .safetensors/.ckpt files"):
        load_stable_diffusion(files["sd1"]["folder"], config="sd15")
    with pytest.raises(UserError, match="--model-config"):
        load_stable_diffusion(files["sd1"]["safetensors"], config=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="for Stable Diffusion .safetensors/.ckpt files"):
        generate(GenerateOptions(prompts=["x"], tokenizer=str(tmp_path), out=tmp_path / "out"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not a .safetensors/.ckpt checkpoint"):
        generate(GenerateOptions(prompts=["x"], model=str(tmp_path / "notes.txt"), out=tmp_path / "out"))


@pytest.mark.parametrize("name, context, sample_size, head_dim, linear, layers, act, prediction, scheduler, pad", [
    ("sd15", 768, 64, 8, False, 12, "quick_gelu", "epsilon", PNDMScheduler, "<|endoftext|>"),
    ("sd21", 1024, 96, [5, 10, 20, 20], True, 23, "gelu", "v_prediction", DDIMScheduler, "!"),
    ("sd21-base", 1024, 64, [5, 10, 20, 20], True, 23, "gelu", "epsilon", PNDMScheduler, "!"),
])
def test_shipped_configs_describe_the_published_architectures(name, context, sample_size, head_dim, linear, layers,
                                                              act, prediction, scheduler, pad):
    folder = single_file.CONFIGS / name
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"] == ["diffusers", "UNet2DConditionModel"]
    unet = UNet2DConditionModel.load_config(folder / "unet")
    assert (unet["cross_attention_dim"], unet["sample_size"], unet["attention_head_dim"]) == (context, sample_size,
                                                                                             head_dim)
    assert unet["block_out_channels"] == [320, 640, 1280, 1280] and unet.get("use_linear_projection", False) == linear
    assert unet["layers_per_block"] == 2 and unet["in_channels"] == 4
    vae = AutoencoderKL.load_config(folder / "vae")
    assert vae["block_out_channels"] == [128, 256, 512, 512] and vae["scaling_factor"] == 0.18215
    text = CLIPTextConfig.from_pretrained(folder / "text_encoder", local_files_only=True)
    assert (text.hidden_size, text.num_hidden_layers, text.hidden_act, text.vocab_size) == (context, layers, act,
                                                                                           49408)
    config = scheduler.load_config(folder / "scheduler")
    assert config["_class_name"] == scheduler.__name__ and config["prediction_type"] == prediction
    assert (config["beta_start"], config["beta_end"], config["beta_schedule"], config["steps_offset"]) == (
        0.00085, 0.012, "scaled_linear", 1)
    assert single_file.special_tokens(folder) == {"pad_token": pad}
