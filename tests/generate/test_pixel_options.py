"""generate's pixel-model options: checked where they enter, resolved per model kind, refused where they do nothing."""

import pytest
import torch
from safetensors.torch import save_file

from artdiff.cli.main import main
from artdiff.errors import UserError
from artdiff.generate.any_model import (
    check_no_pixel_options,
    is_openai_unet,
    model_kind,
    with_defaults,
)
from artdiff.generate.options import GenerateOptions, pixel_sampler
from pixel_model_fixtures import tiny_pixel_model


def run_fails(argv, tmp_path, capsys) -> str:
    assert main(["generate", *argv, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "bug in artdiff" not in error, error
    assert not (tmp_path / "out").exists()
    return error


@pytest.mark.parametrize("argv, expected", [
    (["--respacing", "fast"], "--respacing 'fast' must be ddimN"),
    (["--respacing", "ddim"], "--respacing 'ddim' must be ddimN"),
    (["--respacing", "10;10"], "--respacing '10;10' must be"),
    (["--respacing", "-5"], "must be ddimN"),
    (["--respacing", "250", "--eta", "0.5"], "--eta changes only ddim and euler_a steps, not ddpm"),
    (["--respacing", "ddim50", "--karras"], "--karras spaces the sigmas itself"),
    (["--skip-steps", "-1"], "--skip-steps -1 must be a whole number from 0 to 999"),
    (["--skip-steps", "1000"], "--skip-steps"),
    (["--class-label", "-1"], "--class-label -1 must be a whole number"),
    (["--class-label", "1.5"], "--class-label"),
])
def test_bad_pixel_options_are_one_line_before_any_model_loads(argv, expected, tmp_path, capsys):
    assert expected in run_fails(argv, tmp_path, capsys)


def test_the_sampler_follows_respacing_unless_given():
    assert pixel_sampler(None, None) == "ddim"  # on trailing steps from t = T-1 (ddim50 is clip-diffusion-art's)
    assert pixel_sampler(None, "ddim25") == "ddim"
    assert pixel_sampler(None, "250") == "ddpm" and pixel_sampler(None, "10,10,10") == "ddpm"
    assert pixel_sampler("euler", "250") == "euler" and pixel_sampler("ddim", "250") == "ddim"
    # the eta of the implied sampler is checked at once: ddim50 takes one, 250 (ddpm) does not
    assert GenerateOptions(respacing="ddim50", eta=0.5).eta == 0.5
    assert GenerateOptions(respacing=" 10, 10 ,10 ").respacing == " 10, 10 ,10 "  # int() in the original strips


def test_embedding_and_sd_models_keep_their_defaults_and_refuse_pixel_options():
    options = with_defaults(GenerateOptions(), sampler="dpm++2m", steps=50)
    assert (options.sampler, options.steps) == ("dpm++2m", 50)
    assert with_defaults(GenerateOptions(sampler="heun", steps=7), sampler="dpm++2m", steps=50).sampler == "heun"
    with pytest.raises(UserError, match="--eta changes only ddim and euler_a steps, not dpm\\+\\+2m"):
        with_defaults(GenerateOptions(eta=0.5), sampler="dpm++2m", steps=50)
    for field, value, flag in (("respacing", "ddim50", "--respacing"), ("flags", "lsun-uncond-256", "--flags"),
                               ("clip_denoised", False, "--no-clip-denoised"), ("skip_steps", 3, "--skip-steps"),
                               ("class_label", 7, "--class-label")):
        with pytest.raises(UserError, match=f"^{flag} is for unconditional pixel models .* for stable-diffusion"):
            check_no_pixel_options(GenerateOptions(**{field: value}), "stable-diffusion")
    check_no_pixel_options(GenerateOptions(), "embedding-ldm")  # the defaults (a fed-back sidecar) pass


def test_pixel_options_on_the_shipped_embedding_model_are_one_line(tmp_path, capsys):
    error = run_fails(["rothko", "--respacing", "ddim50"], tmp_path, capsys)
    assert "--respacing is for unconditional pixel models" in error and "--steps sets their step count" in error
    error = run_fails(["rothko", "--flags", "lsun-uncond-256"], tmp_path, capsys)
    assert "--flags is for unconditional pixel models" in error
    assert "eta changes only" in run_fails(["rothko", "--eta", "0.5"], tmp_path, capsys)  # dpm++2m still the default


def test_help_lists_the_pixel_options(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    for flag in ("--respacing", "--flags", "--no-clip-denoised", "--skip-steps", "--class-label"):
        assert flag in text
    assert "lsun-uncond-256" in text and "(default: dpm++2m; pixel models: ddim, or ddpm" in text
    # the default spacing is artdiff's trailing one, not clip-diffusion-art's ddim50 (which --respacing gives)
    flat = " ".join(text.split())
    assert "ddim50 is clip-diffusion-art's default" in flat and "trailing from the last timestep" in flat


OPENAI_KEYS = {"time_embed.0.weight": torch.zeros(8, 4), "input_blocks.0.0.weight": torch.zeros(4, 3, 3, 3)}


def test_model_kind_tells_openai_unets_by_their_key_names(tmp_path):
    assert model_kind(str(tiny_pixel_model(tmp_path / "folder"))) == "unconditional"
    torch.save(OPENAI_KEYS, tmp_path / "zip.pt")
    torch.save(OPENAI_KEYS, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)  # cannot be mapped
    torch.save({"state_dict": OPENAI_KEYS}, tmp_path / "wrapped.pt")
    save_file(OPENAI_KEYS, str(tmp_path / "flat.safetensors"))
    for name in ("zip.pt", "legacy.pth", "wrapped.pt", "flat.safetensors"):
        assert model_kind(str(tmp_path / name)) == "unconditional", name
    # Stable Diffusion nests the same UNet under model.diffusion_model.: its checkpoint loader takes it
    sd = {f"model.diffusion_model.{k}": v for k, v in OPENAI_KEYS.items()}
    save_file({**sd, "first_stage_model.decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)},
              str(tmp_path / "sd.safetensors"))
    assert model_kind(str(tmp_path / "sd.safetensors")) == "stable-diffusion"
    assert model_kind(str(tmp_path / "sd.safetensors"), flags="lsun-uncond-256") == "unconditional"  # flags say so
    (tmp_path / "notes.pt").write_bytes(b"not a pickle")
    assert not is_openai_unet(tmp_path / "notes.pt")


def test_every_suffix_and_wrapper_the_loader_takes_is_a_pixel_model(tmp_path):
    # the loader (models/pixel/openai_checkpoint) also reads .ckpt/.bin and these wrappers; generate must agree
    for name in ("g.ckpt", "g.bin"):
        torch.save(OPENAI_KEYS, tmp_path / name)
        assert model_kind(str(tmp_path / name), flags="lsun-uncond-256") == "unconditional", name
        assert model_kind(str(tmp_path / name)) == "unconditional", name
    for wrapper in ("ema_model", "model_state_dict"):
        torch.save({wrapper: OPENAI_KEYS, "step": 3}, tmp_path / f"{wrapper}.pt")
        assert model_kind(str(tmp_path / f"{wrapper}.pt")) == "unconditional", wrapper
    torch.save({f"module.{k}": v for k, v in OPENAI_KEYS.items()}, tmp_path / "ddp.pt")  # the loader strips module.
    assert is_openai_unet(tmp_path / "ddp.pt")
