"""Original OpenAI files load with their flags (or convert into a model directory that loads), equal to the source."""

import argparse
import hashlib
import json

import pytest
import torch
from openai_unet_reference import OpenAIUNet, randomize
from safetensors.torch import save_file

from artdiff.errors import UserError
from artdiff.models.pixel.openai_flags import parse_flags
from artdiff.models.pixel.pixel_model import convert_openai_checkpoint, load_pixel_model

GUIDED = ("--image_size 16 --channel_mult 1,2 --num_channels 32 --num_res_blocks 1 --num_head_channels 32 "
          "--attention_resolutions 8 --resblock_updown True --use_scale_shift_norm True --learn_sigma True")
IMPROVED = ("--codebase improved --image_size 32 --num_channels 32 --num_res_blocks 1 --num_heads 2 "
            "--attention_resolutions 8 --use_scale_shift_norm False")


def reference_file(path, text=GUIDED, *, wrap=None, seed=1):
    reference = randomize(OpenAIUNet(parse_flags(text)), seed)
    state = reference.state_dict()
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({wrap: state} if wrap else state, path)
    return reference


def same_function(reference, model, *, atol=2e-5):
    size = model.image_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 999])
    y = torch.tensor([1, 2]) if model.num_classes else None
    with torch.no_grad():
        expected, got = reference(x, t, y), model.unet(x, t, class_labels=y).sample
    return (expected - got).abs().max().item() < atol


def test_converted_directory_records_the_source_and_loads_equal(tmp_path):
    file = tmp_path / "ema_0.9999_010000.pt"
    reference = reference_file(file)
    result = convert_openai_checkpoint(file, flags=GUIDED, out=tmp_path / "model", codebase="guided-diffusion")
    out = tmp_path / "model"
    assert result.out == out and result.parameters == sum(p.numel() for p in reference.parameters())
    assert sorted(p.name for p in out.iterdir()) == ["artdiff.json", "unet"]
    assert sorted(p.name for p in (out / "unet").iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    info = json.loads((out / "artdiff.json").read_text())
    assert info["kind"] == "unconditional" and info["variance"] == "learned_range" and info["image_size"] == 16
    assert info["source"]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert info["source"]["format"] == "guided-diffusion" and info["source"]["flags"]["num_head_channels"] == 32
    model = load_pixel_model(out)
    assert same_function(reference, model)
    assert (model.image_size, model.variance, model.rescale_timesteps, model.num_classes) == (16, "learned_range",
                                                                                              False, None)
    assert model.schedule["beta_schedule"] == "linear" and len(model.hash) == 10


def test_fp16_directory_loads_as_float32(tmp_path):
    file = tmp_path / "model.pt"
    reference = reference_file(file, IMPROVED)
    result = convert_openai_checkpoint(file, flags=IMPROVED, out=tmp_path / "half", dtype="fp16")
    assert result.bytes_after < 0.6 * result.bytes_before
    model = load_pixel_model(tmp_path / "half")
    assert next(model.unet.parameters()).dtype == torch.float32 and same_function(reference, model, atol=5e-2)


@pytest.mark.parametrize("name,wrap", [("model.pt", None), ("model.pth", "ema"), ("model.pt", "state_dict"),
                                       ("model.safetensors", None)])
def test_original_files_load_directly_with_flags(tmp_path, name, wrap):
    reference = reference_file(tmp_path / name, wrap=wrap)
    model = load_pixel_model(tmp_path / name, flags=GUIDED)
    assert same_function(reference, model) and model.info.extra["source"]["file"] == name


def test_changing_a_loaded_original_never_writes_to_its_file(tmp_path):
    reference_file(tmp_path / "model.pt")
    before = (tmp_path / "model.pt").read_bytes()
    model = load_pixel_model(tmp_path / "model.pt", flags=GUIDED)  # zip checkpoints are memory-mapped, privately
    with torch.no_grad():
        for parameter in model.unet.parameters():
            parameter.add_(1.0)
    assert (tmp_path / "model.pt").read_bytes() == before


def test_class_conditional_files_load_or_are_refused_naming_class_cond(tmp_path):
    text = GUIDED + " --class_cond True"
    reference = reference_file(tmp_path / "cond.pt", text)
    model = load_pixel_model(tmp_path / "cond.pt", flags=text)
    assert model.num_classes == 1000 and same_function(reference, model)
    with pytest.raises(UserError, match=r"label_emb.weight .* --class_cond is wrong .*pass --class_cond True"):
        load_pixel_model(tmp_path / "cond.pt", flags=GUIDED)
    reference_file(tmp_path / "uncond.pt")
    with pytest.raises(UserError, match=r"label_emb.weight is missing .* --class_cond is wrong"):
        load_pixel_model(tmp_path / "uncond.pt", flags=text)


@pytest.mark.parametrize("flags,key,flag", [
    (GUIDED.replace("--attention_resolutions 8", "--attention_resolutions 16"), "input_blocks.1.1",
     "attention_resolutions 8"),
    (GUIDED.replace("--use_scale_shift_norm True", "--use_scale_shift_norm False"), "input_blocks.1.0.emb_layers.1",
     "use_scale_shift_norm is wrong"),
    (GUIDED.replace("--resblock_updown True", "--resblock_updown False"), "input_blocks.2.0",
     "resblock_updown is wrong"),
    (GUIDED.replace("--num_channels 32", "--num_channels 64"), "time_embed.0.weight", "--num_channels 32"),
    (GUIDED.replace("--learn_sigma True", "--learn_sigma False"), "out.2.weight", "pass --learn_sigma True"),
    (GUIDED.replace("--num_res_blocks 1", "--num_res_blocks 2"), "input_blocks.3.0", "--num_res_blocks 1"),
    (GUIDED.replace("--channel_mult 1,2", "--channel_mult 1,2,2"), "input_blocks.4", "2 levels, the flags 3"),
    (GUIDED.replace("--channel_mult 1,2", "--channel_mult 1,3"), "input_blocks.3.0", "channel_mult is wrong"),
])
def test_flags_that_do_not_match_the_file_name_the_key_and_the_flag(tmp_path, flags, key, flag):
    reference_file(tmp_path / "model.pt")
    with pytest.raises(UserError) as error:
        load_pixel_model(tmp_path / "model.pt", flags=flags)
    message = str(error.value)
    assert "does not match the flags" in message and key in message and flag in message and "\n" not in message


def test_conv_resampling_files_show_their_res_blocks_per_level(tmp_path):
    reference_file(tmp_path / "model.pt", IMPROVED)
    with pytest.raises(UserError, match=r"num_res_blocks is wrong .*1 res blocks per level, --num_res_blocks 1"):
        load_pixel_model(tmp_path / "model.pt", flags=IMPROVED.replace("--num_res_blocks 1", "--num_res_blocks 3"))


def test_wrong_head_counts_load_but_change_the_outputs(tmp_path):
    # head counts leave no trace in shapes (the docs say so): the file loads and computes something else
    reference = reference_file(tmp_path / "model.pt")
    model = load_pixel_model(tmp_path / "model.pt", flags=GUIDED.replace("--num_head_channels 32", "--num_heads 1"))
    assert not same_function(reference, model, atol=1e-3)


def test_bad_inputs_are_one_line(tmp_path):
    reference_file(tmp_path / "model.pt")
    cases = {
        "does not describe its own architecture": lambda: load_pixel_model(tmp_path / "model.pt"),
        "openai-256-uncond": lambda: load_pixel_model(tmp_path / "model.pt"),
        "does not exist": lambda: load_pixel_model(tmp_path / "missing.pt", flags=GUIDED),
        "unknown flag --image_sz": lambda: load_pixel_model(tmp_path / "model.pt", flags="--image_sz 16"),
    }
    torch.save({"weights": [torch.zeros(2)]}, tmp_path / "list.pt")
    cases["not a model checkpoint"] = lambda: load_pixel_model(tmp_path / "list.pt", flags=GUIDED)
    torch.save([torch.zeros(2)], tmp_path / "seq.pt")
    cases["holds a list, not a state dict"] = lambda: load_pixel_model(tmp_path / "seq.pt", flags=GUIDED)
    torch.save({"w": torch.zeros(2), "args": argparse.Namespace(lr=1)}, tmp_path / "code.pt")
    cases["needs code to load (it calls argparse.Namespace)"] = lambda: load_pixel_model(tmp_path / "code.pt",
                                                                                          flags=GUIDED)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:500])
    cases["not a readable PyTorch checkpoint"] = lambda: load_pixel_model(tmp_path / "cut.pt", flags=GUIDED)
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, str(tmp_path / "sd.safetensors"))
    cases["a latent-diffusion or Stable Diffusion checkpoint"] = lambda: load_pixel_model(tmp_path / "sd.safetensors",
                                                                                          flags=GUIDED)
    extra = {**torch.load(tmp_path / "model.pt"), "optimizer.step": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pt")
    cases["also holds optimizer.step, which no improved/guided"] = lambda: load_pixel_model(tmp_path / "extra.pt",
                                                                                             flags=GUIDED)
    torch.save({"time_embed.0.weight": torch.zeros(2, dtype=torch.int64)}, tmp_path / "ints.pt")
    cases["as torch.int64"] = lambda: load_pixel_model(tmp_path / "ints.pt", flags=GUIDED)
    for expected, call in cases.items():
        with pytest.raises(UserError) as error:
            call()
        assert expected in str(error.value) and "\n" not in str(error.value), expected


def test_model_directories_of_other_kinds_and_with_flags_are_refused(tmp_path):
    file = tmp_path / "model.pt"
    reference = reference_file(file)
    convert_openai_checkpoint(file, flags=GUIDED, out=tmp_path / "run" / "model")
    (tmp_path / "run" / "config.yaml").write_text("seed: 0\n")
    assert same_function(reference, load_pixel_model(tmp_path / "run"))  # a run stands for its model/
    with pytest.raises(UserError, match="drop --flags"):
        load_pixel_model(tmp_path / "run" / "model", flags=GUIDED)
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "artdiff.json").write_text('{"kind": "vae"}')
    with pytest.raises(UserError, match="is a vae model, not an unconditional pixel model"):
        load_pixel_model(tmp_path / "vae")
    (tmp_path / "ldm").mkdir()
    (tmp_path / "ldm" / "artdiff.json").write_text('{"kind": "embedding-ldm"}')
    with pytest.raises(UserError, match="is an embedding-ldm model, not an unconditional pixel model"):
        load_pixel_model(tmp_path / "ldm")


def test_convert_never_replaces_an_existing_output(tmp_path):
    file = tmp_path / "model.pt"
    reference_file(file)
    (tmp_path / "paintings").mkdir()
    (tmp_path / "paintings" / "mine.png").write_bytes(b"keep")
    for out in (tmp_path / "paintings", file):
        with pytest.raises(UserError, match="already exists"):
            convert_openai_checkpoint(file, flags=GUIDED, out=out)
    assert (tmp_path / "paintings" / "mine.png").read_bytes() == b"keep" and file.stat().st_size > 1000
    with pytest.raises(UserError, match="does not match the flags"):
        convert_openai_checkpoint(file, flags=IMPROVED, out=tmp_path / "new")
    assert not (tmp_path / "new").exists() and not (tmp_path / ".new.tmp").exists()
    (tmp_path / "empty").mkdir()
    convert_openai_checkpoint(file, flags=GUIDED, out=tmp_path / "empty")
    assert (tmp_path / "empty" / "artdiff.json").is_file()
