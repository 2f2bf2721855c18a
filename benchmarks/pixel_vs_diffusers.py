"""Our pixel-model sampling (sample_pixels) against diffusers' DDIMPipeline and DDPMPipeline on the same UNet2DModel.

Both sides get one list of per-image generators (torch.Generator().manual_seed(seed)), and both draw image i's
starting noise and every later DDPM step's noise from its own generator as randn((1, 3, H, W)), in the same
order; so not only DDIM (eta 0) but also DDPM with learned-range variance (Nichol & Dhariwal 2021) is compared
sample for sample. Timesteps are the same: respacing ddimN = DDIMScheduler's "leading" spacing, and N = the
DDPMScheduler's "linspace" one (checked before timing). Our side is the whole call a user makes (sigmas, memory
check, per-step finite check, [0, 1] output); diffusers' is the pipeline call with output_type="pt".

Remaining differences: diffusers keeps betas and alpha-bar in float32 (we use float64), so its
1 - abar_t / abar_prev of a small beta keeps about four digits and its learned-range log variance differs by
~1e-4; the images (in [0, 1]) then differ by ~1e-5 to 1e-4. DDIMScheduler has no learned variance: a forward hook
hands its step the UNet's first 3 (eps) channels, which is what a diffusers user has to do with these models.

Rows: "none" swaps the UNet for a one-op stand-in (the loops alone); tiny (the tests' pixel-tiny, 16 px) and
mini (pixel-mini, 64 px) are CPU-sized; lsun-256 and guided-256 (improved- and guided-diffusion's published
256 px architectures, random weights) only on --device cuda or when named.
Usage: python benchmarks/pixel_vs_diffusers.py [--json] [--unets none,tiny] [--steps 20] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from functools import partial

import torch
from _timing import CLOCKS, outside_text, paired
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.configuration_utils import FrozenDict
from diffusers.models.unets.unet_2d import UNet2DOutput

from artdiff.core.respacing import space_timesteps
from artdiff.core.samplers import SAMPLERS
from artdiff.generate.pixel_sample import make_pixel_denoiser, pixel_sigmas, sample_pixels
from artdiff.models.model_info import ModelInfo
from artdiff.models.pixel.openai_flags import parse_flags, pixel_model_info, unet2d_config
from artdiff.train.unconditional_presets import PIXEL_MINI, PIXEL_TINY
from artdiff.utils import memory

PUBLISHED = {"lsun-256": "lsun-uncond-256", "guided-256": "openai-256-uncond"}  # openai_flags.PRESETS
CPU_SIZED = ("none", "tiny", "mini")
# What both sides' maximum difference must stay below (images in [0, 1]): DDIM only meets float32 alpha-bar
# rounding; DDPM also meets the float32 learned-range log variance, scaled by each step's noise.
TOLERANCE = {"ddim": 1e-4, "ddpm": 1e-3}


class NoUNet(torch.nn.Module):
    """A stand-in with UNet2DModel's interface whose forward is one op: what remains is the two loops."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = FrozenDict(config)  # a dict with attribute access, as a model's config is
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device and dtype

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.anchor.dtype

    def forward(self, x, t, class_labels=None, return_dict=True):
        return UNet2DOutput(sample=x.repeat(1, 2, 1, 1))  # eps channels, then variance channels


def own_info(size: int) -> ModelInfo:
    """artdiff.json of a pixel-* preset trained by us: improved-diffusion's linear betas, learned range."""
    return ModelInfo(kind="unconditional", parameterization="eps",
                     schedule={"type": "discrete", "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                               "num_train_timesteps": 1000},
                     conditioning={"type": "none"},
                     extra={"image_size": size, "variance": "learned_range", "rescale_timesteps": False,
                            "pixel_range": [-1, 1]})


def build(name: str, device: str) -> tuple[torch.nn.Module, ModelInfo]:
    """A random-weight UNet (or the stand-in) and its artdiff.json."""
    torch.manual_seed(0)
    if name in PUBLISHED:
        flags = parse_flags(PUBLISHED[name])
        unet, info = UNet2DModel(**unet2d_config(flags)), pixel_model_info(flags)
    elif name == "none":
        unet, info = NoUNet({**PIXEL_TINY, "sample_size": 64}), own_info(64)
    else:
        config = {"tiny": PIXEL_TINY, "mini": PIXEL_MINI}[name]
        unet, info = UNet2DModel(**config), own_info(config["sample_size"])
    return unet.to(device).eval(), info


def scheduler_for(info: ModelInfo, sampler: str):
    """diffusers' scheduler with the model's betas, no x0 clipping, and our respacing's timesteps."""
    schedule = info.schedule
    betas = {"num_train_timesteps": schedule["num_train_timesteps"], "beta_schedule": schedule["beta_schedule"],
             "beta_start": schedule["beta_start"], "beta_end": schedule["beta_end"],
             "prediction_type": "epsilon", "clip_sample": False}
    if sampler == "ddim":  # ddimN = range(0, T, T // N): leading spacing, alpha-bar 1 after the last step
        return DDIMScheduler(**betas, timestep_spacing="leading", steps_offset=0, set_alpha_to_one=True)
    return DDPMScheduler(**betas, variance_type="learned_range", timestep_spacing="linspace")


def respacing_for(sampler: str, steps: int) -> str:
    """improved-diffusion's spacing string that keeps the same timesteps as the scheduler above."""
    return f"ddim{steps}" if sampler == "ddim" else str(steps)


def check_same_timesteps(scheduler, respacing: str, steps: int) -> None:
    scheduler.set_timesteps(steps)
    theirs = scheduler.timesteps.tolist()
    ours = space_timesteps(scheduler.config.num_train_timesteps, respacing)[::-1]
    if theirs != ours:
        raise SystemExit(f"timesteps differ for {respacing}: diffusers {theirs[:4]}..., ours {ours[:4]}...")


def eps_channels(module, args, output):
    """DDIMScheduler does not split a learned variance: hand it the eps channels only."""
    return UNet2DOutput(sample=output.sample[:, : module.config.in_channels])


def diffusers_call(pipe, seeds: list[int], steps: int, learned: bool):
    hook = pipe.unet.register_forward_hook(eps_channels) if learned else None
    try:
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return pipe(batch_size=len(seeds), generator=generators, num_inference_steps=steps, output_type="pt").images
    finally:
        if hook is not None:
            hook.remove()


def our_call(unet, info, seeds: list[int], sampler: str, respacing: str):
    """What a user's call does: denoiser, sigmas, memory check, noise, the checked loop, [0, 1] pixels."""
    return sample_pixels(unet, info, seeds=seeds, sampler=sampler, respacing=respacing)


def our_loop(denoiser, sigmas, shape: tuple[int, int, int], seeds: list[int], sampler: str):
    """sample_pixels' loop alone, on a denoiser and sigmas built once (the per-call setup left out)."""
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    noise = torch.cat([torch.randn((1, *shape), generator=g) for g in generators]).to(sigmas.device)
    x = noise * math.sqrt(1 + float(sigmas[0]) ** 2)
    options = ({"eta": 0.0} if sampler == "ddim" else {"variance": "learned", "variance_fn": denoiser.raw})
    x = SAMPLERS[sampler](denoiser, x, sigmas, generator=generators, **options)
    return ((x.float() + 1) / 2).clamp_(0, 1)


def setup_ms(unet, info, batch: int, respacing: str, repeats: int = 20) -> float:
    """Median milliseconds of sample_pixels' per-call setup: denoiser (its sigma table), sigmas, memory check."""
    side = unet.config.sample_size
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        denoiser = make_pixel_denoiser(unet, info)
        pixel_sigmas(denoiser, steps=0, respacing=respacing)
        memory.check_pixel_sampling_fits(unet.config, device=unet.device, batch=batch, height=side, width=side,
                                         dtype_bytes=4)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 3)


def bench_cell(unet, info, name: str, batch: int, sampler: str, args, cuda: bool) -> dict:
    scheduler = scheduler_for(info, sampler)
    respacing = respacing_for(sampler, args.steps)
    check_same_timesteps(scheduler, respacing, args.steps)
    pipe = (DDIMPipeline if sampler == "ddim" else DDPMPipeline)(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    seeds = list(range(100, 100 + batch))
    learned = sampler == "ddim" and unet.config.out_channels == 2 * unet.config.in_channels
    repeats = args.repeats * 4 if name == "none" else args.repeats  # cheap: more runs, less noise
    reference = partial(diffusers_call, pipe, seeds, args.steps, learned)
    networks = None if cuda else ([unet], [unet])
    timing = paired(reference, partial(our_call, unet, info, seeds, sampler, respacing), repeats, clock=args.clock,
                    networks=networks)
    diff = float((timing.ours_out.float() - timing.reference_out.float()).abs().max())
    row = {"unet": name, "parameters": sum(p.numel() for p in unet.parameters()), "size": unet.config.sample_size,
           "batch": batch, "sampler": sampler, "respacing": respacing, **timing.row(), "max_abs_diff": diff,
           "tolerance": TOLERANCE[sampler], "equal": diff <= TOLERANCE[sampler],
           "artdiff_setup_ms": setup_ms(unet, info, batch, respacing)}
    if name == "none":  # the loops alone, our per-call setup left out: where the step code itself differs
        denoiser = make_pixel_denoiser(unet, info)
        sigmas = pixel_sigmas(denoiser, steps=args.steps, respacing=respacing)
        shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        loop = paired(reference, partial(our_loop, denoiser, sigmas, shape, seeds, sampler), repeats,
                      clock=args.clock, networks=networks)
        row["loop_only"] = {key: value for key, value in loop.row().items() if not key.endswith("runs_s")}
        row["loop_only"]["max_abs_diff"] = float((loop.ours_out - loop.reference_out.float()).abs().max())
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unets", default="none,tiny",
                        help="comma-separated: none, tiny, mini, lsun-256, guided-256 (default none,tiny; "
                             "with --device cuda: all)")
    parser.add_argument("--samplers", default="ddim,ddpm")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8; 256 px: 1,4)")
    parser.add_argument("--steps", type=int, default=20, help="respaced steps: ddimN for ddim, N for ddpm")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall: elapsed seconds; cpu: this process's CPU seconds (steadier on a shared machine)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = torch.device(args.device).type == "cuda"  # the networks are timed from inside on CPU only
    names = args.unets.split(",") if args.unets else []
    if cuda and args.unets == parser.get_default("unets"):
        names = [*CPU_SIZED, *PUBLISHED]
    unknown = [n for n in names if n not in (*CPU_SIZED, *PUBLISHED)]
    if unknown:
        parser.error(f"unknown --unets {unknown[0]!r}; use none, tiny, mini, lsun-256, guided-256")
    rows = []
    for name in names:
        unet, info = build(name, args.device)
        batches = args.batches or ("1,4" if name in PUBLISHED else "1,8")
        for batch in map(int, batches.split(",")):
            for sampler in args.samplers.split(","):
                rows.append(bench_cell(unet, info, name, batch, sampler, args, cuda))
    result = {"machine": f"{platform.machine()} {args.device}, {args.threads} threads, "
                         f"load average {os.getloadavg()[0]:.1f}",
              "steps": args.steps, "torch": torch.__version__, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.steps} respaced steps on {result['machine']}; ratio = artdiff / diffusers (below 1: ours is "
              "faster); unet none = the loops alone")
        for r in rows:
            print(f"  {r['unet']:10s} batch {r['batch']}  {r['sampler']:4s} diffusers {r['diffusers_s']:8.4f}s  "
                  f"artdiff {r['artdiff_s']:8.4f}s  ratio {r['ratio']:.3f} (quartiles {r['ratio_q1']:.3f}-"
                  f"{r['ratio_q3']:.3f})  max|diff| {r['max_abs_diff']:.1e}  our setup {r['artdiff_setup_ms']:.1f} ms"
                  + outside_text(r))
            if "loop_only" in r:
                loop = r["loop_only"]
                print(f"  {'':10s} loop alone (setup left out): ratio {loop['ratio']:.3f} (quartiles "
                      f"{loop['ratio_q1']:.3f}-{loop['ratio_q3']:.3f})" + outside_text(loop))
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
