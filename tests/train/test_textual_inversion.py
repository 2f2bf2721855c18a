"""Textual-inversion training on a tiny SD: only the learned rows change, files load everywhere, exact resume."""

import json

import pytest
import torch

from artdiff.errors import UserError
from artdiff.models.stable_diffusion import load_stable_diffusion
from artdiff.models.textual_inversion_files import load_textual_inversion
from artdiff.train.loop import run_training
from artdiff.train.textual_inversion import (
    TextualInversionConfig,
    TextualInversionTask,
    train_textual_inversion,
)
from sd_fixtures import tiny_sd, tiny_sd_pipeline

from model_fixtures import tiny_synth

TOKEN = "<wildsmith>"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ti")
    return {"sd": tiny_sd(root / "sd"), "data": tiny_synth(root / "synth", n=6)}


def config(parts, out, **options):
    base = dict(model=str(parts["sd"]), data=parts["data"], out=out, token=TOKEN, vectors=2,
                init_text="colourful painting", max_steps=3, batch_size=2, checkpoint_every=100, log_every=1,
                progress=False)
    return TextualInversionConfig(**{**base, **options})


def frozen_state(sd):
    """Every weight of the SD model except the token-embedding table."""
    state = {f"unet.{k}": v for k, v in sd.unet.state_dict().items()}
    state |= {f"vae.{k}": v for k, v in sd.vae.state_dict().items()}
    return state | {f"te.{k}": v for k, v in sd.text_encoder.state_dict().items() if "token_embedding" not in k}


def test_training_changes_only_the_new_rows_and_moves_every_vector(parts, tmp_path):
    cfg = config(parts, tmp_path / "run", sample_every=3)
    task = TextualInversionTask(cfg)
    result = run_training(cfg, task)
    fresh = load_stable_diffusion(parts["sd"])
    original = fresh.text_encoder.get_input_embeddings().weight
    table, ids = task.token_table(), task.embedding.ids.tolist()
    assert ids == list(range(len(original), len(original) + 2))  # two added tokens, after the vocabulary
    assert torch.equal(table[: len(original)], original)  # bit-exact: no other row moved
    assert torch.equal(task.embedding.base.weight[ids], task.init)  # the frozen table itself never changed
    trained, untouched = frozen_state(task.sd), frozen_state(fresh)
    assert trained.keys() == untouched.keys() and all(torch.equal(trained[k], untouched[k]) for k in trained)
    assert (task.drift() > 0).all() and not torch.equal(table[ids], task.init)
    assert [p.name for p in result.samples] == ["step-000003.png"]
    prompt = task._prompt("a cat", seed=5)
    assert f"{TOKEN} {TOKEN}_1" in prompt and set(ids) <= set(task.sd.tokenizer(prompt)["input_ids"])


def test_init_text_vectors_follow_a1111(parts, tmp_path):
    task = TextualInversionTask(config(parts, tmp_path / "run", vectors=4, init_text="sea"))
    weight = load_stable_diffusion(parts["sd"]).text_encoder.get_input_embeddings().weight
    ids = task.sd.tokenizer("sea", add_special_tokens=False)["input_ids"]
    assert torch.equal(task.init, weight[[ids[i * len(ids) // 4] for i in range(4)]])
    zeros = TextualInversionTask(config(parts, tmp_path / "z", init_text="", latent_sampling="deterministic"))
    assert torch.equal(zeros.init, torch.zeros(2, 32)) and torch.equal(zeros.latents, zeros.features["latent_mean"])
    assert not torch.equal(task.latents, zeros.latents)  # "once": one posterior draw per image


def test_outputs_load_with_artdiff_and_diffusers(parts, tmp_path):
    result = train_textual_inversion(config(parts, tmp_path / "run", max_steps=2))
    model = result.model_dir
    assert sorted(p.name for p in model.iterdir()) == ["artdiff.json", "learned_embeds.safetensors",
                                                       "wildsmith.pt", "wildsmith.safetensors"]
    loaded = [load_textual_inversion(model / name) for name in ("wildsmith.pt", "wildsmith.safetensors",
                                                                "learned_embeds.safetensors")]
    vectors = loaded[0].vectors
    assert vectors.shape == (2, 32)
    assert [(ti.token, ti.step, ti.override_word, ti.source_format) for ti in loaded] == [
        (TOKEN, 2, None, "a1111-pt"), (TOKEN, 2, None, "a1111-safetensors"), (TOKEN, 2, None, "diffusers")]
    assert all(torch.equal(ti.vectors, vectors) for ti in loaded)
    info = json.loads((model / "artdiff.json").read_text())
    assert (info["kind"], info["token"], info["vectors"], info["template"]) == \
        ("textual-inversion", TOKEN, 2, "style-filewords")
    assert info["base_model_hash"] == load_stable_diffusion(parts["sd"]).hash and info["override_word"] is None
    for name, token in (("learned_embeds.safetensors", None), ("wildsmith.pt", None),
                        ("wildsmith.safetensors", TOKEN)):
        pipe = tiny_sd_pipeline(tmp_path / f"pipe-{name}")
        pipe.load_textual_inversion(str(model / name), token=token)
        ids = pipe.tokenizer.convert_tokens_to_ids([TOKEN, f"{TOKEN}_1"])
        assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[ids].detach(), vectors), name


def test_a_known_word_as_token_is_a_one_line_error(parts, tmp_path):
    # The tiny tokenizer (deterministic since issue 12) holds "cat" whole and splits "sea" into two tokens.
    with pytest.raises(UserError, match="already in the tokenizer's vocabulary.*--override-token") as error:
        TextualInversionTask(config(parts, tmp_path / "run", token="cat"))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="learns 2 vector"):
        TextualInversionTask(config(parts, tmp_path / "run", token=None, override_token="sea", init_text=None,
                                    vectors=3))


def test_override_token_learns_the_words_rows(parts, tmp_path):
    cfg = config(parts, tmp_path / "run", token=None, override_token="sea", init_text=None, vectors=None,
                 max_steps=2)
    task = TextualInversionTask(cfg)
    original = load_stable_diffusion(parts["sd"]).text_encoder.get_input_embeddings().weight
    ids = task.sd.tokenizer("sea", add_special_tokens=False)["input_ids"]
    assert len(ids) == 2 and task.embedding.ids.tolist() == ids and torch.equal(task.init, original[ids])
    result = run_training(cfg, task)
    table = task.token_table()
    assert table.shape == original.shape  # no token added
    others = torch.ones(len(original), dtype=torch.bool)
    others[ids] = False
    assert torch.equal(table[others], original[others]) and (task.drift() > 0).all()
    assert sorted(p.name for p in result.model_dir.iterdir()) == ["artdiff.json", "learned_embeds.safetensors",
                                                                  "sea.safetensors"]
    saved = load_textual_inversion(result.model_dir / "sea.safetensors")
    assert saved.override_word == "sea" and torch.equal(saved.vectors, table[ids])
    assert load_textual_inversion(result.model_dir / "learned_embeds.safetensors").override_word == "sea"


def test_resumed_run_equals_uninterrupted(parts, tmp_path):
    schedule = {"lr_schedule": "0.02:3, 0.004", "latent_sampling": "random"}
    whole = train_textual_inversion(config(parts, tmp_path / "whole", max_steps=4, **schedule))
    first = train_textual_inversion(config(parts, tmp_path / "split", max_steps=2, **schedule))
    assert first.steps == 2
    resumed = train_textual_inversion(config(parts, tmp_path / "split", max_steps=4, **schedule))
    assert resumed.steps == 4
    a = load_textual_inversion(whole.model_dir / "learned_embeds.safetensors").vectors
    b = load_textual_inversion(resumed.model_dir / "learned_embeds.safetensors").vectors
    assert torch.equal(a, b)


def test_the_schedule_string_drives_the_rate_and_the_log_has_drift(parts, tmp_path):
    cfg = config(parts, tmp_path / "run", lr_schedule="0.02:2, 0.004:3", max_steps=10)
    result = train_textual_inversion(cfg)
    assert result.steps == 3  # A1111 stops at the last entry's step
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    # After s steps the optimizer holds the rate of update s + 1.
    assert [r["lr"] for r in records] == pytest.approx([0.02, 0.004, 0.004])
    assert all(r["drift_0"] > 0 and r["drift_1"] > 0 for r in records)


def test_fp16_nan_falls_back_to_fp32(parts, tmp_path, monkeypatch):
    task = TextualInversionTask(config(parts, tmp_path / "run"))
    forward = task.sd.unet.forward

    def nan_under_autocast(*args, **kwargs):
        out = forward(*args, **kwargs)
        if torch.is_autocast_enabled("cpu"):
            out.sample = out.sample * float("nan")
        return out

    monkeypatch.setattr(task.sd.unet, "forward", nan_under_autocast)
    batch, seeds = task.batch([0, 1]), [11, 12]
    with torch.autocast("cpu", dtype=torch.float16):
        loss = task.loss(task.model, batch, seeds, step=7)
        assert torch.isfinite(loss) and loss.dtype == torch.float32 and task.fp32_from_step == 7
        again = task.loss(task.model, batch, seeds, step=8)  # stays in fp32 from then on
    assert torch.equal(loss, again) and torch.equal(loss, task.loss(task.model, batch, seeds, step=9))
    assert task.log_extra()["fp32"] == 1.0
