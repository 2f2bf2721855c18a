"""`artdiff evaluate --model`: every figure is produced on a tiny model; prompt files are validated."""

import json

import pytest

from artdiff.cli.main import main
from artdiff.errors import UserError
from artdiff.evaluate.model_eval import ModelEvalConfig, default_prompts, evaluate_model, read_prompts

from model_fixtures import tiny_embedding_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_embedding_model(tmp_path_factory.mktemp("eval"))


def test_report_has_every_figure(model, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a rothko on black", "labels": {"style": "rothko", "ground": "dark"}}\n'
                       '{"prompt": "grid of primaries", "labels": {"style": "mondrian", "palette": "primary"}}\n')
    report = evaluate_model(ModelEvalConfig(model=str(model), prompts=prompts, samples_per_prompt=2, image_prompts=3,
                                            diversity_samples=3, steps=2)).to_json()
    assert set(report["text_adherence"]) == {"style", "palette", "ground"}
    assert set(report["image_consistency"]) == {"style", "palette", "ground"}
    assert report["fd"]["samples"] == 4 and report["fd"]["real_vs_real"] > 0 and report["fd"]["fd_judge"] > 0
    assert report["diversity"]["generated"] >= 0 and report["diversity"]["real_same_labels"] > 0
    assert report["counts"] == {"text_images": 4, "image_prompt_images": 3, "real": 8} and report["images_per_s"] > 0


def test_default_prompts_cover_every_style_and_ground():
    prompts = default_prompts()
    assert len(prompts) == 16 and {p["labels"]["style"] for p in prompts} >= {"rothko", "ukiyo-e"}


@pytest.mark.parametrize("line,message", [
    ('{"prompt": "x", "labels": {"mood": "calm"}}', "unknown label 'mood'"),
    ('{"prompt": "x", "labels": {"style": "cubism"}}', "unknown style 'cubism'"),
    ('{"labels": {}}', 'needs a "prompt"'),
    ("not json", "not valid JSON"),
])
def test_bad_prompt_files(tmp_path, line, message):
    (tmp_path / "p.jsonl").write_text(line + "\n")
    with pytest.raises(UserError, match=message):
        read_prompts(tmp_path / "p.jsonl")


def test_cli_one_line_error(tmp_path, capsys):
    (tmp_path / "p.jsonl").write_text('{"prompt": "x", "labels": {"style": "cubism"}}\n')
    assert main(["evaluate", "--prompts", str(tmp_path / "p.jsonl"), "--model", str(tmp_path)]) == 2
    assert "unknown style 'cubism'" in capsys.readouterr().err


def test_cli_json(model, capsys):
    argv = ["evaluate", "--model", str(model), "--samples-per-prompt", "1", "--image-prompts", "2", "--steps", "1",
            "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["text_images"] == 16
