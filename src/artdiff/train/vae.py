"""`artdiff train vae`: an AutoencoderKL from scratch (reconstruction + KL, optional patch-adversarial term).

After training, the latent scale is measured on the data (1 / std of the latents, as CCLD does) and
written into artdiff.json and the diffusers config's scaling_factor, so decoding never relies on a constant.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from artdiff.config import to_dict
from artdiff.data.dataset import ImageDataset
from artdiff.models.discriminator import PatchDiscriminator
from artdiff.models.factory import save_diffusers_model
from artdiff.models.latents import measure_latent_scale
from artdiff.models.model_info import ModelInfo
from artdiff.models.vae_specs import build_vae, vae_preset
from artdiff.train.loop import LoopResult, run_training
from artdiff.train.vae_config import VaeTrainConfig  # noqa: F401 - the options live there, for a fast --help


class VaeTask:
    """Reconstruction (L1 + L2) + KL, plus a hinge GAN term whose two halves share one optimizer step."""

    def __init__(self, cfg: VaeTrainConfig) -> None:
        self.cfg = cfg
        self.data = ImageDataset(cfg.data, size=cfg.size)
        torch.manual_seed(cfg.seed)
        self.vae = build_vae(vae_preset(cfg.preset))
        self.disc = PatchDiscriminator() if cfg.adversarial_weight > 0 else None
        self.model = torch.nn.ModuleDict({"vae": self.vae, **({"disc": self.disc} if self.disc else {})})
        self.fixed = self.data.images(list(range(min(8, len(self.data)))))

    def trainable(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def dataset_size(self) -> int:
        return len(self.data)

    def batch(self, indices: list[int]) -> torch.Tensor:
        return self.data.images(indices) * 2 - 1

    def loss(self, model: torch.nn.Module, batch: torch.Tensor, seeds: list[int], step: int) -> torch.Tensor:
        vae = model["vae"]
        posterior = vae.encode(batch).latent_dist
        noise = torch.stack([torch.randn(posterior.mean.shape[1:], generator=torch.Generator().manual_seed(s))
                             for s in seeds]).to(posterior.mean.device)
        z = posterior.mean + posterior.std * noise  # the reparameterised sample, from the example seeds
        recon = vae.decode(z).sample
        loss = F.l1_loss(recon, batch) + F.mse_loss(recon, batch) + self.cfg.kl_weight * posterior.kl().mean()
        if self.disc is not None and step >= self.cfg.adversarial_start:
            disc = model["disc"]
            # The generator term sees the discriminator's weights detached, so it cannot train them backwards.
            frozen = {name: p.detach() for name, p in disc.named_parameters()}
            loss = loss - self.cfg.adversarial_weight * functional_call(disc, frozen, (recon,)).mean()
            real, fake = disc(batch), disc(recon.detach())
            loss = loss + F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return loss

    @torch.no_grad()
    def sample(self, model: torch.nn.Module) -> torch.Tensor:
        """Originals above their reconstructions."""
        vae = model["vae"]
        recon = vae.decode(vae.encode(self.fixed * 2 - 1).latent_dist.mean).sample
        return torch.cat([self.fixed, ((recon + 1) / 2).clamp(0, 1)])

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        vae = model["vae"]
        count = min(self.cfg.scale_images, len(self.data))
        batches = (self.data.images(list(range(i, min(i + 64, count)))) for i in range(0, count, 64))
        scale = measure_latent_scale(vae, batches, generator=torch.Generator().manual_seed(self.cfg.seed))
        vae.register_to_config(scaling_factor=scale)
        info = ModelInfo(kind="vae", latent_scale=scale, recipe=to_dict(self.cfg),
                         preprocessing={"size": self.cfg.size, "kernel": "lanczos", "antialias": True, "crop": True,
                                        "range": [-1, 1]})
        save_diffusers_model(vae, directory, info=info.to_dict())


def train_vae(cfg: VaeTrainConfig) -> LoopResult:
    """Train the autoencoder and write run_dir/model (a diffusers AutoencoderKL folder with artdiff.json)."""
    return run_training(cfg, VaeTask(cfg))
