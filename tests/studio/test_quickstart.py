"""The whole recipe runs end to end at toy scale, and a re-run skips the finished stages."""

import json

import pytest

from artdiff.cli.main import main
from artdiff.models.factory import read_model_info


def test_tiny_quickstart_end_to_end(tmp_path, capsys):
    argv = ["quickstart", "--train", str(tmp_path / "qs"), "--scale", "tiny", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["seconds"]) == {"synth", "synth-heldout", "judge", "encoder", "vae", "embedding-ldm", "pixel"}
    info = read_model_info(tmp_path / "qs" / "ldm" / "model")
    assert info.kind == "embedding-ldm" and info.conditioning["trained_on"] == "image"
    assert set(result["evaluation"]["text_adherence"]) == {"style", "palette", "ground"}
    pixel = read_model_info(tmp_path / "qs" / "pixel" / "model")
    assert pixel.kind == "unconditional" and pixel.recipe["preset"] == "pixel-tiny" and pixel.recipe["max_steps"] == 2
    assert result["pixel_model"] == str(tmp_path / "qs" / "pixel" / "model")
    evaluation = result["pixel_evaluation"]
    assert evaluation["samples"] == 8 and sum(evaluation["style_shares"].values()) == pytest.approx(1)
    assert set(evaluation["bars"]) == {"every style >= 6%", "FD ratio <= 2"}
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["seconds"] == {}  # every stage was already complete


def test_an_interrupted_stage_stops_the_recipe_with_exit_130(tmp_path, monkeypatch, capsys):
    import artdiff.studio.quickstart as quickstart

    stopped = []
    monkeypatch.setattr(quickstart, "train_vae", lambda cfg: stopped.append(cfg.out))  # stops, writes no model
    argv = ["quickstart", "--train", str(tmp_path / "qs"), "--scale", "tiny", "--json"]
    assert main(argv) == 130
    assert stopped and "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "qs" / "ldm").exists() and not (tmp_path / "qs" / "quickstart.json").exists()
