"""`artdiff train unconditional`: a tiny pixel model trains, saves an unconditional model dir, resumes exactly."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from artdiff.cli.main import main
from artdiff.errors import UserError
from artdiff.models.factory import read_model_info
from artdiff.train.unconditional import (
    UnconditionalConfig,
    UnconditionalTask,
    _initial_model,
    train_unconditional,
)

from model_fixtures import tiny_synth


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_synth(tmp_path_factory.mktemp("uncond") / "synth", n=8, size=16)


def config(data, out, **options):
    options = {"preset": "pixel-tiny", "batch_size": 4, "max_steps": 2, "warmup_steps": 1, "progress": False,
               "sample_steps": 2, **options}
    return UnconditionalConfig(data=data, out=out, **options)


def weights(model_dir):
    return load_file(str(model_dir / "unet" / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    return train_unconditional(config(data, tmp_path_factory.mktemp("run") / "run", flip=True))


def test_training_writes_an_unconditional_model_dir(trained):
    info = read_model_info(trained.model_dir)
    assert (info.kind, info.parameterization, info.conditioning) == ("unconditional", "eps", {"type": "none"})
    assert info.schedule == {"type": "discrete", "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
                             "num_train_timesteps": 1000}
    assert (info.extra["image_size"], info.extra["variance"], info.extra["rescale_timesteps"],
            info.extra["pixel_range"]) == (16, "learned_range", False, [-1, 1])
    assert info.recipe["preset"] == "pixel-tiny" and info.recipe["ema_decay"] == 0.9999
    config_json = json.loads((trained.model_dir / "unet" / "config.json").read_text())
    assert config_json["_class_name"] == "UNet2DModel" and config_json["out_channels"] == 6
    log = [json.loads(line) for line in (trained.run_dir / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2 and log[-1]["vb"] > 0 and log[-1]["mse"] > 0
    assert [p.name for p in trained.samples] == ["step-000002.png"]  # the fixed-seed grid


def test_the_variance_channels_get_gradient_and_flips_come_from_the_seed(data, tmp_path):
    task = UnconditionalTask(config(data, tmp_path / "run", flip=True))
    batch = task.batch([0, 1, 2, 3])
    x0, _, _, _ = task._draws(batch, [1, 2, 3, 4])
    again, _, _, _ = task._draws(batch, [1, 2, 3, 4])
    flipped = [bool(torch.equal(x0[i], batch[i].flip(-1) * 2 - 1)) for i in range(4)]
    assert torch.equal(x0, again) and any(flipped) and not all(flipped)
    task.loss(task.model, batch, [1, 2, 3, 4], step=0).backward()
    assert task.model.conv_out.weight.grad[3:].abs().sum() > 0  # the vb term reaches the variance outputs


def test_fine_tuning_starts_from_the_model_and_keeps_its_fields(trained, data, tmp_path):
    source = tmp_path / "converted"
    shutil.copytree(trained.model_dir, source)
    info = json.loads((source / "artdiff.json").read_text())
    info["source"] = {"format": "improved-diffusion", "file": "x.pt", "sha256": "ab", "flags": {}}
    (source / "artdiff.json").write_text(json.dumps(info))
    task = UnconditionalTask(config(data, tmp_path / "tune", init=str(source)))
    start = weights(source)
    assert all(torch.equal(v, start[k]) for k, v in task.model.state_dict().items())
    result = train_unconditional(config(data, tmp_path / "tune", init=str(source)))
    tuned = read_model_info(result.model_dir)
    assert tuned.extra["source"]["format"] == "improved-diffusion" and tuned.recipe["init"] == str(source)
    assert tuned.recipe["rescale_learned_sigmas"] is False  # resolved from the source's flags, not left None
    assert any(not torch.equal(v, start[k]) for k, v in weights(result.model_dir).items())


def test_resume_with_the_importance_sampler_is_bit_identical(data, tmp_path, monkeypatch):
    # T = 2 (cosine): with seed 2, 3 steps of 8 examples fill the loss-second-moment history (10 losses per t),
    # so the resumed step 4 draws by importance from the restored history. 8 px and no sample grids keep the
    # three short runs cheap; the resumption is what is checked.
    monkeypatch.setattr(UnconditionalTask, "sample", lambda task, model: None)
    options = {"noise_schedule": "cosine", "diffusion_steps": 2, "timestep_sampler": "loss-second-moment",
               "lr_schedule": "constant", "ema_decay": 0.9, "lr": 1e-3, "batch_size": 8, "size": 8, "seed": 2}
    straight = train_unconditional(config(data, tmp_path / "straight", max_steps=4, **options))
    train_unconditional(config(data, tmp_path / "split", max_steps=3, **options))
    resumed = train_unconditional(config(data, tmp_path / "split", max_steps=4, **options))
    assert resumed.steps == 4
    a, b = weights(straight.model_dir), weights(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = load_file(str(tmp_path / "split" / "checkpoints" / "step-3" / "extra.safetensors"))
    assert history["timestep_sampler.counts"].tolist() == [10, 10]  # step 4 sampled by importance


def test_bad_inputs_are_one_line(trained, data, tmp_path, capsys):
    argv = ["train", "unconditional", "--data", str(data), "--out", str(tmp_path / "a"), "--no-progress",
            "--max-steps", "1"]
    assert main([*argv, "--init", str(trained.model_dir), "--size", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--size 32 differs from the model's image size 16" in err and len(err.splitlines()) == 1
    assert main(["train", "unconditional", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "b"),
                 "--preset", "pixel-tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(tmp_path / "none") in err and len(err.splitlines()) == 1
    assert main([*argv, "--preset", "pixel-huge"]) == 2
    assert "--preset 'pixel-huge' is not one of pixel-tiny" in capsys.readouterr().err
    assert main([*argv, "--preset", "pixel-tiny", "--size", "17"]) == 2
    assert "--size 17: this model makes sizes that are multiples of 2 px" in capsys.readouterr().err
    assert main([*argv, "--preset", "openai-256-uncond", "--noise-schedule", "cosine"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--noise-schedule: --preset openai-256-uncond brings its own diffusion" in err and len(err.splitlines()) == 1


def test_a_v_prediction_model_with_min_snr_weights_trains_and_samples(data, tmp_path, capsys):
    from artdiff.generate.pixel_sample import sample_pixels
    from artdiff.models.pixel.pixel_model import load_pixel_model

    result = train_unconditional(config(data, tmp_path / "run", v_prediction=True, snr_gamma=5.0))
    info = read_model_info(result.model_dir)
    assert info.parameterization == "v" and info.recipe["snr_gamma"] == 5.0
    model = load_pixel_model(result.model_dir)
    images = sample_pixels(model.unet, model.info, seeds=[0], steps=2, sampler="ddpm")
    assert images.shape == (1, 3, 16, 16) and bool(torch.isfinite(images).all())
    argv = ["train", "unconditional", "--data", str(data), "--out", str(tmp_path / "bad"), "--preset", "pixel-tiny"]
    assert main([*argv, "--v-prediction", "--predict-xstart"]) == 2
    assert "--predict-xstart and --v-prediction pick different targets" in capsys.readouterr().err
    assert main([*argv, "--snr-gamma", "0"]) == 2
    assert "--snr-gamma must be above 0" in capsys.readouterr().err


def test_bf16_with_gradient_checkpointing_trains(data, tmp_path):
    result = train_unconditional(config(data, tmp_path / "run", max_steps=1, mixed_precision="bf16",
                                        gradient_checkpointing=True, sample_steps=1))
    assert result.skipped_steps == 0 and result.final_loss == result.final_loss
    assert read_model_info(result.model_dir).recipe["mixed_precision"] == "bf16"


def test_the_16gb_recipe_is_a_named_config(data, tmp_path, monkeypatch, capsys):
    import artdiff.train.unconditional as unconditional
    from artdiff.train.loop import LoopResult

    seen = []
    monkeypatch.setattr(unconditional, "train_unconditional",
                        lambda cfg: seen.append(cfg) or LoopResult(cfg.out, None, steps=0))
    argv = ["train", "unconditional", "--data", str(data), "--out", str(tmp_path / "run")]
    assert main([*argv, "--config", "clip-diffusion-art-16gb", "--batch-size", "8"]) == 0
    cfg = seen[0]
    assert (cfg.lr, cfg.batch_size, cfg.mixed_precision, cfg.gradient_checkpointing, cfg.ema_decay,
            cfg.lr_schedule, cfg.weight_decay) == (5e-6, 8, "fp16", True, 0.9999, "constant", 0.0)  # the flag wins
    assert main([*argv, "--config", "clip-diffusion-art-8gb"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no shipped recipe of that name (recipes: clip-diffusion-art-16gb" in err and len(err.splitlines()) == 1


def test_the_16gb_recipe_names_the_converter_of_its_models_codebase():
    from pathlib import Path

    import artdiff
    from artdiff.models.pixel.openai_flags import PRESETS

    recipe = Path(artdiff.__file__).parent / "assets" / "recipes" / "clip-diffusion-art-16gb.yaml"
    text = recipe.read_text()
    assert "--flags lsun-uncond-256" in text and "artdiff convert improved-diffusion" in text
    assert PRESETS["lsun-uncond-256"].codebase == "improved-diffusion" and "convert guided-diffusion" not in text


def test_a_published_architecture_by_name(data, tmp_path):
    with torch.device("meta"):  # the real 256 px network, without allocating its weights
        model, info = _initial_model(config(data, tmp_path / "run", preset="lsun-uncond-256"))
    assert sum(p.numel() for p in model.parameters()) == 113_676_678  # improved-diffusion's LSUN model
    assert (info.extra["image_size"], info.extra["variance"]) == (256, "learned_range")


def test_the_importance_sampler_refuses_several_processes(data, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="one process"):
        UnconditionalTask(config(data, tmp_path / "run", timestep_sampler="loss-second-moment"))


def test_fine_tuning_an_original_openai_file_with_its_flags(data, tmp_path):
    from artdiff.models.pixel.openai_flags import parse_flags
    from artdiff.models.pixel.pixel_model import load_pixel_model
    from models.pixel.openai_unet_reference import OpenAIUNet, randomize

    flags = ("--image_size 16 --channel_mult 1,2 --num_channels 32 --num_res_blocks 1 --num_head_channels 32 "
             "--attention_resolutions 8 --resblock_updown True --use_scale_shift_norm True --learn_sigma True")
    torch.save(randomize(OpenAIUNet(parse_flags(flags)), 1).state_dict(), tmp_path / "original.pt")
    cfg = config(data, tmp_path / "run", init=str(tmp_path / "original.pt"), flags=flags, max_steps=1,
                 sample_steps=1)
    start = load_pixel_model(tmp_path / "original.pt", flags=flags).unet.state_dict()
    task = UnconditionalTask(cfg)
    assert all(torch.equal(v, start[k]) for k, v in task.model.state_dict().items())
    info = read_model_info(train_unconditional(cfg).model_dir)
    assert info.extra["source"]["format"] == "guided-diffusion" and len(info.extra["source"]["sha256"]) == 64
    assert info.recipe["flags"] == flags


@pytest.mark.parametrize("option,flag", [({"noise_schedule": "cosine"}, "--noise-schedule"),
                                         ({"diffusion_steps": 50}, "--diffusion-steps"),
                                         ({"learn_sigma": False}, "--learn-sigma"),
                                         ({"predict_xstart": True}, "--predict-xstart"),
                                         ({"v_prediction": True}, "--v-prediction"),
                                         ({"rescale_timesteps": True}, "--rescale-timesteps")])
@pytest.mark.parametrize("start", [{"preset": "lsun-uncond-256"}, {"init": "some-model"}])
def test_from_scratch_diffusion_options_are_refused_where_the_model_brings_its_own(data, tmp_path, option, flag,
                                                                                   start):
    with pytest.raises(ValueError) as caught:  # check_all's; the CLI prints it as one line
        config(data, tmp_path / "run", **start, **option)
    message = str(caught.value)
    assert message.startswith(f"{flag}: ") and "pixel-* preset" in message and "\n" not in message
    config(data, tmp_path / "run", **option)  # a pixel-* preset from scratch takes them


def test_rescale_learned_sigmas_defaults_to_the_starting_models_flags(trained, data, tmp_path):
    from artdiff.models.model_info import ModelInfo
    from artdiff.train.unconditional import _rescales_learned_sigmas

    source = tmp_path / "converted"
    shutil.copytree(trained.model_dir, source)
    info = json.loads((source / "artdiff.json").read_text())
    info["source"] = {"format": "clip-diffusion-art", "file": "x.pt", "flags": {"rescale_learned_sigmas": True}}
    (source / "artdiff.json").write_text(json.dumps(info))
    assert UnconditionalTask(config(data, tmp_path / "a", init=str(source))).cfg.rescale_learned_sigmas is True
    explicit = UnconditionalTask(config(data, tmp_path / "b", init=str(source), rescale_learned_sigmas=False))
    assert explicit.cfg.rescale_learned_sigmas is False
    assert UnconditionalTask(config(data, tmp_path / "c")).cfg.rescale_learned_sigmas is False  # pixel-* preset
    plain = ModelInfo(kind="unconditional")
    assert _rescales_learned_sigmas(config(data, tmp_path / "d", preset="clip-diffusion-art-256"), plain) is True
    assert _rescales_learned_sigmas(config(data, tmp_path / "d", preset="lsun-uncond-256"), plain) is False
