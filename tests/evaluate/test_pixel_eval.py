"""Judging an unconditional pixel model: style shares, FD-judge beside its real-vs-real baseline, and the bars."""

import functools
import json

import pytest
import torch

import artdiff.evaluate.pixel_eval as pixel_eval
from artdiff.cli.main import main
from artdiff.data.synthetic_labels import STYLES
from artdiff.errors import UserError
from artdiff.evaluate.judge_eval import load_checked_judge
from artdiff.evaluate.model_eval import REAL_SEED, real_images
from artdiff.evaluate.pixel_eval import PixelEvalConfig, as_uint8, evaluate_pixel_model, style_shares
from artdiff.train.unconditional import UnconditionalConfig, train_unconditional
from artdiff.utils.assets import SHIPPED_JUDGE

from model_fixtures import tiny_synth


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixel-eval")
    data = tiny_synth(root / "synth", n=8, size=16)
    return train_unconditional(UnconditionalConfig(data=data, out=root / "run", preset="pixel-tiny", batch_size=4,
                                                   max_steps=1, warmup_steps=1, sample_every=0, sample_steps=1,
                                                   progress=False)).model_dir


def test_a_tiny_model_gets_a_complete_deterministic_report(model):
    cfg = PixelEvalConfig(model=str(model), samples=6, steps=2, batch_size=4)
    report = evaluate_pixel_model(cfg).to_json()
    assert list(report["style_shares"]) == list(STYLES) and sum(report["style_shares"].values()) == pytest.approx(1)
    assert report["min_style"]["share"] == min(report["style_shares"].values())
    assert report["fd"]["samples"] == 6 and report["fd"]["real_vs_real"] > 0 and report["images_per_s"] > 0
    assert report["bars"] == {"every style >= 6%": report["min_style"]["share"] >= 0.06,
                              "FD ratio <= 2": report["fd"]["ratio"] <= 2}
    assert report["settings"]["image_size"] == 16 and report["settings"]["real_seed"] == REAL_SEED
    assert report["bars_meaningful"] is False and report["passed"] is None  # 6 samples judge nothing
    again = evaluate_pixel_model(cfg).to_json()
    assert (again["style_shares"], again["fd"]) == (report["style_shares"], report["fd"])  # fixed seeds


def test_real_images_pass_the_bars_and_one_repeated_image_fails_them(model, monkeypatch):
    """A "model" that returns fresh real images is as close to the real set as the baseline; a collapsed one is not.

    (At this 16 px the judge confuses some styles, so only the FD bar is asked of the real images.)
    """
    fresh, _ = real_images(64, 16, seed=REAL_SEED + 7)
    monkeypatch.setattr(pixel_eval, "real_images", functools.cache(real_images))  # both runs' real set drawn once
    monkeypatch.setattr(pixel_eval, "sample_set", lambda model, cfg, plan: (fresh[:cfg.samples], 1.0))
    good = evaluate_pixel_model(PixelEvalConfig(model=str(model), samples=64)).to_json()
    assert 0.5 < good["fd"]["ratio"] < 1.6 and good["bars"]["FD ratio <= 2"] and good["min_style"]["share"] > 0
    assert good["bars_meaningful"] is True and good["passed"] is all(good["bars"].values())
    monkeypatch.setattr(pixel_eval, "sample_set", lambda model, cfg, plan: (fresh[:1].repeat(cfg.samples, 1, 1, 1), 1.0))
    collapsed = evaluate_pixel_model(PixelEvalConfig(model=str(model), samples=64)).to_json()
    assert collapsed["min_style"]["share"] == 0 and max(collapsed["style_shares"].values()) == 1
    assert collapsed["fd"]["ratio"] > 2 and collapsed["bars"] == {"every style >= 6%": False, "FD ratio <= 2": False}


def test_sampling_options_are_resolved_and_checked_as_generate_does(model, capsys):
    with pytest.raises(ValueError, match="--eta changes only ddim and euler_a steps, not ddpm"):
        PixelEvalConfig(model=str(model), sampler="ddpm", eta=0.5)
    with pytest.raises(UserError, match=r"--steps 7 and --respacing ddim5 \(5 steps\) disagree"):
        evaluate_pixel_model(PixelEvalConfig(model=str(model), samples=2, respacing="ddim5", steps=7))
    assert main(["evaluate", "--model", str(model), "--samples", "2", "--respacing", "ddim5", "--steps", "7"]) == 2
    assert "disagree" in capsys.readouterr().err
    settings = evaluate_pixel_model(PixelEvalConfig(model=str(model), samples=2, respacing="2")).to_json()["settings"]
    # the steps --respacing keeps are the ones recorded, and N picks ddpm as in generate
    assert (settings["sampler"], settings["steps"], len(settings["timesteps"]), settings["eta"]) == ("ddpm", 2, 2, None)


def test_style_shares_count_the_judges_labels():
    judge = load_checked_judge(SHIPPED_JUDGE)
    images, labels = real_images(24, 32, seed=REAL_SEED + 3)
    shares = style_shares(judge, images)
    truth = {s: sum(label["style"] == s for label in labels) / 24 for s in STYLES}
    assert sum(abs(shares[s] - truth[s]) for s in STYLES) <= 2 / 24  # the judge is 99% right on styles
    assert torch.equal(as_uint8(images.float() / 255), images)  # samples are judged as the 8-bit images they save as


def test_cli_reports_the_bars_and_refuses_options_of_the_other_kind(model, capsys):
    assert main(["evaluate", "--model", str(model), "--samples", "4", "--steps", "1", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["samples"] == 4 and set(report["bars"]) == {"every style >= 6%", "FD ratio <= 2"}
    assert report["passed"] is None and "the bars are not meaningful at 4 samples" in captured.err
    assert main(["evaluate", "--model", str(model), "--samples", "4", "--steps", "1"]) == 0
    text = capsys.readouterr().out
    assert "rarest style:" in text and "bar every style >= 6%: " in text and "ratio" in text
    assert "the bars are not meaningful at 4 samples: judge them with --samples 64 or more" in text
    assert main(["evaluate", "--model", str(model), "--cfg", "3"]) == 2
    assert "--cfg applies to embedding-ldm models" in capsys.readouterr().err
    assert main(["evaluate", "--samples", "8"]) == 2  # the shipped model is an embedding model
    assert "--samples applies to unconditional pixel models" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(model), "--samples", "1"]) == 2
    assert "--samples must be 2 to 100,000" in capsys.readouterr().err


def test_shipping_is_a_copy_an_fp16_conversion_samples_as_the_model_does(model, tmp_path):
    """The recipe ships `artdiff convert RUN/model assets/artdiff-pixel-mini --dtype fp16`: it loads and samples."""
    from artdiff.generate.pixel_sample import sample_pixels
    from artdiff.models.convert_dtype import convert_model_dtype
    from artdiff.models.pixel.pixel_model import load_pixel_model

    convert_model_dtype(model, tmp_path / "half", "fp16")
    full, half = load_pixel_model(model), load_pixel_model(tmp_path / "half")
    assert half.unet.dtype == torch.float32 and half.info.to_dict() == full.info.to_dict()
    with torch.no_grad():
        a = sample_pixels(full.unet, full.info, seeds=[1, 2], steps=2)
        b = sample_pixels(half.unet, half.info, seeds=[1, 2], steps=2)
    assert (a - b).abs().mean() < 2e-3 and (a - b).abs().max() < 0.1  # fp16 rounding of the weights only
