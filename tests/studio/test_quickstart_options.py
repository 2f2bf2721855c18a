"""quickstart never continues a folder made with other options, nor rewrites its record to claim them."""

import json

from artdiff.cli.main import main


def _stop_at_judge(monkeypatch):
    import artdiff.studio.quickstart as quickstart

    monkeypatch.setattr(quickstart, "train_judge", lambda cfg: None)  # stops without a model, as Ctrl-C does


def test_changed_options_are_refused_naming_them(tmp_path, monkeypatch, capsys):
    _stop_at_judge(monkeypatch)
    argv = ["quickstart", "--train", str(tmp_path / "qs"), "--scale", "tiny", "--json"]
    assert main(argv) == 130
    capsys.readouterr()
    code = main([*argv, "--seed", "1", "--images", "40"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "seed" in err and "images" in err, err
    assert "--train" in err and "bug" not in err
    assert main([*argv, "--no-progress"]) == 130  # progress does not change what is made


def test_a_finished_run_keeps_its_record(tmp_path, capsys):
    folder = tmp_path / "qs"
    folder.mkdir()
    record = {"model": "x", "config": {"out": str(folder), "scale": "tiny", "images": 48, "size": 16,
                                       "judge_epochs": 2, "encoder_steps": 2, "vae_steps": 2, "ldm_steps": 2,
                                       "seed": 0, "progress": True}}
    (folder / "quickstart.json").write_text(json.dumps(record))
    code = main(["quickstart", "--train", str(folder), "--scale", "mini", "--images", "64"])
    assert code == 2 and "images" in capsys.readouterr().err
    assert json.loads((folder / "quickstart.json").read_text()) == record


def test_a_run_recorded_before_the_pixel_stage_continues(tmp_path, monkeypatch, capsys):
    """Options newer than a folder's record (pixel_steps) shape stages it has not run yet: it continues."""
    _stop_at_judge(monkeypatch)
    folder = tmp_path / "qs"
    folder.mkdir()
    older = {"scale": "tiny", "images": 48, "size": 16, "judge_epochs": 2, "encoder_steps": 2, "vae_steps": 2,
             "ldm_steps": 2, "seed": 0}
    (folder / "quickstart-options.json").write_text(json.dumps({"options": older}))
    argv = ["quickstart", "--train", str(folder), "--scale", "tiny", "--json"]
    assert main(argv) == 130, capsys.readouterr().err  # stopped at the judge, not refused
    recorded = json.loads((folder / "quickstart-options.json").read_text())["options"]
    assert recorded["pixel_steps"] == 2 and "pixel_samples" not in recorded  # the judged count is free to change
    assert main([*argv, "--pixel-samples", "4"]) == 130


def _fake_stages(monkeypatch, calls):
    """Every stage writes only the file that marks it done; the pixel stage and its evaluation are recorded."""
    from types import SimpleNamespace

    import artdiff.studio.quickstart as quickstart

    def done(*parts):
        def work(cfg):
            path = cfg.out.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
        return work

    monkeypatch.setattr(quickstart, "generate_dataset", done("manifest.jsonl"))
    monkeypatch.setattr(quickstart, "train_judge", done("model", "judge.safetensors"))
    monkeypatch.setattr(quickstart, "train_encoder", done("artdiff.json"))
    monkeypatch.setattr(quickstart, "train_vae", done("model", "artdiff.json"))
    monkeypatch.setattr(quickstart, "train_embedding_ldm", done("model", "artdiff.json"))
    monkeypatch.setattr(quickstart, "evaluate_model", lambda cfg: SimpleNamespace(to_json=lambda: {"ok": 1}))
    monkeypatch.setattr(quickstart, "train_unconditional", lambda cfg: calls.append("train") or
                        done("model", "artdiff.json")(cfg))
    monkeypatch.setattr(quickstart, "evaluate_pixel_model", lambda cfg: calls.append("evaluate") or
                        SimpleNamespace(to_json=lambda: {"bars": {"FD ratio <= 2": True}}))


def test_pixel_steps_0_skips_the_pixel_stage_and_its_evaluation(tmp_path, monkeypatch, capsys):
    calls = []
    _fake_stages(monkeypatch, calls)
    argv = ["quickstart", "--train", str(tmp_path / "qs"), "--no-progress"]
    assert main([*argv, "--pixel-steps", "0"]) == 0
    assert calls == [] and "pixel model: skipped (--pixel-steps 0)" in capsys.readouterr().out
    record = json.loads((tmp_path / "qs" / "quickstart.json").read_text())
    assert record["pixel_model"] is None and record["pixel_evaluation"] == {}
    assert main(argv) == 0  # the folder may gain the stage later: nothing else it made changes
    assert calls == ["train", "evaluate"] and "FD ratio <= 2 holds" in capsys.readouterr().out


def test_pixel_steps_help_says_what_the_default_costs(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["quickstart", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0 skips the pixel stage and its evaluation" in text
    assert "about 2 h on 2 CPU cores (bf16, ~1.1 s per step)" in text and "minutes on a GPU" in text
