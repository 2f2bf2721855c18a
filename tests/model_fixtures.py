"""Tiny real-format model folders for tests: a CLIP joint encoder, an AutoencoderKL, a synthetic set."""

from __future__ import annotations

from pathlib import Path

import torch

from artdiff.data.synthetic import SynthConfig, generate_dataset
from artdiff.models.encoders import save_encoder
from artdiff.models.factory import save_diffusers_model
from artdiff.models.latents import measure_latent_scale
from artdiff.models.model_info import ModelInfo
from artdiff.models.preprocessing import Preprocessing
from artdiff.models.specs import build_clip_model, clip_preset
from artdiff.models.tokenizer import build_tokenizer
from artdiff.models.vae_specs import build_vae, vae_preset


def tiny_synth(out: Path, n: int = 12, size: int = 16) -> Path:
    """A small labelled procedural set."""
    generate_dataset(SynthConfig(out=out, n=n, size=size, seed=0, workers=1, progress=False))
    return out


def tiny_encoder(out: Path, captions: list[str]) -> Path:
    """A random tiny CLIP (32 px) with a tokenizer made from the captions, as `artdiff train encoder` writes."""
    info = build_tokenizer(captions, out.parent / f"{out.name}-tokenizer", vocab_size=560)
    torch.manual_seed(0)
    model = build_clip_model(clip_preset("tiny"), vocab_size=info.vocab_size, bos_token_id=info.bos_token_id,
                             eos_token_id=info.eos_token_id)
    save_encoder(model, out, tokenizer_dir=info.path, preprocessing=Preprocessing(size=32),
                 info={"objective": "cloob"})
    return out


def tiny_vae(out: Path, images: torch.Tensor | None = None) -> Path:
    """A random tiny AutoencoderKL (factor 2) with its latent scale measured on `images`."""
    torch.manual_seed(0)
    vae = build_vae(vae_preset("tiny"))
    scale = measure_latent_scale(vae, [images]) if images is not None else 1.0
    vae.register_to_config(scaling_factor=scale)
    save_diffusers_model(vae, out, info=ModelInfo(kind="vae", latent_scale=scale).to_dict())
    return out


def tiny_embedding_model(root: Path, *, steps: int = 1) -> Path:
    """A tiny embedding-ldm model directory trained for a step or two (its outputs are noise, its format real)."""
    from artdiff.data.manifest import read_manifest
    from artdiff.train.embedding_ldm import EmbeddingLDMConfig, train_embedding_ldm

    data = tiny_synth(root / "synth")
    encoder = tiny_encoder(root / "encoder", [r["caption"] for r in read_manifest(data)])
    cfg = EmbeddingLDMConfig(data=data, encoder=str(encoder), vae=tiny_vae(root / "vae"), out=root / "run",
                             preset="tiny", size=16, batch_size=4, max_steps=steps, warmup_steps=1, progress=False)
    return train_embedding_ldm(cfg).model_dir
