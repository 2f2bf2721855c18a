"""Training options mean what they say: --max-steps wins, absurd numbers and bad --out are one-line errors."""

import errno

import pytest
import yaml

from artdiff.cli.main import main
from artdiff.data.synthetic import SynthConfig, generate_dataset
from artdiff.errors import UserError
from artdiff.train.judge import JudgeTrainConfig, train_judge
from artdiff.train.loop_config import LoopConfig


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(out=out, n=24, size=16, seed=0, styles=["rothko"], palettes=["warm"],
                                 workers=1, progress=False))
    return out


def _judge(synth, out, **options):
    return JudgeTrainConfig(data=synth, out=out, image_size=16, batch_size=4, warmup_steps=1, val_fraction=0.25,
                            progress=False, **options)


def test_max_steps_wins_over_epochs_and_config_records_it(synth, tmp_path):
    result = train_judge(_judge(synth, tmp_path / "j", epochs=50, max_steps=3))
    saved = yaml.safe_load((tmp_path / "j" / "config.yaml").read_text())
    assert saved["max_steps"] == 3 and saved["epochs"] == 50
    assert [line for line in (tmp_path / "j" / "log.jsonl").read_text().splitlines()][-1].startswith('{"step": 3,')
    assert result.out.is_dir()


def test_without_max_steps_the_epochs_decide(synth, tmp_path):
    train_judge(_judge(synth, tmp_path / "j", epochs=2))  # 18 training images, batch 4: 2 * 18 // 4 = 9 steps
    assert yaml.safe_load((tmp_path / "j" / "config.yaml").read_text())["max_steps"] == 9


@pytest.mark.parametrize("option, value", [
    ("seed", 2**64), ("seed", -1), ("lr", float("inf")), ("lr", float("nan")), ("lr", 0.0),
    ("max_steps", 0), ("batch_size", 0), ("weight_decay", float("nan")), ("grad_clip", float("nan")),
    ("warmup_steps", -1), ("log_every", 0), ("sample_every", -1), ("grad_clip", -1.0)])
def test_absurd_loop_numbers_are_refused_where_they_enter(option, value):
    with pytest.raises(ValueError, match="--" + option.replace("_", "-")):
        LoopConfig(**{option: value})


def test_absurd_cli_numbers_are_one_line_errors(synth, tmp_path, capsys):
    for flag, value in [("--seed", str(2**64)), ("--lr", "inf"), ("--max-steps", "0"), ("--image-size", "0")]:
        code = main(["train", "judge", "--data", str(synth), "--out", str(tmp_path / "j"), flag, value])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and flag in err and "bug" not in err, err


def test_out_naming_a_file_is_one_line(synth, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for method in ("judge", "encoder"):
        code = main(["train", method, "--data", str(synth), "--out", str(tmp_path / "file")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "file" in err and "bug" not in err, err
    assert (tmp_path / "file").read_text() == "x"


def test_warmup_longer_than_the_run_warns_in_one_line(synth, tmp_path, capsys):
    train_judge(JudgeTrainConfig(data=synth, out=tmp_path / "j", image_size=16, batch_size=4, max_steps=2,
                                 warmup_steps=10, progress=False))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warmup" in line]
    assert len(warnings) == 1 and "--warmup-steps 10" in warnings[0] and "--max-steps 2" in warnings[0]


def test_disk_full_during_a_checkpoint_names_the_device_and_keeps_the_last_one(synth, tmp_path, monkeypatch):
    import artdiff.train.checkpoint as checkpoint

    cfg = _judge(synth, tmp_path / "j", max_steps=2, checkpoint_every=1)
    train_judge(cfg)
    real = checkpoint.save_file

    def full(tensors, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(UserError, match="no space left on the device") as info:
        train_judge(_judge(synth, tmp_path / "j", max_steps=4, checkpoint_every=1))
    assert str(tmp_path / "j") in str(info.value)
    monkeypatch.setattr(checkpoint, "save_file", real)
    steps = sorted(p.name for p in (tmp_path / "j" / "checkpoints").iterdir())
    assert steps == ["step-1", "step-2"]  # the intact ones stay, no half-written folder is left
