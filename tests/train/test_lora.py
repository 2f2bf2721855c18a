"""LoRA training and --lora generation on a tiny SD: only adapters train, diffusers loads the file, parity, resume."""

import hashlib
import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_kohya
from PIL import Image
from safetensors.torch import load_file, save_file

from artdiff.cli.main import main
from artdiff.errors import UserError
from artdiff.generate.any_model import generate
from artdiff.generate.options import GenerateOptions
from artdiff.generate.prompt_weighting import encode_prompt_pair
from artdiff.generate.sd_sample import sample_sd
from artdiff.models.lora import apply_loras, lora_hash, parse_lora_spec
from artdiff.models.stable_diffusion import load_stable_diffusion
from artdiff.train.checkpoint import checkpoint_dirs
from artdiff.train.loop import run_training
from artdiff.train.lora import LoraTask, LoraTrainConfig, train_lora
from sd_fixtures import tiny_sd

from model_fixtures import tiny_synth

PROMPT, NEGATIVE, SEEDS, STEPS, CFG = "a painting of a lighthouse by the sea", "dark", [3, 4], 5, 7.5


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    return {"sd": tiny_sd(root / "sd"), "data": tiny_synth(root / "synth", n=6), "root": root}


def config(parts, out, **options):
    base = dict(model=str(parts["sd"]), data=parts["data"], out=out, rank=4, max_steps=3, batch_size=2, lr=1e-2,
                warmup_steps=0, checkpoint_every=100, log_every=1, progress=False)
    return LoraTrainConfig(**{**base, **options})


@pytest.fixture(scope="module")
def trained(parts):
    """One run with the text encoder, shared by the generation tests; its task keeps the trained networks."""
    cfg = config(parts, parts["root"] / "run", train_text_encoder=True)
    task = LoraTask(cfg)
    result = run_training(cfg, task)
    return {"task": task, "result": result, "dir": result.model_dir}


def base_weights(network):
    """A network's own weights under their original names (peft's `.base_layer` level removed), LoRA dropped."""
    return {k.replace(".base_layer", ""): v for k, v in network.state_dict().items() if ".lora_" not in k}


def test_only_lora_tensors_train_and_the_base_stays_bit_identical(parts, trained):
    task, fresh = trained["task"], load_stable_diffusion(parts["sd"])
    for name in ("unet", "text_encoder", "vae"):
        after, before = base_weights(getattr(task.sd, name)), getattr(fresh, name).state_dict()
        assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before), name
    names = [n for n, p in task.model.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert any("text_encoder." in n for n in names) and any(".attn2.to_k." in n for n in names)
    saved = load_file(str(trained["dir"] / "pytorch_lora_weights.safetensors"))
    lora_b = [v for k, v in saved.items() if ".lora_B." in k]
    assert lora_b and all(v.abs().max() > 0 for v in lora_b)  # lora_B starts at zero: every one moved
    # a checkpoint holds the adapters alone, never a copy of the frozen base
    checkpoint = load_file(str(checkpoint_dirs(trained["result"].run_dir)[-1] / "model.safetensors"))
    assert len(checkpoint) == len(names) and all(".lora_" in k for k in checkpoint)


def test_the_file_is_diffusers_format_with_artdiff_json(parts, trained):
    model_dir = trained["dir"]
    assert sorted(p.name for p in model_dir.iterdir()) == ["artdiff.json", "pytorch_lora_weights.safetensors"]
    keys = set(load_file(str(model_dir / "pytorch_lora_weights.safetensors")))
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight" in keys
    assert "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0.lora_B.weight" in keys
    assert "text_encoder.text_model.encoder.layers.1.self_attn.out_proj.lora_B.weight" in keys
    assert all(k.startswith(("unet.", "text_encoder.text_model.")) for k in keys)
    info = json.loads((model_dir / "artdiff.json").read_text())
    assert (info["kind"], info["rank"], info["alpha"], info["alpha_in_weights"]) == ("lora", 4, 4.0, False)
    assert info["base_model_hash"] == load_stable_diffusion(parts["sd"]).hash
    assert info["unet_target_modules"] == ["to_q", "to_k", "to_v", "to_out.0"]
    assert info["text_encoder_target_modules"] == ["q_proj", "k_proj", "v_proj", "out_proj"]


def pipeline_images(sd_dir, lora_dir=None, scale=1.0):
    pipe = StableDiffusionPipeline.from_pretrained(sd_dir, local_files_only=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if lora_dir is not None:
        pipe.load_lora_weights(str(lora_dir), adapter_name="style")
        pipe.set_adapters(["style"], [scale])
    generators = [torch.Generator().manual_seed(s) for s in SEEDS]
    return pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=CFG, height=16, width=16,
                num_images_per_prompt=len(SEEDS), generator=generators, output_type="pt").images


def artdiff_images(sd_dir, specs):
    model = load_stable_diffusion(sd_dir)
    apply_loras(model.unet, model.text_encoder, [parse_lora_spec(s) for s in specs], model_name="tiny")
    with torch.inference_mode():
        cond, uncond = encode_prompt_pair(model.text_encoder, model.tokenizer, PROMPT, NEGATIVE)
    return sample_sd(model, cond, uncond, seeds=SEEDS, height=16, width=16, steps=STEPS, cfg_scale=CFG,
                     sampler="ddim")


def png(path):
    return np.array(Image.open(path)).astype(int)


def test_generate_with_lora_matches_the_diffusers_pipeline(parts, trained, tmp_path):
    expected = pipeline_images(parts["sd"], trained["dir"])
    got = artdiff_images(parts["sd"], [f"{trained['dir']}:1.0"])
    assert (got - expected).abs().max() < 1e-3
    assert (expected - pipeline_images(parts["sd"])).abs().max() > 1e-2  # the LoRA really changes the images
    half = pipeline_images(parts["sd"], trained["dir"], scale=0.5)
    assert (artdiff_images(parts["sd"], [f"{trained['dir']}:0.5"]) - half).abs().max() < 1e-3
    # end to end: the PNGs are the pipeline's images up to 8-bit rounding
    generate(GenerateOptions(prompts=[PROMPT], negative=NEGATIVE, model=str(parts["sd"]), steps=STEPS, cfg=CFG,
                             sampler="ddim", size=16, n=2, seed=3, lora=[f"{trained['dir']}:1"], out=tmp_path / "g"))
    for i, seed in enumerate(SEEDS):
        reference = (expected[i].permute(1, 2, 0).numpy() * 255).round()
        assert np.abs(png(tmp_path / "g" / f"{i:05d}-{seed}.png") - reference).max() <= 1  # A1111's NNNNN-SEED


def test_scale_zero_equals_no_lora_and_outputs_record_the_lora(parts, trained, tmp_path, capsys):
    common = dict(prompts=[PROMPT], model=str(parts["sd"]), steps=3, sampler="euler", size=16, n=1, seed=0)
    generate(GenerateOptions(**common, out=tmp_path / "base"))
    generate(GenerateOptions(**common, lora=[f"{trained['dir']}:0"], out=tmp_path / "zero"))
    generate(GenerateOptions(**common, lora=[str(trained["dir"])], out=tmp_path / "one"))
    assert np.array_equal(png(tmp_path / "zero" / "00000-0.png"), png(tmp_path / "base" / "00000-0.png"))
    assert not np.array_equal(png(tmp_path / "one" / "00000-0.png"), png(tmp_path / "base" / "00000-0.png"))
    file = trained["dir"] / "pytorch_lora_weights.safetensors"
    data = file.read_bytes()
    addnet = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]  # A1111's LoRA hash
    assert lora_hash(file) == addnet
    parameters = Image.open(tmp_path / "one" / "00000-0.png").text["parameters"]
    assert parameters.startswith(f"{PROMPT} <lora:run:1>\nSteps: 3")  # the run folder names RUN/model's LoRA
    assert f'Lora hashes: "run: {addnet}"' in parameters
    sidecar = json.loads((tmp_path / "one" / "00000-0.json").read_text())
    lora = sidecar["loras"][0]
    assert (lora["name"], lora["hash"], lora["scale"], lora["file"]) == ("run", addnet, 1.0, str(file))
    assert lora["unet_layers"] == 32 and lora["text_encoder_layers"] == 8  # 4 blocks x 2 attentions x 4; 2 x 4
    assert "note:" not in capsys.readouterr().err  # trained on this very model


def test_kohya_keys_load_through_diffusers_conversion_and_loras_combine(parts, trained, tmp_path):
    saved = load_file(str(trained["dir"] / "pytorch_lora_weights.safetensors"))
    kohya = {k.replace("lora_te1_", "lora_te_"): v for k, v in convert_state_dict_to_kohya(saved).items()}
    assert any(k.startswith("lora_unet_down_blocks_0") for k in kohya) and any(k.endswith(".alpha") for k in kohya)
    save_file(kohya, str(tmp_path / "style.safetensors"))
    got = artdiff_images(parts["sd"], [str(tmp_path / "style.safetensors")])
    whole = artdiff_images(parts["sd"], [str(trained["dir"])])
    assert (got - whole).abs().max() < 1e-4
    # two adapters at once, each at half strength, add up to the same layers as one at full strength
    halves = artdiff_images(parts["sd"], [f"{trained['dir']}:0.5", f"{tmp_path / 'style.safetensors'}:0.5"])
    assert (halves - whole).abs().max() < 1e-4


def test_diffusers_adapter_metadata_sets_alpha_as_in_the_pipeline(parts, trained, tmp_path):
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    saved = load_file(str(trained["dir"] / "pytorch_lora_weights.safetensors"))
    unet_layers = {k.removeprefix("unet."): v for k, v in saved.items() if k.startswith("unet.")}
    targets = sorted({k.split(".lora_")[0] for k in unet_layers})
    StableDiffusionLoraLoaderMixin.save_lora_weights(  # alpha 8 at rank 4: strength 2, known only from metadata
        tmp_path, unet_lora_layers=unet_layers, unet_lora_adapter_metadata={"r": 4, "lora_alpha": 8,
                                                                           "target_modules": targets})
    pipe = StableDiffusionPipeline.from_pretrained(parts["sd"], local_files_only=True)
    pipe.load_lora_weights(str(tmp_path))
    model = load_stable_diffusion(parts["sd"])
    apply_loras(model.unet, model.text_encoder, [parse_lora_spec(str(tmp_path))], model_name="tiny")
    plain = load_stable_diffusion(parts["sd"])
    apply_loras(plain.unet, plain.text_encoder, [parse_lora_spec(f"{trained['dir']}:2")], model_name="tiny")
    x, cond = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.randn(1, 77, 32)
    with torch.no_grad():
        expected = pipe.unet(x, 500, encoder_hidden_states=cond).sample
        got = model.unet(x, 500, encoder_hidden_states=cond).sample
        doubled = plain.unet(x, 500, encoder_hidden_states=cond).sample
    assert (got - expected).abs().max() < 1e-6 and (got - doubled).abs().max() < 1e-5


def test_alpha_is_multiplied_into_the_saved_weights(parts, tmp_path):
    cfg = config(parts, tmp_path / "run", rank=2, alpha=8.0, max_steps=2)
    task = LoraTask(cfg)
    result = run_training(cfg, task)
    assert json.loads((result.model_dir / "artdiff.json").read_text())["alpha_in_weights"] is True
    model = load_stable_diffusion(parts["sd"])
    apply_loras(model.unet, model.text_encoder, [parse_lora_spec(str(result.model_dir))], model_name="tiny")
    x, cond = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.randn(1, 77, 32)
    with torch.no_grad():
        task.model.eval()
        trained_out = task.sd.unet(x, 500, encoder_hidden_states=cond).sample  # peft scaling alpha / rank = 4
        loaded_out = model.unet(x, 500, encoder_hidden_states=cond).sample
        base_out = load_stable_diffusion(parts["sd"]).unet(x, 500, encoder_hidden_states=cond).sample
    assert (trained_out - loaded_out).abs().max() < 1e-5 and (trained_out - base_out).abs().max() > 1e-3


def test_resumed_run_equals_uninterrupted(parts, tmp_path):
    common = dict(train_text_encoder=True, dropout=0.2, caption_dropout=0.3, lr_schedule="constant", warmup_steps=1)
    whole = train_lora(config(parts, tmp_path / "whole", max_steps=4, **common))
    first = train_lora(config(parts, tmp_path / "split", max_steps=2, **common))
    assert first.steps == 2
    resumed = train_lora(config(parts, tmp_path / "split", max_steps=4, **common))
    log = [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert resumed.steps == 4 and log == [1, 2, 3, 4]
    a = load_file(str(whole.model_dir / "pytorch_lora_weights.safetensors"))
    b = load_file(str(resumed.model_dir / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_caption_template_fills_filewords_and_a_captionless_set_needs_one(parts, tmp_path):
    task = LoraTask(config(parts, tmp_path / "run", caption_template="art by wildsmith, [filewords]"))
    assert task.prompt("a red sun", seed=0) == "art by wildsmith, a red sun"
    manifest = parts["data"] / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    bare = tmp_path / "bare"
    bare.mkdir()
    for record in records:
        (bare / record["image"]).parent.mkdir(parents=True, exist_ok=True)
        (bare / record["image"]).write_bytes((parts["data"] / record["image"]).read_bytes())
    (bare / "manifest.jsonl").write_text("".join(json.dumps({**r, "caption": ""}) + "\n" for r in records))
    with pytest.raises(UserError, match="no captions.*--caption-template"):
        LoraTask(config(parts, tmp_path / "run2", data=bare))


def test_cli_trains_and_generates_through_main(parts, trained, tmp_path, capsys):
    code = main(["train", "lora", "--data", str(parts["data"]), "--model", str(parts["sd"]), "--rank", "2",
                 "--alpha", "2", "--size", "16", "--batch-size", "2", "--max-steps", "1", "--out",
                 str(tmp_path / "run"), "--json"])
    assert code == 0
    model_dir = json.loads(capsys.readouterr().out)["model_dir"]
    assert (tmp_path / "run" / "model" / "pytorch_lora_weights.safetensors").is_file() and model_dir.endswith("model")
    file = trained["dir"] / "pytorch_lora_weights.safetensors"
    code = main(["generate", "a cat", "--model", str(parts["sd"]), "--lora", f"{file}:0.7", "--steps", "2", "-n",
                 "1", "--size", "16", "--seed", "0", "--out", str(tmp_path / "images")])
    assert code == 0
    assert json.loads((tmp_path / "images" / "00000-0.json").read_text())["loras"][0]["scale"] == 0.7


def mismatched(trained, tmp_path, change):
    state = load_file(str(trained["dir"] / "pytorch_lora_weights.safetensors"))
    path = tmp_path / "other.safetensors"
    save_file(dict(change(k, v) for k, v in state.items()), str(path))
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("bad-scale", "scale 'abc' is not a number"),
    ("missing", "does not exist"),
    ("other-layers", "layers are not in sd .*made for another model"),
    ("other-shapes", "has 33 input features, sd.s has 32; it was made for another model"),
    ("not-lora", "no LoRA weights"),
    ("sdxl-text-encoder", "not a LoRA layer of a Stable Diffusion"),
])
def test_bad_loras_are_one_line_errors_and_nothing_is_written(parts, trained, tmp_path, case, message):
    other_block = lambda k, v: (k.replace("down_blocks.0.", "down_blocks.7."), v)  # noqa: E731
    wider = lambda k, v: (k, torch.zeros(v.shape[0], v.shape[1] + 1) if "unet." in k and ".lora_A." in k else v)  # noqa: E731
    te2 = lambda k, v: (k.replace("text_encoder.", "text_encoder_2."), v)  # noqa: E731
    spec = {"bad-scale": f"{trained['dir']}:abc", "missing": str(tmp_path / "nope.safetensors:0.5"),
            "other-layers": lambda: mismatched(trained, tmp_path, other_block),
            "other-shapes": lambda: mismatched(trained, tmp_path, wider),
            "not-lora": str(next((parts["sd"] / "unet").glob("*.safetensors"))),
            "sdxl-text-encoder": lambda: mismatched(trained, tmp_path, te2)}[case]
    spec = spec() if callable(spec) else spec
    with pytest.raises(UserError, match=message) as error:
        generate(GenerateOptions(prompts=["a cat"], model=str(parts["sd"]), steps=2, n=1, size=16, lora=[spec],
                                 out=tmp_path / "out"))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, message", [
    ({"rank": 0}, "--rank"), ({"alpha": 0.0}, "--alpha"), ({"dropout": 1.0}, "--dropout"), ({"model": None}, "--model"),
])
def test_bad_options_are_refused(parts, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        config(parts, tmp_path / "run", **options)
