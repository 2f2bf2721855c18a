"""A damaged latest checkpoint is skipped, named, and the run resumes exactly from the newest intact one."""

import signal

import pytest
import torch
from safetensors.torch import load_file

from artdiff.errors import UserError
from artdiff.train import encoder as encoder_training
from artdiff.train.checkpoint import checkpoint_dirs
from artdiff.train.loop import LoopConfig, run_training

from toy_task import ToyTask

DAMAGE = {
    "truncated model": ("model.safetensors", lambda data: data[: len(data) // 2]),
    "truncated EMA": ("ema.safetensors", lambda data: data[:20]),
    "truncated optimizer": ("optimizer.pt", lambda data: data[: len(data) // 3]),
    "empty state.json": ("state.json", lambda data: b""),
}


def config(out, **options):
    base = dict(out=out, max_steps=8, batch_size=8, lr=1e-2, warmup_steps=2, checkpoint_every=3,
                keep_checkpoints=2, ema_decay=0.9, progress=False, log_every=1)
    return LoopConfig(**{**base, **options})


def damage(folder, kind):
    name, cut = DAMAGE[kind]
    path = folder / name
    path.write_bytes(cut(path.read_bytes()))


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    result = run_training(config(tmp_path_factory.mktemp("whole") / "run"), ToyTask())
    return load_file(str(result.model_dir / "model.safetensors"))


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_the_loop_falls_back_to_the_newest_intact_checkpoint(whole, tmp_path, kind, capsys):
    assert run_training(config(tmp_path / "run"), ToyTask(interrupt_at=4)).interrupted
    assert [p.name for p in checkpoint_dirs(tmp_path / "run")] == ["step-3", "step-5"]
    damage(tmp_path / "run" / "checkpoints" / "step-5", kind)
    resumed = run_training(config(tmp_path / "run"), ToyTask())
    err = capsys.readouterr().err
    assert "skipped damaged checkpoint" in err and "step-5" in err and DAMAGE[kind][0] in err
    assert resumed.steps == 8
    got = load_file(str(resumed.model_dir / "model.safetensors"))
    assert all(torch.equal(value, got[key]) for key, value in whole.items())  # exact, from step 3
    assert [p.name for p in checkpoint_dirs(tmp_path / "run")] == ["step-6", "step-8"]


def test_every_checkpoint_damaged_is_one_line_with_the_fix(tmp_path):
    run_training(config(tmp_path / "run"), ToyTask(interrupt_at=4))
    for folder in checkpoint_dirs(tmp_path / "run"):
        damage(folder, "empty state.json")
    with pytest.raises(UserError, match="every checkpoint in .* is damaged .*delete .*checkpoints to start over"):
        run_training(config(tmp_path / "run"), ToyTask())


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from artdiff.data.synthetic import SynthConfig, generate_dataset

    out = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(out=out, n=24, size=32, seed=0, workers=1, progress=False))
    return out


def _encoder(synth, out):
    return encoder_training.EncoderTrainConfig(
        data=synth, out=out, preset="tiny", loss="clip", max_steps=6, batch_size=8, warmup_steps=1, lr=3e-3,
        vocab_size=600, val_fraction=0.25, log_every=1, checkpoint_every=2, progress=False)


@pytest.mark.parametrize("kind", ["truncated model", "truncated optimizer", "empty state.json"])
def test_the_encoder_falls_back_in_its_partial_folder(synth, tmp_path, monkeypatch, kind, capsys):
    whole = encoder_training.train_encoder(_encoder(synth, tmp_path / "whole"))
    real, calls = encoder_training.contrastive_loss, []

    def loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(encoder_training, "contrastive_loss", loss)
    assert encoder_training.train_encoder(_encoder(synth, tmp_path / "enc")).interrupted
    monkeypatch.undo()
    partial = tmp_path / "enc.partial"
    assert [p.name for p in checkpoint_dirs(partial)] == ["step-4", "step-5"]
    damage(partial / "checkpoints" / "step-5", kind)
    resumed = encoder_training.train_encoder(_encoder(synth, tmp_path / "enc"))
    err = capsys.readouterr().err
    assert "skipped damaged checkpoint" in err and "step-5" in err
    assert resumed.steps == 6 and [line["loss"] for line in resumed.log] == [line["loss"] for line in whole.log]
    expected, got = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "enc" / "model.safetensors")
    assert all(torch.equal(expected[k], got[k]) for k in expected)
