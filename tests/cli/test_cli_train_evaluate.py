"""`artdiff train judge` and `artdiff evaluate judge` from the command line, with one-line errors."""

import json

import pytest

from artdiff.cli.main import main
from artdiff.data.synthetic import SynthConfig, generate_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(out=out, n=24, size=16, seed=3, styles=["mondrian"], palettes=["cool"],
                                 workers=1, progress=False))
    return out


def test_train_then_evaluate_judge(synth, tmp_path, capsys):
    argv = ["train", "judge", "--data", str(synth), "--out", str(tmp_path / "judge"), "--image-size", "16",
            "--epochs", "3", "--batch-size", "8", "--warmup-steps", "1", "--json"]
    assert main(argv) == 0
    trained = json.loads(capsys.readouterr().out)
    assert set(trained["accuracy"]) == {"style", "palette", "ground"} and trained["val_images"] == 2
    assert main(["evaluate", "judge", "--data", str(synth), "--judge", trained["out"], "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["images"] == 24 and 0 <= evaluated["ground"] <= 1 and evaluated["style"] == 1.0


def test_errors_are_one_line(synth, tmp_path, capsys):
    assert main(["evaluate", "judge", "--data", str(tmp_path / "none")]) == 2
    assert "not an artdiff dataset" in capsys.readouterr().err
    assert main(["evaluate", "judge", "--data", str(synth), "--judge", str(tmp_path)]) == 2
    assert "not a judge directory" in capsys.readouterr().err
    assert main(["train", "judge", "--data", str(synth), "--val-fraction", "2"]) == 2
    err = capsys.readouterr().err
    assert "--val-fraction" in err and len(err.strip().splitlines()) == 1


def test_an_interrupted_training_exits_130_saying_how_to_resume(synth, tmp_path, monkeypatch, capsys):
    import artdiff.train.vae as vae
    from artdiff.train.loop import LoopResult

    monkeypatch.setattr(vae, "train_vae", lambda cfg: LoopResult(cfg.out, None, steps=3, interrupted=True))
    assert main(["train", "vae", "--data", str(synth), "--out", str(tmp_path / "run"), "--preset", "tiny"]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
