"""`artdiff train image-variation`: Stable Diffusion conditioned on a CLIP image embedding (conditioning swap).

The recipe of lambdalabs/sd-image-variations (justinpinkney/stable-diffusion, sd-image-condition-*.yaml): the
text encoder is dropped and the UNet's cross-attention receives the image encoder's projected embedding as a
one-token sequence (B, 1, D). When D differs from the UNet's cross_attention_dim, a learned Linear(D, width)
is added as diffusers' `encoder_hid_proj`, so the result still loads in StableDiffusionImageVariationPipeline.
Stage `attn` trains only the cross-attention modules (every attn2.* tensor: to_q, to_k, to_v, to_out, as
`unet_trainable: attn` did) and the projection; stage `full` trains the whole UNet. The VAE and the image
encoder stay frozen. Conditions drop to zeros with probability --cond-dropout (the published configs had
none, yet sampled with zeros as the null condition). Objective (eps | v | x0) and DDPM betas come from the
--init model's scheduler config.

Notation: x0 clean latents, eps noise, t DDPM timestep, a = alphas_cumprod[t], x_t = sqrt(a) x0 + sqrt(1 - a) eps.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from artdiff.config import to_dict
from artdiff.core.schedules import alphas_cumprod, ddpm_betas
from artdiff.data.cache import cached_features, fingerprint_folder
from artdiff.data.dataset import ImageDataset
from artdiff.errors import UserError
from artdiff.generate.vary import sample_variations
from artdiff.models import factory
from artdiff.models.image_variation import (
    ImageVariation,
    add_condition_projection,
    check_widths,
    contract_of,
    default_preprocessing,
    image_condition,
    is_image_variation,
    load_image_encoder,
    pixel_values,
    write_model_dir,
)
from artdiff.models.model_info import ModelInfo
from artdiff.models.stable_diffusion import is_stable_diffusion, schedule_from_scheduler_config
from artdiff.train.image_variation_config import ImageVariationConfig  # noqa: F401 - the options live there, for a fast --help
from artdiff.train.loop import LoopResult, run_training

CROSS_ATTENTION = ".attn2."  # diffusers' BasicTransformerBlock: attn1 self-attention, attn2 cross-attention
PROJECTION = "encoder_hid_proj."


class ImageVariationTask:
    """Latents and image embeddings are cached once; each step noises latents and predicts the init's target."""

    def __init__(self, cfg: ImageVariationConfig) -> None:
        self.cfg = cfg
        self.init_dir = _check_init(factory.resolve_model_dir(cfg.init))
        config = factory.read_json(self.init_dir / "scheduler" / "scheduler_config.json") or {}
        self.schedule, self.parameterization = schedule_from_scheduler_config(config)
        self.vae_dir = self.init_dir / "vae"
        self.vae, self.scale = factory.load_vae(self.vae_dir)
        self.vae.requires_grad_(False)
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if cfg.size % factor:
            raise UserError(f"--size {cfg.size} is not a multiple of {factor}, the VAE's downsampling factor")
        encoder_ref = cfg.image_encoder or self.init_dir / "image_encoder"
        if not cfg.image_encoder and not (self.init_dir / "image_encoder").is_dir():
            raise UserError(f"{self.init_dir} has no image encoder; pass --image-encoder, a CLIP model folder")
        self.image_encoder, self.encoder_dir = load_image_encoder(encoder_ref)
        self.image_encoder.requires_grad_(False)
        side = self.image_encoder.config.image_size
        keep_contract = is_image_variation(self.init_dir) and not cfg.image_encoder
        self.contract = (contract_of(self.init_dir, side) if keep_contract
                         else default_preprocessing(side, antialias=cfg.encoder_antialias))
        self.data = ImageDataset(cfg.data, size=cfg.size)
        self.features = self._cache()
        self.model = factory.load_unet(self.init_dir / "unet").train()
        dim = self.image_encoder.config.projection_dim
        add_condition_projection(self.model, dim, generator=torch.Generator().manual_seed(cfg.seed))
        check_widths(self.model, self.image_encoder, where=str(self.init_dir))
        self.params = _select(self.model, cfg.stage)
        s = self.schedule
        betas = ddpm_betas(s["beta_schedule"], num_train_timesteps=s["num_train_timesteps"], beta_start=s["beta_start"],
                           beta_end=s["beta_end"])
        self.alphas_bar = alphas_cumprod(betas).float()

    def _cache(self) -> dict[str, torch.Tensor]:
        """Latent posteriors and un-normalised image embeddings of every image, once per data/encoder/VAE/contract."""

        @torch.no_grad()
        def compute(indices: list[int]) -> dict[str, torch.Tensor]:
            images = self.data.images(indices)  # (B, 3, S, S) in [0, 1]
            posterior = self.vae.encode(images * 2 - 1).latent_dist
            condition = image_condition(self.image_encoder, pixel_values(images, self.contract))  # (B, 1, D)
            return {"latent_mean": posterior.mean * self.scale, "latent_std": posterior.std * self.scale,
                    "image_embeds": condition[:, 0]}

        identity = {"features": "image-variation", "size": self.cfg.size, "vae": fingerprint_folder(self.vae_dir),
                    "encoder": fingerprint_folder(self.encoder_dir), "preprocessing": self.contract.to_dict(),
                    "scale": self.scale}
        return cached_features(self.cfg.data, identity, compute, len(self.data), show_progress=self.cfg.progress)

    def trainable(self) -> list[torch.nn.Parameter]:
        return self.params

    def dataset_size(self) -> int:
        return len(self.data)

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {name: value[indices] for name, value in self.features.items()}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], seeds: list[int], step: int) -> torch.Tensor:
        x0, eps, t, keep = self._draws(batch, seeds)
        condition = batch["image_embeds"] * keep[:, None]  # (B, D); dropped rows are the null (zero) condition
        a = self.alphas_bar[t].to(x0.device)[:, None, None, None]
        alpha, sigma = a.sqrt(), (1 - a).sqrt()
        x_t = alpha * x0 + sigma * eps
        target = {"eps": eps, "v": alpha * eps - sigma * x0, "x0": x0}[self.parameterization]
        prediction = model(x_t, t.to(x0.device), encoder_hidden_states=condition[:, None, :]).sample
        return F.mse_loss(prediction.float(), target.float())

    def _draws(self, batch: dict[str, torch.Tensor], seeds: list[int]):
        """All of an example's randomness from its own seed: latent sample, noise, timestep, dropout."""
        shape = batch["latent_mean"].shape[1:]
        n_train = self.schedule["num_train_timesteps"]
        x0s, epss, ts, keeps = [], [], [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            x0s.append(torch.randn(shape, generator=g))
            epss.append(torch.randn(shape, generator=g))
            ts.append(torch.randint(0, n_train, (), generator=g))
            keeps.append(torch.rand((), generator=g) >= self.cfg.cond_dropout)
        device = batch["latent_mean"].device  # draws are made on the CPU generator, then moved
        x0 = batch["latent_mean"] + batch["latent_std"] * torch.stack(x0s).to(device)
        return x0, torch.stack(epss).to(device), torch.stack(ts), torch.stack(keeps).float().to(device)

    @torch.no_grad()
    def sample(self, model: torch.nn.Module) -> torch.Tensor:
        """One variation of each of the first four training images; fixed seed, CFG 3, 20 DDIM steps."""
        device = next(model.parameters()).device
        self.vae.to(device)  # the frozen VAE encoded the cache on the CPU; it decodes where the UNet trains
        parts = ImageVariation(self.init_dir, model, self.vae, self.image_encoder, self.scale, self.schedule,
                               self.parameterization, self.contract, hash="")
        embeds = self.features["image_embeds"][:4].to(device)
        return torch.cat([sample_variations(parts, e[None, None], seeds=[0], height=self.cfg.size,
                                            width=self.cfg.size, steps=20, cfg_scale=3.0, sampler="ddim")
                          for e in embeds])

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        """The lambdalabs layout (unet/, vae/, image_encoder/, scheduler/, model_index.json) plus artdiff.json."""
        info = ModelInfo(kind="image-variation", parameterization=self.parameterization, schedule=self.schedule,
                         conditioning={"type": "image-embedding", "dim": self.image_encoder.config.projection_dim,
                                       "null": "zeros", "projection": bool(model.config.encoder_hid_dim)},
                         preprocessing=self.contract.to_dict(), latent_scale=self.scale, recipe=to_dict(self.cfg),
                         extra={"image_size": self.cfg.size})
        write_model_dir(directory, unet=model, vae_dir=self.vae_dir, image_encoder=self.image_encoder,
                        scheduler_dir=self.init_dir / "scheduler", info=info.to_dict())


def _check_init(folder: Path) -> Path:
    if not (is_stable_diffusion(folder) or is_image_variation(folder)):
        raise UserError(f"--init {folder} is neither a Stable Diffusion nor an image-variation model folder "
                        "(model_index.json)")
    for part in ("unet", "vae", "scheduler"):
        if not (folder / part).is_dir():
            raise UserError(f"--init {folder} has no {part}/ folder; pass a complete diffusers model folder")
    return folder


def _select(unet: torch.nn.Module, stage: str) -> list[torch.nn.Parameter]:
    """The parameters a stage trains; the others are frozen (requires_grad False), so they stay bit-identical."""
    chosen = []
    for name, parameter in unet.named_parameters():
        train = stage == "full" or CROSS_ATTENTION in f".{name}" or name.startswith(PROJECTION)
        parameter.requires_grad_(train)
        if train:
            chosen.append(parameter)
    if not chosen:
        raise UserError("the UNet has no cross-attention (attn2) modules to train; use --stage full")
    return chosen


def train_image_variation(cfg: ImageVariationConfig) -> LoopResult:
    """Train and write run_dir/model, an image-variation model directory that diffusers also loads.

    Args:
        cfg: the recipe and loop options; --init and --data are required.

    Returns:
        The loop's result: steps, final loss, samples and the model directory.
    """
    return run_training(cfg, ImageVariationTask(cfg))
