"""`artdiff train lora`: low-rank adapters (Hu et al. 2021) on a frozen Stable Diffusion, diffusers' recipe.

Recipe: diffusers `examples/text_to_image/train_text_to_image_lora.py`: a peft LoraConfig (rank, alpha, gaussian
init, so the adapted model starts equal to the base) on the UNet's attention projections (to_q, to_k, to_v,
to_out.0) and, with --train-text-encoder, on the CLIP text encoder's (q_proj, k_proj, v_proj, out_proj); the MSE
of the model's target (eps | v | x0) under its DDPM schedule; only the LoRA tensors train. The UNet and text
encoder sit in one module whose state_dict holds only the LoRA tensors, so checkpoints are megabytes and resume
is exact. Captions: the manifest's, through --caption-template ([filewords] = the caption), encoded as
`artdiff generate` encodes prompts (A1111 emphasis, 75-token chunks). Latents are cached once per data/VAE/size
(shared with textual inversion) and a new posterior sample is drawn per example from its seed.
Output: RUN/model/pytorch_lora_weights.safetensors in diffusers' peft naming (`unet.<module>.to_q.lora_A.weight`,
`text_encoder.text_model.<module>.q_proj.lora_B.weight`), read by StableDiffusionPipeline.load_lora_weights and
`artdiff generate --lora`, plus artdiff.json (kind "lora"). When --alpha differs from --rank, alpha/rank is
multiplied into lora_B, so loaders that assume alpha = rank (all of them, without metadata) apply the trained scale.

Notation: x0 clean latents, eps noise, t DDPM timestep, a = alphas_cumprod[t], x_t = sqrt(a) x0 + sqrt(1 - a) eps.
"""

from __future__ import annotations

import contextlib
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from artdiff.config import to_dict
from artdiff.core.schedules import alphas_cumprod, ddpm_betas
from artdiff.data.dataset import ImageDataset
from artdiff.errors import UserError
from artdiff.generate.prompt_weighting import (
    PromptChunk,
    empty_chunk,
    encode_prompt_pair,
    encode_weighted,
    tokenize_weighted,
)
from artdiff.generate.sd_sample import sample_sd
from artdiff.models import factory
from artdiff.models.lora import LORA_WEIGHT_NAME
from artdiff.models.model_info import ModelInfo
from artdiff.models.stable_diffusion import load_stable_diffusion
from artdiff.train.loop import LoopResult, run_training
from artdiff.train.lora_config import LoraTrainConfig  # noqa: F401 - the options live there, for a fast --help
from artdiff.train.sd_latents import cached_sd_latents
from artdiff.train.ti_templates import FILEWORDS, fill_template, read_template_file

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # diffusers' attention projections (self and cross)
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")  # CLIP attention projections
LORA_KEY = ".lora_"  # every peft LoRA tensor's name holds it (lora_A, lora_B, lora_magnitude_vector)
PREVIEW_STEPS, PREVIEW_CFG = 20, 7.5


class LoraNetworks(torch.nn.Module):
    """The UNet and text encoder carrying LoRA layers; state_dict() holds only the LoRA tensors."""

    def __init__(self, unet: torch.nn.Module, text_encoder: torch.nn.Module, *, train_text_encoder: bool) -> None:
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder
        self.train_text_encoder = train_text_encoder

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, chunks: list[list[PromptChunk]]) -> torch.Tensor:
        """The UNet's output for noisy latents (B, 4, h, w), timesteps (B,) and each example's prompt chunks."""
        with torch.set_grad_enabled(self.train_text_encoder and torch.is_grad_enabled()):
            cond = torch.cat([encode_weighted(self.text_encoder, c) for c in chunks])  # (B, 77k, D)
        return self.unet(x_t, t, encoder_hidden_states=cond).sample

    def state_dict(self, *, destination: dict | None = None, prefix: str = "", keep_vars: bool = False) -> dict:
        """Only the LoRA tensors: checkpoints hold what trains, never a copy of the frozen base."""
        state = super().state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in [k for k in state if k.startswith(prefix) and LORA_KEY not in k]:
            del state[key]
        return state

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        """Load LoRA tensors saved by state_dict(); with strict, the key sets must match exactly."""
        expected = set(self.state_dict())
        if strict and set(state_dict) != expected:
            raise RuntimeError(f"LoRA checkpoint keys differ from this model's: {len(set(state_dict) ^ expected)} "
                               "differ (another --rank or --train-text-encoder?)")
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in backward (the loop calls this for --gradient-checkpointing)."""
        self.unet.enable_gradient_checkpointing()
        if self.train_text_encoder:  # non-reentrant: the frozen embeddings' output needs no grad
            te = self.text_encoder
            if hasattr(te, "activation_checkpointing_enable"):  # transformers 5 renamed it
                te.activation_checkpointing_enable({"use_reentrant": False})
            else:
                te.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


class LoraTask:
    """Frozen SD with peft LoRA layers, cached latents, and the model's denoising objective."""

    def __init__(self, cfg: LoraTrainConfig) -> None:
        self.cfg = cfg
        self.sd = load_stable_diffusion(cfg.model)
        for network in (self.sd.unet, self.sd.vae, self.sd.text_encoder):
            network.requires_grad_(False)
        self.sd.vae.eval()
        self.size = cfg.size or self.sd.unet.config.sample_size * self.sd.vae_factor
        if self.size % self.sd.vae_factor:
            raise UserError(f"--size {self.size} is not a multiple of {self.sd.vae_factor}, which this model needs")
        path = Path(cfg.caption_template)
        self.templates = read_template_file(path) if path.is_file() else (cfg.caption_template,)
        self.data = ImageDataset(cfg.data, size=self.size)
        self.captions = [str(r.get("caption") or "") for r in self.data.records]
        if all(FILEWORDS in line for line in self.templates) and not any(self.captions):
            raise UserError(f"{cfg.data} has no captions for [filewords]; give every example one prompt with "
                            "--caption-template, e.g. 'a painting by wildsmith'")
        self.features = self._cache()
        s = self.sd.schedule
        self.alphas_bar = alphas_cumprod(ddpm_betas(s["beta_schedule"], num_train_timesteps=s["num_train_timesteps"],
                                                    beta_start=s["beta_start"], beta_end=s["beta_end"])).float()
        self.unet_config, self.text_encoder_config = self._add_adapters()
        self.model = LoraNetworks(self.sd.unet, self.sd.text_encoder,
                                  train_text_encoder=cfg.train_text_encoder).train()  # train(): LoRA dropout on
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        assert all(LORA_KEY in n for n, p in self.model.named_parameters() if p.requires_grad)

    def _add_adapters(self) -> tuple[LoraConfig, LoraConfig | None]:
        """peft LoRA layers (lora_B zero, so training starts from the base model), initialised from --seed."""
        cfg = self.cfg

        def config(targets: tuple[str, ...]) -> LoraConfig:
            return LoraConfig(r=cfg.rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.dropout,
                              init_lora_weights="gaussian", target_modules=list(targets))

        unet_config = config(UNET_TARGETS)
        te_config = config(TEXT_ENCODER_TARGETS) if cfg.train_text_encoder else None
        with torch.random.fork_rng(devices=[]):  # lora_A's draw must not move the global RNG
            torch.manual_seed(cfg.seed)
            try:
                self.sd.unet.add_adapter(unet_config)
                if te_config is not None:
                    self.sd.text_encoder.add_adapter(te_config)
            except ValueError as error:
                raise UserError(f"cannot add LoRA layers to {self.sd.path.name}: {error}") from None
        return unet_config, te_config

    def _cache(self) -> dict[str, torch.Tensor]:
        """Posterior mean and std of every image's latent (scaled), computed once per data/VAE/size."""
        return cached_sd_latents(self.sd, self.data, self.cfg.data, self.size, progress=self.cfg.progress)

    def trainable(self) -> list[torch.nn.Parameter]:
        return self.params

    def dataset_size(self) -> int:
        return len(self.data)

    def batch(self, indices: list[int]) -> dict:
        return {"captions": [self.captions[i] for i in indices], "latent_mean": self.features["latent_mean"][indices],
                "latent_std": self.features["latent_std"][indices]}

    def loss(self, model: torch.nn.Module, batch: dict, seeds: list[int], step: int) -> torch.Tensor:
        x0, eps, t, keep = self._draws(batch, seeds)
        device = x0.device
        prompts = [self.prompt(caption, seed) if kept else ""
                   for caption, seed, kept in zip(batch["captions"], seeds, keep, strict=True)]
        a = self.alphas_bar[t].to(device)[:, None, None, None]
        alpha, sigma = a.sqrt(), (1 - a).sqrt()
        x_t = alpha * x0 + sigma * eps
        target = {"eps": eps, "v": alpha * eps - sigma * x0, "x0": x0}[self.sd.parameterization]
        with self._dropout_seed(seeds[0], device):
            prediction = model(x_t, t.to(device), self._chunks(prompts))
        return F.mse_loss(prediction.float(), target.float())

    def _draws(self, batch: dict, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[bool]]:
        """All of an example's randomness from its own seed: latent sample, noise, timestep, caption dropout."""
        shape = batch["latent_mean"].shape[1:]
        x0s, epss, ts, keeps = [], [], [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            x0s.append(torch.randn(shape, generator=g))
            epss.append(torch.randn(shape, generator=g))
            ts.append(torch.randint(0, len(self.alphas_bar), (), generator=g))
            keeps.append(bool(torch.rand((), generator=g) >= self.cfg.caption_dropout))
        device = batch["latent_mean"].device  # drawn on the CPU generator, then moved
        x0 = batch["latent_mean"] + batch["latent_std"] * torch.stack(x0s).to(device)
        return x0, torch.stack(epss).to(device), torch.stack(ts), keeps

    def prompt(self, caption: str, seed: int) -> str:
        """The example's prompt: a --caption-template line with [filewords] replaced by its caption."""
        return fill_template(self.templates, "", caption, random.Random(seed))

    def _chunks(self, prompts: list[str]) -> list[list[PromptChunk]]:
        """A1111-style token chunks per prompt, padded with empty chunks to the batch's longest."""
        tokenizer = self.sd.tokenizer
        chunks = [tokenize_weighted(tokenizer, p) for p in prompts]
        count = max(len(c) for c in chunks)
        return [c + [empty_chunk(tokenizer)] * (count - len(c)) for c in chunks]

    @contextlib.contextmanager
    def _dropout_seed(self, seed: int, device: torch.device) -> Iterator[None]:
        """LoRA dropout masks drawn from the example seed, so they do not depend on the process layout."""
        if not self.cfg.dropout:
            yield
            return
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield

    @torch.no_grad()
    def sample(self, model: torch.nn.Module) -> torch.Tensor | None:
        """Two fixed-seed previews of --preview-prompt, only when --sample-every is set."""
        if not self.cfg.sample_every:
            return None
        self.sd.vae.to(next(model.parameters()).device)
        prompt = self.cfg.preview_prompt or self.prompt(self.captions[0], self.cfg.seed)
        cond, uncond = encode_prompt_pair(self.sd.text_encoder, self.sd.tokenizer, prompt, "")
        return sample_sd(self.sd, cond, uncond, seeds=[self.cfg.seed, self.cfg.seed + 1], height=self.size,
                         width=self.size, steps=PREVIEW_STEPS, cfg_scale=PREVIEW_CFG)

    def lora_layers(self, model: LoraNetworks) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """The UNet's and text encoder's LoRA tensors in diffusers' peft naming, alpha/rank multiplied into lora_B."""
        scale = self.cfg.lora_alpha / self.cfg.rank

        def export(network: torch.nn.Module) -> dict[str, torch.Tensor]:
            state = get_peft_model_state_dict(network)  # "<module>.lora_A.weight": the adapter name dropped
            return {k: (v.detach().float() * (scale if ".lora_B." in k else 1.0)).cpu().contiguous()
                    for k, v in state.items()}

        unet = export(model.unet)
        if not self.cfg.train_text_encoder:
            return unet, None
        # Published SD LoRAs name CLIP's layers under text_model. (transformers 5 dropped that level; its loader
        # strips it again), so files from here also load where transformers 4 is installed.
        te = {(k if k.startswith("text_model.") else f"text_model.{k}"): v for k, v in export(model.text_encoder).items()}
        return unet, te

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        """pytorch_lora_weights.safetensors (diffusers) and artdiff.json, written beside and renamed into place."""
        unet_layers, te_layers = self.lora_layers(model)
        tmp = directory.with_name(f".{directory.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        factory.save_lora_weights(tmp, unet_layers=unet_layers, text_encoder_layers=te_layers)
        extra = {"base_model": str(Path(self.sd.path).resolve()), "base_model_hash": self.sd.hash,
                 "rank": self.cfg.rank, "alpha": self.cfg.lora_alpha, "dropout": self.cfg.dropout,
                 "alpha_in_weights": self.cfg.lora_alpha != self.cfg.rank,
                 "unet_target_modules": list(UNET_TARGETS),
                 "text_encoder_target_modules": list(TEXT_ENCODER_TARGETS) if te_layers is not None else None,
                 "file": LORA_WEIGHT_NAME, "format": "diffusers-peft", "step": self.cfg.max_steps,
                 "caption_template": self.cfg.caption_template, "size": self.size}
        factory.write_model_info(tmp, ModelInfo(kind="lora", parameterization=self.sd.parameterization,
                                                schedule=self.sd.schedule, recipe=to_dict(self.cfg), extra=extra))
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)


def train_lora(cfg: LoraTrainConfig) -> LoopResult:
    """Train LoRA layers on a frozen SD and write run_dir/model with the diffusers-format LoRA file.

    Args:
        cfg: the method's options (see LoraTrainConfig) and the loop's; --model and --data are required.

    Returns:
        The loop's result; `model_dir` holds pytorch_lora_weights.safetensors and artdiff.json.
    """
    return run_training(cfg, LoraTask(cfg))
