"""Our sampling loop against diffusers' scheduler loop on the same UNet, weights, timesteps and noise.

For each UNet size (tiny, small), batch (1, 8) and sampler (Euler, DDIM, DPM++ 2M) it checks that the
outputs are equal (max abs difference) and prints the time ratio ours / diffusers: the median over --repeats
back-to-back pairs in alternating (ABBA) order, with its quartiles (_timing.py). The "none" rows swap the
UNet for a one-multiply stand-in, which isolates what each loop itself costs per step (the UNet is the same
call in both, so this is where they differ).
Usage: python benchmarks/sampler_vs_diffusers.py [--json] [--steps 20] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
from functools import partial

import torch
from _timing import CLOCKS, outside_text, paired
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UNet2DConditionModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput as UNet2DOutput

from artdiff.core.denoisers import DiscreteDenoiser
from artdiff.core.samplers import sample_ddim, sample_dpmpp_2m, sample_euler
from artdiff.core.schedules import append_zero, sigmas_at

SD = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
      "steps_offset": 1}
UNETS = {
    "tiny": {"block_out_channels": (32, 64), "layers_per_block": 1, "cross_attention_dim": 32, "norm_num_groups": 8,
             "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
             "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"), "sample_size": 16},
    "small": {"block_out_channels": (64, 128, 256), "layers_per_block": 2, "cross_attention_dim": 128,
              "attention_head_dim": 8, "sample_size": 32,
              "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
              "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")},
}
class NoUNet(torch.nn.Module):
    """A stand-in with the UNet's call signature that costs one multiply: what remains is the loop."""

    def forward(self, x, t, encoder_hidden_states=None):
        return UNet2DOutput(sample=x * 0.9)


SAMPLERS = {
    "euler": (EulerDiscreteScheduler, sample_euler),
    "ddim": (DDIMScheduler, sample_ddim),
    "dpm++2m": (DPMSolverMultistepScheduler, sample_dpmpp_2m),
}


def diffusers_loop(unet, scheduler, noise, cond, steps):
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps = unet(scheduler.scale_model_input(x, t), t, encoder_hidden_states=cond).sample
        x = scheduler.step(eps, t, x).prev_sample
    return x


def our_loop(unet, scheduler, noise, cond, steps, sampler):
    denoiser = DiscreteDenoiser(lambda x, t, **c: unet(x, t, **c).sample, scheduler.alphas_cumprod)
    if isinstance(scheduler, EulerDiscreteScheduler):
        sigmas = scheduler.sigmas.to(torch.float64)  # same timesteps: the scheduler's own sigmas
        x = noise * scheduler.init_noise_sigma
    else:
        sigmas = append_zero(sigmas_at(scheduler.timesteps.to(torch.float64), denoiser.sigma_table))
        x = noise * (sigmas[0] ** 2 + 1).sqrt().to(noise.dtype)
    return sampler(denoiser, x, sigmas.to(noise.device), extra={"encoder_hidden_states": cond})


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--unets", default="none,tiny,small", help="comma-separated: none, tiny, small")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall: elapsed seconds; cpu: this process's CPU seconds (steadier on a shared machine)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = torch.device(args.device).type == "cuda"  # the networks are timed from inside on CPU only
    rows = []
    specs = {"none": {**UNETS["tiny"], "sample_size": 64}, **UNETS}
    for size in args.unets.split(","):
        spec = specs[size]
        torch.manual_seed(0)
        unet = NoUNet() if size == "none" else UNet2DConditionModel(**spec).to(args.device).eval()
        for batch in (1, 8):
            generator = torch.Generator().manual_seed(0)
            shape = (batch, 4, spec["sample_size"], spec["sample_size"])
            noise = torch.randn(shape, generator=generator).to(args.device)
            cond = torch.randn(batch, 8, spec["cross_attention_dim"], generator=generator).to(args.device)
            for name, (scheduler_cls, sampler) in SAMPLERS.items():
                # SD's scheduler config: no x0 clipping (DDIMScheduler clips by default).
                scheduler = scheduler_cls(**SD, **({"clip_sample": False} if scheduler_cls is DDIMScheduler else {}))
                repeats = args.repeats * 4 if size == "none" else args.repeats  # cheap: more runs, less noise
                timing = paired(partial(diffusers_loop, unet, scheduler, noise, cond, args.steps),
                                partial(our_loop, unet, scheduler, noise, cond, args.steps, sampler), repeats,
                                clock=args.clock, networks=None if cuda else ([unet], [unet]))
                rows.append({"unet": size, "batch": batch, "sampler": name, **timing.row(),
                             "max_abs_diff": float((timing.ours_out - timing.reference_out).abs().max())})
    result = {"machine": f"{platform.machine()} {args.device}, {args.threads} threads", "steps": args.steps,
              "torch": torch.__version__, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.steps} steps on {result['machine']}; ratio = artdiff / diffusers (below 1: ours is faster); "
          "unet none = the loops alone")
    for r in rows:
        print(f"  {r['unet']:5s} batch {r['batch']}  {r['sampler']:8s} diffusers {r['diffusers_s']:8.4f}s  "
              f"artdiff {r['artdiff_s']:8.4f}s  ratio {r['ratio']:.3f} (quartiles {r['ratio_q1']:.3f}-{r['ratio_q3']:.3f})  "
              f"max|diff| {r['max_abs_diff']:.1e}" + outside_text(r))


if __name__ == "__main__":
    main()
