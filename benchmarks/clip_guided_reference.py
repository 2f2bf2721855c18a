"""clip-diffusion-art's CLIP-guided DDIM loop, re-implemented from its code for parity and timing (not shipped).

What it follows (sreevishnu-damodaran/clip-diffusion-art `sample.py`, and the crowsonkb guided-diffusion fork's
`ddim_sample` with `condition_score` that it calls), in x_t coordinates on the respaced process:
- per step, one forward for p_mean_variance (pred_xstart, unclamped with its default clip_denoised False), then
  cond_fn's own forward with gradients: x_in = pred_xstart * fac + x * (1 - fac), fac = sqrt(1 - abar);
- cutn_batches rounds of cutouts of (x_in + 1) / 2, each embedded, spherical distance to every target,
  weights divided by |sum|, mean over cuts, times the guidance scale, gradient w.r.t. x_in divided by
  cutn_batches; then TV on x_in, range on pred_xstart, saturation on x_in (a batch mean), whose gradient is
  taken w.r.t. x_in too, so the range term reaches nothing (pred_xstart is not downstream of x_in): it is
  inert in the anchor, as in Crowson's notebook and Disco;
- grad = -d(x_in)/dx applied to that gradient, then clamp_grad: times min(RMS, 0.05) / RMS over the batch;
- condition_score: eps = eps(pred_xstart) - sqrt(1 - abar) grad, pred_xstart from it, and the DDIM update
  with eta (its noise from the global RNG, so parity runs use eta 0);
- skip_timesteps without an init image starts from q_sample(0, t) = sqrt(1 - abar) noise.
Only the cutout maker is shared with artdiff (both call the same one, in fixed mode for parity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from artdiff.core.respacing import space_timesteps
from artdiff.core.schedules import alphas_cumprod, ddpm_betas


def spherical(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """clip-diffusion-art's spherical_dist_loss."""
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def tv(image: torch.Tensor) -> torch.Tensor:
    """Its tv_loss: L2 total variation with replicate padding, per image."""
    image = F.pad(image, (0, 1, 0, 1), "replicate")
    dx = image[..., :-1, 1:] - image[..., :-1, :-1]
    dy = image[..., 1:, :-1] - image[..., :-1, :-1]
    return (dx**2 + dy**2).mean([1, 2, 3])


def out_of_range(image: torch.Tensor) -> torch.Tensor:
    """Its range_loss."""
    return (image - image.clamp(-1, 1)).pow(2).mean([1, 2, 3])


@torch.no_grad()
def reference_sample(unet, schedule: dict, encoder, targets: torch.Tensor, weights: list[float], *, noise: torch.Tensor,
                     respacing: str, cutouts, cutn_batches: int = 4, clip_scale: float = 5000, tv_scale: float = 100,
                     range_scale: float = 150, sat_scale: float = 0, clamp_grad: bool = True, skip: int = 0,
                     eta: float = 0.0, generator=None) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] from `noise` (B, 3, H, W), as clip-diffusion-art's sample() makes them.

    `cutouts(x01, generator)` returns (B, N, 3, S, S) in [0, 1]; targets (P, D) are the prompt embeddings.
    """
    betas = ddpm_betas(schedule.get("beta_schedule", "linear"), num_train_timesteps=schedule["num_train_timesteps"],
                       beta_start=schedule.get("beta_start", 1e-4), beta_end=schedule.get("beta_end", 0.02))
    kept = space_timesteps(len(betas), respacing)
    abar = alphas_cumprod(betas).double()[kept]
    w = torch.tensor(weights, dtype=torch.float32)
    w = w / w.sum().abs()

    def eps_of(x, i):
        t = torch.full((x.shape[0],), kept[i], dtype=torch.long)
        return unet(x, t).sample[:, :3]

    def cond_fn(x, i):
        a = float(abar[i])
        with torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().requires_grad_()
            pred = (x - (1 - a) ** 0.5 * eps_of(x, i)) / a**0.5  # clip_denoised=False inside cond_fn
            fac = (1 - a) ** 0.5
            x_in = pred * fac + x * (1 - fac)
            x_in_grad = torch.zeros_like(x_in)
            for _ in range(cutn_batches):
                cuts = cutouts(x_in.add(1).div(2), generator)  # (B, N, 3, S, S) in [0, 1]
                n, cutn = cuts.shape[:2]
                embeds = encoder.embed_images(cuts.transpose(0, 1).flatten(0, 1))  # cut-major, as its cat is
                dists = spherical(embeds.unsqueeze(1), targets.unsqueeze(0)).view(cutn, n, -1)
                losses = dists.mul(w).sum(2).mean(0)
                x_in_grad += torch.autograd.grad(losses.sum() * clip_scale, x_in)[0] / cutn_batches
            total = tv(x_in).sum() * tv_scale + out_of_range(pred).sum() * range_scale \
                + torch.abs(x_in - x_in.clamp(-1, 1)).mean() * sat_scale
            x_in_grad += torch.autograd.grad(total, x_in, allow_unused=True)[0]
            grad = -torch.autograd.grad(x_in, x, x_in_grad)[0]
        if clamp_grad:
            magnitude = grad.square().mean().sqrt()
            grad = grad * magnitude.clamp(max=0.05) / magnitude
        return grad

    start = len(kept) - 1 - skip
    x = noise.double() if skip == 0 else (1 - abar[start]).sqrt() * noise.double()
    x = x.float()
    for i in range(start, -1, -1):
        a = float(abar[i])
        a_prev = float(abar[i - 1]) if i > 0 else 1.0
        eps = eps_of(x, i)
        pred = (x - (1 - a) ** 0.5 * eps) / a**0.5
        eps = (x / a**0.5 - pred) / (1 / a - 1) ** 0.5  # _predict_eps_from_xstart
        eps = eps - (1 - a) ** 0.5 * cond_fn(x, i)
        pred = x / a**0.5 - (1 / a - 1) ** 0.5 * eps  # _predict_xstart_from_eps
        sigma = eta * ((1 - a_prev) / (1 - a)) ** 0.5 * (1 - a / a_prev) ** 0.5
        x = pred * a_prev**0.5 + (1 - a_prev - sigma**2) ** 0.5 * eps
        if i > 0 and sigma > 0:
            x = x + sigma * torch.randn_like(x)
    return ((x + 1) / 2).clamp(0, 1)
