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
