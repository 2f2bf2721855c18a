"""`artdiff train embedding-ldm`: latent diffusion conditioned on each image's own joint embedding (CCLD).

Captions are not needed: the condition of a training image is the encoder's embedding of that image,
so a model trained on unlabelled art can afterwards be prompted with text (the text tower shares the
space), images, or both. `--condition text` (captions through the text tower) and `mixed` exist to
compare the caption-free trick with caption training on the same data. Conditions are dropped to the
zero vector with probability --cond-dropout so classifier-free guidance works.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from artdiff.config import to_dict
from artdiff.core.schedules import alphas_cumprod, ddpm_betas
from artdiff.data.cache import cached_features, fingerprint_folder
from artdiff.data.dataset import ImageDataset
from artdiff.errors import UserError
from artdiff.generate.sample import sample_from_embeddings
from artdiff.models import factory
from artdiff.models.components import Component, component, round_to_precision, shipped_component
from artdiff.models.embedding_ldm import build_embedding_unet, unet_preset
from artdiff.models.encoders import load_encoder
from artdiff.models.latents import Latents
from artdiff.models.model_info import ModelInfo
from artdiff.train.embedding_ldm_config import EmbeddingLDMConfig  # noqa: F401 - the options live there, for a fast --help
from artdiff.train.loop import LoopResult, run_training
from artdiff.utils.assets import SHIPPED_ENCODER

DISCRETE = {"type": "discrete", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
            "num_train_timesteps": 1000}


class EmbeddingLDMTask:
    """Latents and embeddings are cached once; each step noises latents and predicts v or eps."""

    def __init__(self, cfg: EmbeddingLDMConfig) -> None:
        self.cfg = cfg
        vae_dir = Path(cfg.vae) if cfg.vae else Path(cfg.init) / "vae"
        self.vae_dir, self.encoder_part = vae_dir, self._encoder_part(cfg)
        vae, scale = factory.load_vae(vae_dir)
        self.latents = Latents(vae, scale=scale)
        self.encoder = round_to_precision(load_encoder(self.encoder_part.path), self.encoder_part.precision)
        self.data = ImageDataset(cfg.data, size=cfg.size)
        self.features = self._cache()
        self.schedule = {"type": "cosine"} if cfg.schedule == "cosine" else DISCRETE
        torch.manual_seed(cfg.seed)
        if cfg.init:
            self.model = factory.load_unet(Path(cfg.init) / "unet")
        else:
            self.model = build_embedding_unet(unet_preset(cfg.preset), embed_dim=self.encoder.dim,
                                              latent_channels=vae.config.latent_channels,
                                              sample_size=cfg.size // self.latents.factor)
        self.alphas_bar = alphas_cumprod(ddpm_betas("scaled_linear")).float()

    @staticmethod
    def _encoder_part(cfg: EmbeddingLDMConfig) -> Component:
        """--encoder, else the --init model's encoder (its own folder or the shipped one it refers to), else the
        shipped cloob-mini."""
        if cfg.encoder:
            return shipped_component(factory.resolve_model_dir(cfg.encoder))
        if cfg.init:
            init = factory.resolve_model_dir(cfg.init)
            return component(init, factory.read_model_info(init), "encoder")
        return shipped_component(SHIPPED_ENCODER)

    def _cache(self) -> dict[str, torch.Tensor]:
        """Latent posteriors and embeddings of every image, computed once per data/encoder/VAE/contract."""
        want_text = self.cfg.condition in ("text", "mixed")
        captions = [r.get("caption", "") for r in self.data.records]
        if want_text and not any(captions):
            raise UserError(f"--condition {self.cfg.condition} needs captions, and {self.cfg.data} has none")

        @torch.no_grad()
        def compute(indices: list[int]) -> dict[str, torch.Tensor]:
            images = self.data.images(indices)
            posterior = self.latents.vae.encode(images * 2 - 1).latent_dist
            out = {"latent_mean": posterior.mean * self.latents.scale, "latent_std": posterior.std * self.latents.scale,
                   "image_embedding": self.encoder.embed_images(images)}
            if want_text:
                out["text_embedding"] = self.encoder.embed_text([captions[i] for i in indices])
            return out

        identity = {"size": self.cfg.size, "text": want_text, "vae": fingerprint_folder(self.vae_dir),
                    "encoder": fingerprint_folder(self.encoder_part.path),
                    "preprocessing": self.encoder.preprocessing.to_dict(), "scale": self.latents.scale}
        if self.encoder_part.precision:  # rounded weights embed differently from the folder as stored
            identity["encoder_precision"] = self.encoder_part.precision
        return cached_features(self.cfg.data, identity, compute, len(self.data), show_progress=self.cfg.progress)

    def trainable(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def dataset_size(self) -> int:
        return len(self.data)

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {name: value[indices] for name, value in self.features.items()}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], seeds: list[int], step: int) -> torch.Tensor:
        x0, eps, t, keep, use_text = self._draws(batch, seeds)
        condition = batch["image_embedding"]
        if "text_embedding" in batch:
            condition = torch.where(use_text[:, None], batch["text_embedding"], condition)
        condition = condition * keep[:, None]  # dropped to the null (zero) embedding
        if self.schedule["type"] == "cosine":
            alpha, sigma = torch.cos(t * torch.pi / 2), torch.sin(t * torch.pi / 2)
            timestep = t * 1000
        else:
            a = self.alphas_bar[t]
            alpha, sigma, timestep = a.sqrt(), (1 - a).sqrt(), t.float()
        alpha, sigma, timestep = (v.to(x0.device) for v in (alpha, sigma, timestep))
        alpha, sigma = alpha[:, None, None, None], sigma[:, None, None, None]
        x_t = alpha * x0 + sigma * eps
        target = alpha * eps - sigma * x0 if self.cfg.objective == "v" else eps
        prediction = model(x_t, timestep, encoder_hidden_states=condition[:, None, :]).sample
        return F.mse_loss(prediction, target)

    def _draws(self, batch: dict[str, torch.Tensor], seeds: list[int]):
        """All of an example's randomness from its own seed: latent sample, noise, time, dropout, condition."""
        shape = batch["latent_mean"].shape[1:]
        x0s, epss, ts, keeps, texts = [], [], [], [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            x0s.append(torch.randn(shape, generator=g))
            epss.append(torch.randn(shape, generator=g))
            ts.append(torch.rand((), generator=g) if self.schedule["type"] == "cosine"
                      else torch.randint(0, 1000, (), generator=g))
            keeps.append(torch.rand((), generator=g) >= self.cfg.cond_dropout)
            chance = {"image": 0.0, "text": 1.0, "mixed": 0.5}[self.cfg.condition]
            texts.append(torch.rand((), generator=g) < chance)
        device = batch["latent_mean"].device  # draws are made on the CPU generator, then moved
        x0 = batch["latent_mean"] + batch["latent_std"] * torch.stack(x0s).to(device)
        return (x0, torch.stack(epss).to(device), torch.stack(ts), torch.stack(keeps).float().to(device),
                torch.stack(texts).to(device))

    @torch.no_grad()
    def sample(self, model: torch.nn.Module) -> torch.Tensor:
        """Four image prompts of the data and, with a text tower, four captions; fixed seeds, CFG 3."""
        embeddings = self.features["image_embedding"][:4]
        captions = [r.get("caption", "") for r in self.data.records[:4]]
        if self.encoder.text_model is not None and all(captions):
            embeddings = torch.cat([embeddings, self.encoder.embed_text(captions)])
        return sample_from_embeddings(model, self.latents, self.schedule, self.cfg.objective,
                                      [[(e[None], 1.0)] for e in embeddings], cfg_scale=3.0, steps=20, seed=0,
                                      latent_size=self.cfg.size // self.latents.factor)

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        """unet/, vae/ and encoder/ beside artdiff.json; a shipped encoder is referred to instead of copied.

        A user's encoder is copied, so that the directory is complete on its own; the shipped cloob-mini is in
        every install, so artdiff.json names it (models/components.py) and the model stays 12 MB smaller.
        """
        tmp = directory.with_name(f".{directory.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        factory.save_diffusers_model(model, tmp / "unet")
        shutil.copytree(self.vae_dir, tmp / "vae")
        reference = self.encoder_part.reference()
        if reference is None:
            shutil.copytree(self.encoder_part.path, tmp / "encoder")
        extra = {"image_size": self.cfg.size, **({"components": {"encoder": reference}} if reference else {})}
        info = ModelInfo(kind="embedding-ldm", parameterization=self.cfg.objective, schedule=self.schedule,
                         conditioning={"type": "joint-embedding", "dim": self.encoder.dim, "null": "zeros",
                                       "trained_on": self.cfg.condition},
                         preprocessing=self.encoder.preprocessing.to_dict(), latent_scale=self.latents.scale,
                         recipe=to_dict(self.cfg), extra=extra)
        factory.write_model_info(tmp, info)
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)


def train_embedding_ldm(cfg: EmbeddingLDMConfig) -> LoopResult:
    """Train (or fine-tune) and write run_dir/model, an embedding-ldm model directory."""
    return run_training(cfg, EmbeddingLDMTask(cfg))
