"""The one-line messages `generate` and `vary` give for a wrong model or an option of another model kind."""

import pytest
import torch
from safetensors.torch import save_file

from artdiff.errors import UserError
from artdiff.generate.any_model import generate
from artdiff.generate.options import GenerateOptions
from artdiff.generate.prompts import parse_prompt
from artdiff.generate.vary import vary
from artdiff.generate.vary_options import VaryOptions
from iv_fixtures import tiny_iv
from sd_fixtures import tiny_sd

from helpers import pattern, save
from model_fixtures import tiny_embedding_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"embedding": tiny_embedding_model(root / "emb", steps=1), "iv": tiny_iv(root / "iv"),
            "sd": tiny_sd(root / "sd")}


def test_generate_on_an_image_variation_model_points_to_vary(models, tmp_path):
    with pytest.raises(UserError, match="artdiff vary IMAGE --model"):
        generate(GenerateOptions(prompts=["x"], model=str(models["iv"]), out=tmp_path / "out"))


@pytest.mark.parametrize("option, value, hint", [
    ("negative", "blurry", "negative weight"), ("init_image", "x.png", "--image PATH:WEIGHT"),
    ("width", 16, "--size"), ("lora", ["x.safetensors"], "LoRA adapts Stable Diffusion"),
    ("clip_skip", 2, "no CLIP layers"),
])
def test_stable_diffusion_options_on_an_embedding_model_say_what_to_do_instead(models, tmp_path, option, value, hint):
    with pytest.raises(UserError) as error:
        generate(GenerateOptions(prompts=["x"], model=str(models["embedding"]), out=tmp_path / "out",
                                 **{option: value}))
    assert hint in str(error.value) and ("negative weight" not in str(error.value)) == (option != "negative")


def test_sd_emphasis_on_an_embedding_model_gets_a_working_hint():
    with pytest.raises(UserError, match=r'Stable Diffusion syntax.*e\.g\. "rothko:1\.3"') as error:
        parse_prompt("(rothko:1.3)")
    assert parse_prompt('rothko:1.3') == parse_prompt(str(error.value).rsplit('"', 2)[1])  # the hint parses
    with pytest.raises(UserError, match="from -100 to 100"):
        parse_prompt("text:1e308")


def test_vary_size_names_size(models, tmp_path):
    source = save(pattern(24, 24), tmp_path / "a.png")
    with pytest.raises(UserError, match="--size 13 is not a positive multiple of"):
        vary(VaryOptions(image=str(source), model=str(models["iv"]), size=13, steps=1, n=1, out=tmp_path / "out"))
    with pytest.raises(UserError, match="--height 13"):
        vary(VaryOptions(image=str(source), model=str(models["iv"]), size=16, height=13, steps=1, n=1,
                         out=tmp_path / "out"))


def test_a_lora_or_embedding_file_as_model_points_to_its_flag(tmp_path):
    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 4)}, str(lora),
              metadata={"ss_sd_model_name": "v1-5-pruned-emaonly.safetensors"})
    with pytest.raises(UserError, match=r"is a LoRA.*--lora .*style\.safetensors.*--model BASE.*v1-5-pruned"):
        generate(GenerateOptions(prompts=["x"], model=str(lora), out=tmp_path / "out"))
    embedding = tmp_path / "wild.safetensors"
    save_file({"emb_params": torch.zeros(2, 32)}, str(embedding))
    with pytest.raises(UserError, match=r"textual-inversion embedding.*--embedding .*wild\.safetensors"):
        generate(GenerateOptions(prompts=["x"], model=str(embedding), out=tmp_path / "out"))
    pt = tmp_path / "a1111.pt"
    torch.save({"string_to_param": {"*": torch.zeros(1, 32)}, "name": "wild"}, pt)
    with pytest.raises(UserError, match=r"textual-inversion embedding.*--embedding"):
        generate(GenerateOptions(prompts=["x"], model=str(pt), out=tmp_path / "out"))
