"""`artdiff train unconditional`: pixel diffusion with improved-diffusion's hybrid objective (Nichol & Dhariwal 2021).

Each step draws, per example and from its own seed: a timestep (uniform or loss-second-moment), the noise and
an optional horizontal flip; the UNet's output is scored by L_simple + the vb term (core.diffusion_losses), each
example weighted by its importance weight 1 / (T p_t). The result is an `unconditional` model directory
(unet/ + artdiff.json) that `artdiff generate --model` samples.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from artdiff.config import to_dict
from artdiff.core.diffusion_losses import hybrid_loss, q_sample, training_tables
from artdiff.core.schedules import ddpm_betas
from artdiff.data.dataset import ImageDataset
from artdiff.errors import UserError
from artdiff.generate.pixel_sample import sample_pixels
from artdiff.models import factory
from artdiff.models.model_info import DEFAULT_VARIANCE, ModelInfo
from artdiff.models.pixel.openai_unet_config import schedule_of
from artdiff.models.pixel.pixel_model import check_makeable_size
from artdiff.train.loop import LoopResult, run_training
from artdiff.train.timestep_sampler import make_timestep_sampler
from artdiff.train.unconditional_config import UnconditionalConfig
from artdiff.train.unconditional_presets import OWN_PRESETS

SAMPLE_SEEDS = list(range(8))  # the fixed seeds of every sample grid


class UnconditionalTask:
    """Images are loaded once at the model's size; each step noises them and scores the UNet's eps (and variance)."""

    def __init__(self, cfg: UnconditionalConfig) -> None:
        self.cfg = cfg
        if cfg.timestep_sampler == "loss-second-moment" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserError("--timestep-sampler loss-second-moment runs in one process for now (each process would "
                            "see only its share of the losses); use uniform with several processes")
        torch.manual_seed(cfg.seed)
        self.model, self.info = _initial_model(cfg)
        if cfg.rescale_learned_sigmas is None:  # resolved once, so the run's config.yaml and recipe record it
            self.cfg = cfg = replace(cfg, rescale_learned_sigmas=_rescales_learned_sigmas(cfg, self.info))
        self.model.train()  # loaders return models in eval mode
        if (self.info.conditioning or {}).get("type", "none") != "none":
            raise UserError(f"{cfg.init} is class-conditional; `artdiff train unconditional` trains models without "
                            "class labels")
        image_size = int(self.info.extra.get("image_size") or self.model.config.sample_size)
        self.size = cfg.size or image_size
        _check_size(self.size, image_size, self.model, fine_tuning=cfg.init is not None, given=bool(cfg.size))
        schedule = self.info.schedule or {}
        self.tables = training_tables(_betas(schedule))
        channels = self.model.config.out_channels
        variance = self.info.extra.get("variance") or ("learned_range" if channels == 6 else DEFAULT_VARIANCE)
        self.learn_sigma = variance == "learned_range"
        if self.learn_sigma != (channels == 6):
            raise UserError(f"the model has {channels} output channels, but its artdiff.json says variance "
                            f"{variance!r}")
        self.rescale_timesteps = bool(self.info.extra.get("rescale_timesteps", False))
        self.sampler = make_timestep_sampler(cfg.timestep_sampler, len(self.tables.betas))
        self.data = ImageDataset(cfg.data, size=self.size)
        self._step: int | None = None
        self._last: dict[str, float] = {}

    def trainable(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def dataset_size(self) -> int:
        return len(self.data)

    def batch(self, indices: list[int]) -> torch.Tensor:
        return self.data.images(indices)  # (B, 3, S, S) in [0, 1]; flips are drawn in loss() from the seeds

    def loss(self, model: torch.nn.Module, batch: torch.Tensor, seeds: list[int], step: int) -> torch.Tensor:
        if step != self._step:  # the previous step's losses join the sampler's history only now
            self.sampler.begin_step()
            self._step = step
        x0, eps, t, weights = self._draws(batch, seeds)
        x_t = q_sample(self.tables, x0, t, eps)
        timestep = t.float() * (1000.0 / len(self.tables.betas)) if self.rescale_timesteps else t
        output = model(x_t, timestep.to(x0.device)).sample.float()  # (B, 3 or 6, S, S); the loss in float32
        terms = hybrid_loss(self.tables, output, x0=x0, x_t=x_t, eps=eps, t=t,
                            parameterization=self.info.parameterization or "eps", learn_sigma=self.learn_sigma,
                            rescale_learned_sigmas=self.cfg.rescale_learned_sigmas, snr_gamma=self.cfg.snr_gamma)
        self.sampler.record(seeds, t.tolist(), terms.loss.detach().cpu().tolist())
        self._last = {"mse": float(terms.mse.detach().mean()), "vb": float(terms.vb.detach().mean())}
        return (terms.loss * weights).mean()

    def _draws(self, batch: torch.Tensor, seeds: list[int]):
        """An example's timestep, noise and flip, in that order, from its own seed."""
        ts, weights, epss, flips = [], [], [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            t, weight = self.sampler.draw(g)
            ts.append(t)
            weights.append(weight)
            epss.append(torch.randn(batch.shape[1:], generator=g))
            flips.append(bool(torch.rand((), generator=g) < 0.5) if self.cfg.flip else False)
        device = batch.device
        x0 = batch.float() * 2 - 1  # pixels in [-1, 1]
        flip = torch.tensor(flips, device=device)[:, None, None, None]
        x0 = torch.where(flip, x0.flip(-1), x0)
        return (x0, torch.stack(epss).to(device), torch.tensor(ts, device=device),
                torch.tensor(weights, dtype=torch.float32, device=device))

    def log_extra(self) -> dict[str, float]:
        """The last micro-batch's mean L_simple and vb term, beside the loop's weighted loss."""
        return dict(self._last)

    def task_state(self) -> dict[str, torch.Tensor]:
        return self.sampler.state_dict()

    def load_task_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.sampler.load_state_dict(tensors)

    @torch.no_grad()
    def sample(self, model: torch.nn.Module) -> torch.Tensor | None:
        """A grid of the fixed seeds by DDIM (eta 0) at the training size."""
        return sample_pixels(model, self.info, seeds=SAMPLE_SEEDS, steps=self.cfg.sample_steps, sampler="ddim",
                             size=self.size)

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        """unet/ beside artdiff.json; a converted --init keeps its source, schedule and variance fields."""
        tmp = directory.with_name(f".{directory.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        factory.save_diffusers_model(model, tmp / "unet")
        data = self.info.to_dict()
        data.pop("artdiff_version", None)  # this version wrote it, whichever wrote the --init model
        data.update(recipe=to_dict(self.cfg), image_size=self.size)
        factory.write_model_info(tmp, ModelInfo.from_dict(data))
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)


def _betas(schedule: dict[str, Any]) -> torch.Tensor:
    """The training betas an artdiff.json schedule describes."""
    if schedule.get("type") != "discrete":
        raise UserError(f"the model's schedule {schedule.get('type')!r} is not discrete; an unconditional pixel "
                        "model needs DDPM betas")
    return ddpm_betas(schedule.get("beta_schedule", "linear"), num_train_timesteps=schedule["num_train_timesteps"],
                      beta_start=schedule.get("beta_start", 0.0001), beta_end=schedule.get("beta_end", 0.02))


def _check_size(size: int, image_size: int, model: torch.nn.Module, *, fine_tuning: bool, given: bool) -> None:
    """The training size must be the fine-tuned model's own, and one the UNet can make (pixel_model's rule)."""
    if fine_tuning and size != image_size:
        raise UserError(f"--size {size} differs from the model's image size {image_size}; omit --size to train "
                        "at the model's size")
    check_makeable_size(model, size, what="--size" if given else "the model's size")


def _rescales_learned_sigmas(cfg: UnconditionalConfig, info: ModelInfo) -> bool:
    """The vb weighting the starting model's flags name (a converted or original --init, a published preset), else off."""
    source = info.extra.get("source")
    if isinstance(source, dict) and isinstance(source.get("flags"), dict):
        return bool(source["flags"].get("rescale_learned_sigmas", False))
    if cfg.init is None and cfg.preset not in OWN_PRESETS:
        from artdiff.models.pixel.openai_flags import parse_flags

        return parse_flags(cfg.preset).rescale_learned_sigmas
    return False


def fresh_model_info(cfg: UnconditionalConfig, image_size: int) -> ModelInfo:
    """artdiff.json of a model trained from scratch with an own preset (the kind `unconditional` contract)."""
    target = "x0" if cfg.predict_xstart else "v" if cfg.v_prediction else "eps"
    return ModelInfo(kind="unconditional", parameterization=target,
                     schedule=schedule_of(cfg.noise_schedule, cfg.diffusion_steps), conditioning={"type": "none"},
                     extra={"image_size": image_size,
                            "variance": "learned_range" if cfg.learn_sigma else "fixed_large",
                            "rescale_timesteps": cfg.rescale_timesteps, "pixel_range": [-1, 1]})


def _initial_model(cfg: UnconditionalConfig) -> tuple[torch.nn.Module, ModelInfo]:
    """The UNet and its artdiff.json: loaded from --init, or built from --preset."""
    from diffusers import UNet2DModel

    if cfg.init is not None:
        return _load_init(cfg)
    if cfg.preset in OWN_PRESETS:
        config = dict(OWN_PRESETS[cfg.preset])
        config["out_channels"] = 6 if cfg.learn_sigma else 3
        if cfg.size:
            config["sample_size"] = cfg.size
        return UNet2DModel(**config), fresh_model_info(cfg, config["sample_size"])
    from artdiff.models.pixel.openai_flags import parse_flags, pixel_model_info, unet2d_config

    flags = parse_flags(cfg.preset)
    return UNet2DModel(**unet2d_config(flags)), pixel_model_info(flags)


def _load_init(cfg: UnconditionalConfig) -> tuple[torch.nn.Module, ModelInfo]:
    """--init through the pixel-model loader (model dir, run dir, or original file with --flags)."""
    from artdiff.models.pixel.openai_checkpoint import file_sha256
    from artdiff.models.pixel.pixel_model import load_pixel_model

    pixel = load_pixel_model(cfg.init, flags=cfg.flags)
    source = pixel.info.extra.get("source")
    if Path(cfg.init).is_file() and isinstance(source, dict) and "sha256" not in source:
        source["sha256"] = file_sha256(Path(cfg.init))  # the trained model names the exact file it started from
    return pixel.unet.float(), pixel.info


def train_unconditional(cfg: UnconditionalConfig) -> LoopResult:
    """Train (or fine-tune) and write run_dir/model, an `unconditional` model directory."""
    task = UnconditionalTask(cfg)
    return run_training(task.cfg, task)  # the config with rescale_learned_sigmas resolved
