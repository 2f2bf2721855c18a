"""CLIP guidance as a model_fn wrapper: cutouts of the predicted image scored by joint encoders, plus TV, range,
saturation and init losses (Crowson's CLIP-guided diffusion as clip-diffusion-art and Disco Diffusion run it).

Notation (k-diffusion's): the sampler's state is x = x_t / sqrt(alpha_bar) at noise level sigma, so
x_t = x / sqrt(1 + sigma^2) and sqrt(1 - alpha_bar) = sigma / sqrt(1 + sigma^2). The anchors take the gradient g_t
of -loss with respect to x_t and shift the DDIM/DDPM mean with it (guided-diffusion's condition_score); here the
wrapper returns denoised + sigma^2 * g, with g the gradient with respect to x. The two agree exactly, since
d/dx = sqrt(alpha_bar) d/dx_t and sigma^2 sqrt(alpha_bar) = (1 - alpha_bar) / sqrt(alpha_bar). The RMS clamp is
applied to g_t, as the anchors clamp it, so one --clamp-max means the same in every sampler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from artdiff.core.clip_losses import (
    clamp_gradient_rms,
    finite_or_zero,
    prompt_loss,
    range_loss,
    saturation_loss,
    spherical_distance,
    tv_loss,
)
from artdiff.core.denoisers import append_dims
from artdiff.generate.cutouts import CdaCutouts, DiscoCutouts
from artdiff.generate.guidance_schedules import Schedule, parse_schedule, validate

ModelFn = Callable[..., Tensor]
MAX_CUTS_PER_CALL = 256  # cutouts per encoder call (all images of the batch together): bounds the activations
ScheduleValue = float | int | str


@dataclass
class ClipGuidanceConfig:
    """Every knob of the guidance; scales and cut counts take a number, a `start:end` ramp or Disco's list syntax."""

    clip_guidance_scale: ScheduleValue = 5000  # clip-diffusion-art's and Disco's default
    tv_scale: ScheduleValue = 100  # clip-diffusion-art (Disco: 0)
    range_scale: ScheduleValue = 150  # both anchors
    saturation_scale: ScheduleValue = 0
    init_scale: ScheduleValue = 1000  # used only with an init image
    scale_multiplier: float = 1.0  # clip-diffusion-art's: multiplies the CLIP, TV and range scales (its CLI: 50)
    cutouts: Literal["cda", "disco"] = "cda"
    cutn: ScheduleValue = 16  # cda cutouts per batch
    cutn_batches: int = 4  # batches of cutouts per step, their gradients averaged (memory, not more signal)
    cut_overview: ScheduleValue = "[12]*400+[4]*600"  # disco: whole-image views per batch
    cut_innercut: ScheduleValue = "[4]*400+[12]*600"  # disco: inner crops per batch
    cut_ic_pow: ScheduleValue = 1.0
    cut_icgray_p: ScheduleValue = "[0.2]*400+[0]*600"
    skip_augs: bool = False
    fixed_cutouts: bool = False  # no randomness at all: the reference-parity mode
    loss: Literal["spherical", "cos_spherical"] = "spherical"
    clamp_max: float | None = 0.05  # RMS cap of each image's gradient (the anchors' clamp_grad); None: off
    guide: Literal["x0", "blend"] = "x0"  # what the encoders see: the x0 prediction, or Disco's x0*s + x_t*(1-s)

    def __post_init__(self) -> None:
        if not isinstance(self.cutn_batches, int) or isinstance(self.cutn_batches, bool) or not 1 <= self.cutn_batches <= 64:
            raise ValueError(f"--cutn-batches must be a whole number from 1 to 64 (got {self.cutn_batches!r})")
        if self.clamp_max is not None and not (0 < float(self.clamp_max) < float("inf")):
            raise ValueError(f"--clamp-max must be a positive number (got {self.clamp_max!r}); leave it out to clamp at 0.05")
        if not 0 < float(self.scale_multiplier) < float("inf"):
            raise ValueError(f"--scale-multiplier must be a positive number (got {self.scale_multiplier!r})")
        if self.cutouts not in ("cda", "disco"):
            raise ValueError(f"--cutouts must be cda or disco (got {self.cutouts!r})")
        if self.guide not in ("x0", "blend"):
            raise ValueError(f"--clip-guide must be x0 or blend (got {self.guide!r})")
        self.schedules()  # every schedule string parses, or a one-line ValueError now

    def schedules(self) -> dict[str, Schedule]:
        """Each schedulable knob parsed, named by its flag."""
        scales = {name: parse_schedule(getattr(self, name), name=f"--{name.replace('_', '-')}", minimum=0)
                  for name in ("clip_guidance_scale", "tv_scale", "range_scale", "saturation_scale", "init_scale")}
        counts = {name: parse_schedule(getattr(self, name), name=f"--{name.replace('_', '-')}", integer=True,
                                       minimum=0)
                  for name in ("cutn", "cut_overview", "cut_innercut")}
        return {**scales, **counts,
                "cut_ic_pow": parse_schedule(self.cut_ic_pow, name="--cut-ic-pow", minimum=1e-6),
                "cut_icgray_p": parse_schedule(self.cut_icgray_p, name="--cut-icgray-p", minimum=0)}


@dataclass
class EncoderPrompts:
    """One joint encoder, its weight, and the prompts it scores against (unit embeddings (P, D), weights (P,))."""

    encoder: torch.nn.Module  # a models.encoders.JointEncoder, frozen
    embeddings: Tensor
    weights: Tensor
    weight: float = 1.0
    init_embedding: Tensor | None = None  # (1, D): the init image, for init_scale


@dataclass
class GuidanceStats:
    """What the guidance did over a run: steps guided, per-image steps skipped for a non-finite gradient."""

    calls: int = 0
    skipped: int = 0
    losses: list[float] = field(default_factory=list)  # mean loss per call, for the sidecar's loss curve
    skipped_per_image: list[int] = field(default_factory=list)  # image i of the batch: its skipped steps


def clip_guided(model_fn: ModelFn, prompts: Sequence[EncoderPrompts], cfg: ClipGuidanceConfig, *,
                sigmas: Tensor, timestep_of: Callable[[Tensor], Tensor],
                generator: torch.Generator | Sequence[torch.Generator],
                decode: Callable[[Tensor], Tensor] | None = None, stats: GuidanceStats | None = None,
                clamp: tuple[float, float] | None = None) -> ModelFn:
    """Wrap model_fn (x, sigma, **cond) -> x0 (or an (x0, variance) pair) so each call adds sigma^2 times the
    guidance gradient to x0.

    sigmas: the run's sigmas (for the step index of per-step schedules); timestep_of maps sigma to the model's
    timestep (Disco's 1000-entry schedules); generator: one for the batch, or one per image (each image's cuts
    then come from its own, so an image does not depend on the batch it is in); decode maps a latent x0 to
    [-1, 1] pixels inside the gradient (latent models; None for pixel models); clamp bounds the x0 the step uses
    but not the one differentiated, as improved-diffusion clamps pred_xstart while cond_fn sees it unclamped
    (a clamped x0 would pass no gradient wherever it saturates, which at high noise is almost everywhere).
    """
    if not prompts:
        raise ValueError("CLIP guidance needs at least one encoder with prompts")
    schedules, steps = cfg.schedules(), len(sigmas) - 1
    for schedule_name, schedule in schedules.items():
        validate(schedule, name=f"--{schedule_name.replace('_', '-')}", steps=steps)
    run_sigmas = sigmas[:-1].double().cpu()
    stats = stats if stats is not None else GuidanceStats()

    def value(name: str, step: int, t: int) -> float:
        return schedules[name].at(step, steps=steps, timestep=t)

    def guided(x: Tensor, sigma: Tensor, **cond) -> Tensor:
        s = float(sigma.reshape(-1)[0])
        step = int((run_sigmas - s).abs().argmin())  # Heun and friends call between sigmas: the nearest step
        t = int(timestep_of(sigma.reshape(-1)[:1].float()).round().item())
        with torch.inference_mode(False), torch.enable_grad():
            x_in = x.detach().clone().requires_grad_()
            sigma_in = sigma.detach().clone()
            cond = {k: v.clone() if isinstance(v, Tensor) else v for k, v in cond.items()}
            output = model_fn(x_in, sigma_in, **cond)
            denoised, rest = (output[0], output[1:]) if isinstance(output, tuple) else (output, ())
            g, loss = _guidance_gradient(x_in, denoised, sigma_in, prompts, cfg, step=step, t=t, value=value,
                                         generator=generator, decode=decode)
        g, skipped = finite_or_zero(g)
        stats.calls += 1
        stats.skipped += int(skipped.sum())
        if len(stats.skipped_per_image) != len(skipped):
            stats.skipped_per_image = [0] * len(skipped)
        stats.skipped_per_image = [n + int(k) for n, k in zip(stats.skipped_per_image, skipped.tolist())]
        stats.losses.append(loss)
        scale_t = append_dims(torch.sqrt(1 + sigma.to(g.dtype) ** 2), g.ndim)  # g_t = g * sqrt(1 + sigma^2)
        if cfg.clamp_max is not None:
            g = clamp_gradient_rms(g * scale_t, float(cfg.clamp_max)) / scale_t
        base = denoised.detach() if clamp is None else denoised.detach().clamp(*clamp)
        shifted = base + g * append_dims(sigma.to(g.dtype), g.ndim) ** 2
        if rest:
            return (shifted, *(r.detach() if isinstance(r, Tensor) else r for r in rest))
        return shifted

    return guided


def _guidance_gradient(x: Tensor, denoised: Tensor, sigma: Tensor, prompts: Sequence[EncoderPrompts],
                       cfg: ClipGuidanceConfig, *, step: int, t: int, value, generator: torch.Generator,
                       decode) -> tuple[Tensor, float]:
    """-d loss / d x for one call, the cutouts' gradients accumulated batch by batch on the guided image."""
    pixels_x0 = decode(denoised) if decode is not None else denoised  # (B, 3, H, W) in [-1, 1]
    if cfg.guide == "blend":
        # Disco's x_in = x0 * s + x_t * (1 - s), s = sqrt(1 - alpha_bar): pixel models only (x_t is pixels).
        s = append_dims(sigma / torch.sqrt(1 + sigma ** 2), x.ndim)
        image = pixels_x0 * s + (x / torch.sqrt(1 + append_dims(sigma, x.ndim) ** 2)) * (1 - s)
    else:
        image = pixels_x0
    leaf = image.detach().requires_grad_()
    multiplier = float(cfg.scale_multiplier)
    clip_scale = value("clip_guidance_scale", step, t) * multiplier
    grad_in = torch.zeros_like(leaf)
    total = 0.0
    cutouts = _cutouts(cfg, step, t, value, size=_cut_size(prompts))
    if clip_scale > 0 and cutouts is not None:
        # Every batch of cuts is drawn first (in the anchors' order), then as many batches as MAX_CUTS_PER_CALL
        # allows go through each encoder in one call and one backward: the mean over all their cuts is the mean
        # of the batches' means, so the gradient is the anchors' sum over batches / cutn_batches, in fewer calls.
        cut_sets = [_cut(cutouts, leaf, generator) for _ in range(cfg.cutn_batches)]  # each (B, N, 3, S, S)
        batch, n = cut_sets[0].shape[:2]
        per_call = max(1, MAX_CUTS_PER_CALL // max(1, batch * n))
        for start in range(0, len(cut_sets), per_call):
            chunk = torch.cat(cut_sets[start:start + per_call], dim=1)  # (B, k*N, 3, S, S)
            loss = leaf.new_zeros(batch)
            for entry in prompts:
                # unclamped, as the anchors hand their cuts to CLIP: a clamp would stop the gradient on every
                # pixel the prediction overshoots
                embeds = entry.encoder.embed_images((chunk.flatten(0, 1) + 1) / 2)  # (B*k*N, D)
                loss = loss + entry.weight * prompt_loss(embeds.reshape(batch, chunk.shape[1], -1),
                                                         entry.embeddings, entry.weights, loss=cfg.loss)
            share = (chunk.shape[1] // n) / cfg.cutn_batches  # this chunk's batches, of all of them
            loss = loss.sum() * clip_scale * share
            grad_in = grad_in + torch.autograd.grad(loss, leaf)[0]
            total += float(loss.detach())
    aux = leaf.new_zeros(())
    tv, sat = value("tv_scale", step, t) * multiplier, value("saturation_scale", step, t)
    if tv > 0:
        aux = aux + tv_loss(leaf).sum() * tv
    if sat > 0:
        aux = aux + saturation_loss(leaf).sum() * sat
    init = value("init_scale", step, t)
    if init > 0 and any(entry.init_embedding is not None for entry in prompts):
        full = ((leaf + 1) / 2).clamp(0, 1)
        for entry in prompts:
            if entry.init_embedding is not None:
                distance = spherical_distance(entry.encoder.embed_images(full), entry.init_embedding)
                aux = aux + distance.sum() * init
    if aux.requires_grad:
        grad_in = grad_in + torch.autograd.grad(aux, leaf)[0]
        total += float(aux.detach())
    outputs, grads = [image], [grad_in]
    range_scale = value("range_scale", step, t) * multiplier
    if range_scale > 0:  # on the x0 prediction itself, as both anchors do
        r = range_loss(pixels_x0).sum() * range_scale
        outputs.append(r)
        grads.append(None)
        total += float(r.detach())
    grad_x = torch.autograd.grad(outputs, x, [g if g is not None else torch.ones_like(o) for o, g in
                                              zip(outputs, grads)], allow_unused=True)[0]
    if grad_x is None:
        grad_x = torch.zeros_like(x)
    return -grad_x.detach(), total / max(1, x.shape[0])


def _cut(cutouts, images: Tensor, generator: torch.Generator | Sequence[torch.Generator]) -> Tensor:
    """Every image's cuts (B, N, 3, S, S): from the batch's generator, or each image from its own."""
    if isinstance(generator, torch.Generator):
        return cutouts(images, generator=generator)
    if len(generator) != len(images):
        raise ValueError(f"one generator per image: {len(images)} images, {len(generator)} generators")
    return torch.cat([cutouts(images[i:i + 1], generator=g) for i, g in enumerate(generator)])


def _cut_size(prompts: Sequence[EncoderPrompts]) -> int:
    sizes = {int(entry.encoder.preprocessing.output_size) for entry in prompts}
    return max(sizes)  # one cut set for all encoders; each encoder's preprocessing resizes to its own input


def _cutouts(cfg: ClipGuidanceConfig, step: int, t: int, value, *, size: int):
    """This step's cutout maker, with its scheduled counts; None when the step has no cuts."""
    if cfg.cutouts == "cda":
        cutn = int(value("cutn", step, t))
        return CdaCutouts(cutn=cutn, size=size, skip_augs=cfg.skip_augs, fixed=cfg.fixed_cutouts) if cutn else None
    overview, inner = int(value("cut_overview", step, t)), int(value("cut_innercut", step, t))
    if overview + inner == 0:
        return None
    return DiscoCutouts(overview=overview, innercut=inner, size=size, ic_pow=value("cut_ic_pow", step, t),
                        ic_grey_p=value("cut_icgray_p", step, t), skip_augs=cfg.skip_augs, fixed=cfg.fixed_cutouts)
