"""`artdiff train vae` learns to reconstruct, measures its latent scale, and saves a diffusers folder."""

import json

import pytest
import torch
from diffusers import AutoencoderKL

from artdiff.cli.main import main
from artdiff.data.synthetic import SynthConfig, generate_dataset
from artdiff.models.factory import load_vae
from artdiff.models.latents import Latents
from artdiff.train.vae import VaeTask, VaeTrainConfig, train_vae


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(out=out, n=16, size=16, seed=0, workers=1, progress=False))
    return out


def config(synth, out, **options):
    return VaeTrainConfig(data=synth, out=out, preset="tiny", size=16, batch_size=8, max_steps=50, lr=1e-2,
                          warmup_steps=2, ema_decay=0.0, progress=False, **options)


def test_training_lowers_reconstruction_error_and_records_the_scale(synth, tmp_path):
    untrained = VaeTask(config(synth, tmp_path / "x"))
    images = untrained.data.images(list(range(8)))
    before = (untrained.sample(untrained.model)[8:] - images).abs().mean()
    result = train_vae(config(synth, tmp_path / "run"))
    vae, scale = load_vae(result.model_dir)
    latents = Latents(vae, scale=scale)
    with torch.no_grad():
        z = latents.encode(images, sample=False)
        after = (latents.decode(z) - images).abs().mean()
        sampled_std = float(latents.encode(images).std())
    assert after < before * 0.75 and z.shape == (8, 4, 8, 8)
    info = json.loads((result.model_dir / "artdiff.json").read_text())
    assert info["kind"] == "vae" and info["latent_scale"] == pytest.approx(scale)
    assert AutoencoderKL.from_pretrained(result.model_dir).config.scaling_factor == pytest.approx(scale)
    assert 0.5 < sampled_std < 2.0  # the measured scale makes latents about unit std


def test_adversarial_term_trains_both_halves(synth, tmp_path):
    task = VaeTask(config(synth, tmp_path / "x", adversarial_weight=0.1))
    batch = task.batch(list(range(4)))
    loss = task.loss(task.model, batch, [1, 2, 3, 4], step=0)
    loss.backward()
    assert all(p.grad is not None for p in task.model["disc"].parameters())
    assert all(p.grad is not None for p in task.model["vae"].encoder.parameters())


def test_cli(synth, tmp_path, capsys):
    argv = ["train", "vae", "--data", str(synth), "--out", str(tmp_path / "run"), "--preset", "tiny", "--size", "16",
            "--batch-size", "4", "--max-steps", "2", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    assert main(argv[:-1] + ["--size", "15"]) == 2
    assert "multiple of 2" in capsys.readouterr().err
