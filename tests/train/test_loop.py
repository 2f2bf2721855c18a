"""The shared loop: learning, exact resume after Ctrl-C, accumulation, NaN guard, checkpoints, samples."""

import pytest
import torch
from safetensors.torch import load_file

from artdiff.errors import UserError
from artdiff.train.checkpoint import checkpoint_dirs
from artdiff.train.loop import LoopConfig, data_order, run_training

from toy_task import ToyTask


def config(out, **options):
    base = dict(out=out, max_steps=8, batch_size=8, lr=1e-2, warmup_steps=2, checkpoint_every=3,
                keep_checkpoints=2, ema_decay=0.9, progress=False, log_every=1)
    return LoopConfig(**{**base, **options})


def weights(result):
    return load_file(str(result.model_dir / "model.safetensors"))


def test_loss_goes_down_and_outputs_are_written(tmp_path):
    result = run_training(config(tmp_path / "run", max_steps=60, sample_every=30), ToyTask())
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    first, last = eval(log[0].replace("NaN", "0"))["loss"], result.final_loss  # noqa: S307 - our own JSON numbers
    assert last < first / 2 and result.steps == 60 and not result.interrupted
    assert [p.name for p in result.samples] == ["step-000030.png", "step-000060.png"]
    assert (tmp_path / "run" / "config.yaml").is_file() and (result.model_dir / "model.safetensors").is_file()
    assert [p.name for p in checkpoint_dirs(tmp_path / "run")] == ["step-57", "step-60"]


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    whole = run_training(config(tmp_path / "whole"), ToyTask())
    first = run_training(config(tmp_path / "split"), ToyTask(interrupt_at=4))
    assert first.interrupted and first.steps == 5 and first.model_dir is None
    resumed = run_training(config(tmp_path / "split"), ToyTask())
    assert resumed.steps == 8
    for key, value in weights(whole).items():
        assert torch.equal(value, weights(resumed)[key]), key


def test_accumulation_matches_one_big_batch(tmp_path):
    one = run_training(config(tmp_path / "a", ema_decay=0.0), ToyTask())
    four = run_training(config(tmp_path / "b", ema_decay=0.0, grad_accum=4), ToyTask())
    for key, value in weights(one).items():
        assert torch.allclose(value, weights(four)[key], atol=1e-6), key


def test_a_bad_step_is_skipped_and_counted(tmp_path):
    result = run_training(config(tmp_path / "run"), ToyTask(nan_at={2}))
    assert result.skipped_steps == 1 and result.steps == 8 and torch.isfinite(torch.tensor(result.final_loss))


class NanGradientTask(ToyTask):
    """A finite loss whose gradient is NaN at one call: sqrt(0 * w) is 0, its derivative 0 * inf."""

    def __init__(self, bad_call: int) -> None:
        super().__init__()
        self.bad_call = bad_call

    def loss(self, model, batch, seeds, step_index):
        call = self.calls
        loss = super().loss(model, batch, seeds, step_index)
        if call == self.bad_call:
            loss = loss + torch.sqrt(model[0].weight.sum() * 0)
        return loss


def test_a_step_with_a_non_finite_gradient_but_finite_loss_is_skipped(tmp_path):
    result = run_training(config(tmp_path / "run"), NanGradientTask(bad_call=2))
    assert result.skipped_steps == 1 and result.steps == 8
    assert all(torch.isfinite(value).all() for value in weights(result).values())


def test_divergence_stops_with_the_last_good_checkpoint(tmp_path):
    with pytest.raises(UserError, match="diverged: 3 non-finite steps"):
        run_training(config(tmp_path / "run", nan_patience=3), ToyTask(nan_at=set(range(4, 100))))
    (last,) = checkpoint_dirs(tmp_path / "run")[-1:]
    assert last.name == "step-3"
    assert all(torch.isfinite(v).all() for v in load_file(str(last / "model.safetensors")).values())


def test_resuming_with_other_options_is_refused(tmp_path):
    run_training(config(tmp_path / "run", max_steps=3), ToyTask())
    with pytest.raises(UserError, match="other options \\(lr\\)"):
        run_training(config(tmp_path / "run", max_steps=6, lr=5e-3), ToyTask())


def test_data_order_visits_every_example_once_per_epoch():
    order = data_order(seed=3, size=10, position=0, count=20)
    assert sorted(order[:10]) == list(range(10)) and sorted(order[10:]) == list(range(10))
    assert data_order(seed=3, size=10, position=7, count=5) == order[7:12]


def test_missing_tracker_package_is_a_clear_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(UserError, match="pip install wandb"):
        run_training(config(tmp_path / "run", report_to="wandb"), ToyTask())


def test_bf16_autocast_runs_on_cpu_and_fp16_falls_back_to_fp32(tmp_path):
    seen = {}

    class Recording(ToyTask):
        def loss(self, model, batch, seeds, step_index):
            seen.setdefault(self.precision, torch.is_autocast_enabled("cpu"))
            return super().loss(model, batch, seeds, step_index)

    bf16 = Recording()
    bf16.precision = "bf16"
    result = run_training(config(tmp_path / "bf16", mixed_precision="bf16", max_steps=30), bf16)
    fp16 = Recording()
    fp16.precision = "fp16"
    run_training(config(tmp_path / "fp16", mixed_precision="fp16", max_steps=2), fp16)
    assert seen == {"bf16": True, "fp16": False}  # fp16 autocast is GPU-only
    assert result.final_loss < 0.5


def test_a_preview_that_fails_is_skipped_and_the_model_is_still_saved(tmp_path, capsys):
    from artdiff.errors import NonFiniteError

    class FailingPreview(ToyTask):
        def sample(self, model):
            raise NonFiniteError("sampling the preview")

    result = run_training(config(tmp_path / "run", sample_every=4), FailingPreview())
    assert result.steps == 8 and result.samples == [] and (result.model_dir / "model.safetensors").is_file()
    err = capsys.readouterr().err
    assert err.count("sample grid of step") == 2 and "step 4" in err and "step 8" in err
