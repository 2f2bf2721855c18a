"""Encoder training on a tiny synthetic set: the loss falls, the folder loads in artdiff and transformers."""

import json
import math
import shutil
import signal

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPModel, CLIPTokenizer

from artdiff.config import from_dict, load_yaml, to_dict
from artdiff.core.contrastive import cloob_loss, info_loob
from artdiff.data.synthetic import SynthConfig, generate_dataset
from artdiff.errors import UserError
from artdiff.models import factory
from artdiff.models.encoders import JointEncoder, load_encoder
from artdiff.models.preprocessing import Preprocessing
from artdiff.models.specs import build_clip_model, clip_preset
from artdiff.models.tokenizer import build_tokenizer
from artdiff.train import encoder as encoder_training
from artdiff.train.encoder import EncoderTrainConfig, contrastive_loss, lr_factor, train_encoder


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(out=out, n=32, size=32, seed=0, workers=1, progress=False))
    return out


def tiny(synth, out, **kwargs):
    settings = {"data": synth, "out": out, "preset": "tiny", "max_steps": 20, "batch_size": 16, "warmup_steps": 2,
                "lr": 3e-3, "hopfield_start": 5, "vocab_size": 600, "val_fraction": 0.25, "log_every": 5,
                "progress": False}
    return EncoderTrainConfig(**{**settings, **kwargs})


@pytest.mark.parametrize("loss", ["clip", "cloob"])
def test_training_lowers_the_loss_below_collapse_and_saves_a_clip_folder(synth, tmp_path, loss):
    cfg = tiny(synth, tmp_path / "enc", loss=loss, lr=None)  # each loss's default rate
    result = train_encoder(cfg)
    # Embeddings all alike (collapse) score log(B) with InfoNCE and log(B - 1) with InfoLOOB: learning goes below.
    collapsed = math.log(16 if loss == "clip" else 15)
    assert result.final_loss < min(result.first_loss, collapsed - 0.2)
    assert (result.train_pairs, result.val_pairs, result.steps) == (24, 8, 20)
    assert result.val_loss is not None and math.isfinite(result.val_loss)
    log = [json.loads(line) for line in (tmp_path / "enc" / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log] == [5, 10, 15, 20] and log == result.log
    saved = from_dict(EncoderTrainConfig, load_yaml(tmp_path / "enc" / "train_config.yaml"))
    assert saved == cfg
    info = json.loads((tmp_path / "enc" / "artdiff.json").read_text())
    assert info["kind"] == "joint-encoder" and info["objective"] == loss and info["preset"] == "tiny"
    assert Preprocessing.from_dict(info["preprocessing"]) == Preprocessing(size=32)
    assert not list(tmp_path.glob(".enc*")), "no staging folder is left behind"


def test_the_folder_loads_in_transformers_and_matches_load_encoder(synth, tmp_path):
    train_encoder(tiny(synth, tmp_path / "enc", loss="cloob", max_steps=3))
    encoder = load_encoder(tmp_path / "enc")
    model = CLIPModel.from_pretrained(tmp_path / "enc", local_files_only=True).eval()
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path / "enc", local_files_only=True)
    texts = ["a warm rothko colour field painting on a dark ground", "drip painting, icy blues, white ground"]
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        text = model.text_projection(model.text_model(**tokens).pooler_output)
    assert torch.allclose(encoder.embed_text(texts), F.normalize(text, dim=-1), atol=1e-5)
    # CLOOB's fixed temperature is stored as CLIP's logit scale, so the model's own logits use it.
    assert model.logit_scale.exp().item() == pytest.approx(30.0)
    assert encoder.embed_images(torch.rand(2, 3, 32, 32)).shape == (2, 16)


def test_clip_learns_its_temperature_and_training_is_reproducible(synth, tmp_path):
    first = train_encoder(tiny(synth, tmp_path / "a", loss="clip", max_steps=4, log_every=1))
    again = train_encoder(tiny(synth, tmp_path / "b", loss="clip", max_steps=4, log_every=1))
    assert [line["loss"] for line in first.log] == [line["loss"] for line in again.log]
    scales = [line["logit_scale"] for line in first.log]
    assert scales[0] != pytest.approx(1 / 0.07, abs=1e-6) and max(scales) <= 100


def test_a_finished_encoder_is_never_replaced_by_one_with_other_options(synth, tmp_path):
    train_encoder(tiny(synth, tmp_path / "enc", loss="clip", max_steps=2))
    before = (tmp_path / "enc" / "model.safetensors").read_bytes()
    with pytest.raises(UserError, match=r"enc holds an encoder trained with different options \(loss\); use a new "
                                        r"--out, or delete .*enc to retrain it"):
        train_encoder(tiny(synth, tmp_path / "enc", loss="cloob", max_steps=2))
    assert (tmp_path / "enc" / "model.safetensors").read_bytes() == before
    train_encoder(tiny(synth, tmp_path / "enc", loss="clip", max_steps=2, progress=True))  # same options: rebuilt alike
    assert (tmp_path / "enc" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]


def test_cloob_aligns_with_plain_infoloob_before_its_hopfield_retrievals(tmp_path):
    info = build_tokenizer(["a red circle", "a blue square", "a green line"] * 4, tmp_path / "tok", vocab_size=560)
    torch.manual_seed(0)
    model = build_clip_model(clip_preset("tiny"), vocab_size=info.vocab_size, bos_token_id=info.bos_token_id,
                             eos_token_id=info.eos_token_id)
    encoder = JointEncoder.from_clip_model(model, factory.load_clip_tokenizer(info.path))
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    captions = ["a red circle", "a blue square", "a green line"]
    cfg = EncoderTrainConfig(loss="cloob", hopfield_start=10)
    x, y = encoder.embed_images(images.float() / 255), encoder.embed_text(captions)
    early = contrastive_loss(encoder, model, images, captions, cfg, step=9)
    assert torch.allclose(early, (info_loob(x, y, 30.0) + info_loob(y, x, 30.0)) / 2)
    for late in (contrastive_loss(encoder, model, images, captions, cfg, step=10),
                 contrastive_loss(encoder, model, images, captions, cfg)):  # validation: the full loss
        assert torch.allclose(late, cloob_loss(x, y, 30.0, 8.0))
    assert not torch.allclose(early, late)


def test_warmup_then_cosine():
    factors = [lr_factor(step, steps=10, warmup=2) for step in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0] and factors[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert all(a >= b for a, b in zip(factors[1:], factors[2:]))


def test_defaults_per_loss_and_bad_options(synth, tmp_path):
    assert EncoderTrainConfig(loss="cloob").lr <= 1e-3 and EncoderTrainConfig(loss="clip").lr > 0
    with pytest.raises(UserError, match="unknown encoder loss 'infonce'; use one of clip, cloob"):
        EncoderTrainConfig(loss="infonce")
    with pytest.raises(UserError, match="not one of clip, cloob"):
        from_dict(EncoderTrainConfig, {"loss": "infonce"})
    with pytest.raises(UserError, match="unknown encoder preset"):
        EncoderTrainConfig(preset="huge")
    with pytest.raises(ValueError, match="--batch-size"):
        EncoderTrainConfig(batch_size=1)


def test_bad_data_and_outputs_are_one_line_errors(synth, tmp_path):
    with pytest.raises(UserError, match="exceeds the 24 training pairs"):
        train_encoder(tiny(synth, tmp_path / "enc", batch_size=25))
    uncaptioned = tmp_path / "plain"
    uncaptioned.mkdir()
    (uncaptioned / "manifest.jsonl").write_text('{"image": "images/x.png", "caption": ""}\n')
    with pytest.raises(UserError, match="0 captioned image"):
        train_encoder(tiny(uncaptioned, tmp_path / "enc"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty and holds no artdiff encoder"):
        train_encoder(tiny(synth, foreign))
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "enc").exists()


def test_an_architecture_given_in_full_replaces_the_preset(synth, tmp_path):
    spec = {"vision": {"image_size": 32, "patch_size": 16, "hidden": 16, "layers": 1, "heads": 2},
            "text": {"hidden": 16, "layers": 1, "heads": 2}, "projection_dim": 8}
    cfg = from_dict(EncoderTrainConfig, {**to_dict(tiny(synth, tmp_path / "enc", max_steps=2)), "spec": spec})
    train_encoder(cfg)
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["vision_config"]["patch_size"] == 16 and config["projection_dim"] == 8
    assert from_dict(EncoderTrainConfig, load_yaml(tmp_path / "enc" / "train_config.yaml")) == cfg
    assert json.loads((tmp_path / "enc" / "artdiff.json").read_text())["preset"] is None


def interrupt_at(monkeypatch, call):
    """Make the training loss raise SIGINT (what Ctrl-C does) during its `call`-th evaluation."""
    calls = []

    def loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            signal.raise_signal(signal.SIGINT)
        return contrastive_loss(*args, **kwargs)

    monkeypatch.setattr(encoder_training, "contrastive_loss", loss)


def test_interrupted_and_resumed_equals_uninterrupted(synth, tmp_path, monkeypatch):
    settings = {"loss": "clip", "max_steps": 8, "log_every": 2, "checkpoint_every": 3}
    whole = train_encoder(tiny(synth, tmp_path / "whole", **settings))
    interrupt_at(monkeypatch, 5)
    first = train_encoder(tiny(synth, tmp_path / "split", **settings))
    assert first.interrupted and first.steps == 5 and not (tmp_path / "split").exists()
    # Two kept: an earlier one to fall back on if the last is damaged.
    assert sorted(p.name for p in (tmp_path / "split.partial" / "checkpoints").iterdir()) == ["step-3", "step-5"]
    monkeypatch.undo()
    resumed = train_encoder(tiny(synth, tmp_path / "split", **settings, progress=True))  # progress may change
    assert not resumed.interrupted and resumed.steps == 8 and not (tmp_path / "split.partial").exists()
    drop_seconds = lambda log: [{k: v for k, v in line.items() if k != "seconds"} for line in log]  # noqa: E731
    assert drop_seconds(resumed.log) == drop_seconds(whole.log)
    expected, got = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "split" / "model.safetensors")
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_a_resume_with_other_options_is_refused_and_keeps_the_checkpoint(synth, tmp_path, monkeypatch):
    interrupt_at(monkeypatch, 2)
    assert train_encoder(tiny(synth, tmp_path / "enc", max_steps=6)).interrupted
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"unfinished run started with different options \(lr, max_steps\); .* delete .*enc.partial"):
        train_encoder(tiny(synth, tmp_path / "enc", max_steps=7, lr=1e-3))
    assert [p.name for p in (tmp_path / "enc.partial" / "checkpoints").iterdir()] == ["step-2"]


def test_a_resume_on_changed_images_is_refused(synth, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(synth, data)
    interrupt_at(monkeypatch, 2)
    assert train_encoder(tiny(data, tmp_path / "enc", max_steps=6)).interrupted
    monkeypatch.undo()
    first = json.loads((data / "manifest.jsonl").read_text().splitlines()[0])["image"]
    Image.new("RGB", (32, 32), "red").save(data / first)  # same captions, one image repainted
    with pytest.raises(UserError, match="unfinished run started with different data;"):
        train_encoder(tiny(data, tmp_path / "enc", max_steps=6))
