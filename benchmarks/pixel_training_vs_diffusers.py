"""Fine-tuning throughput (images/s) of our pixel-model training step against a diffusers train_unconditional.py loop.

Ours is the shared loop's own step (train.loop._one_step: the task's loss, backward, finite check, gradient
clip, AdamW) on `artdiff train unconditional`'s task, then the LR schedule and the EMA update, as run_training
does them. The reference follows diffusers' examples/unconditional_image_generation/train_unconditional.py:
torch.randn noise, torch.randint timesteps, DDPMScheduler.add_noise, the UNet, F.mse_loss on the eps channels,
backward, clip_grad_norm_(1.0), AdamW, the LR scheduler, diffusers' EMAModel and grads set to None. That example
has no learned variance, so both sides add the same vb term (core.diffusion_losses, Nichol & Dhariwal 2021:
the variance channels' bound with the mean detached), and both use one AdamW setting: the work is equal.

Both sides train their own copy of one random-weight UNet2DModel on the same in-memory batch. An equality check
runs one step of each from equal weights with our batch, noise and timesteps handed to the reference: the losses
and the clipped gradients AdamW receives must agree (float32 alpha-bar in add_noise against our float64 tables).
Each cell is timed contiguous (NCHW) and with the UNet in channels_last memory format, on both sides.
Usage: python benchmarks/pixel_training_vs_diffusers.py [--json] [--unets tiny] [--batch 8] [--repeats 10]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from _timing import CLOCKS, paired
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel

import artdiff.train.unconditional as unconditional
from artdiff.core.diffusion_losses import learned_range_log_variance_at, predict_x0_from_eps, vb_term_bits
from artdiff.core.ema import EMA, ema_decay
from artdiff.train.loop import LoopState, _one_step, data_order, example_seeds
from artdiff.train.unconditional_config import UnconditionalConfig

PRESETS = {"tiny": "pixel-tiny", "mini": "pixel-mini", "lsun-256": "lsun-uncond-256"}
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
ADAM: dict = {}  # {"fused": True} with --fused-adam


class InMemoryImages:
    """Stands in for data.dataset.ImageDataset: fixed random images in [0, 1], so no disk or decoding is timed."""

    def __init__(self, root: Path, *, size: int, count: int = 64) -> None:
        self.pixels = torch.rand((count, 3, size, size), generator=torch.Generator().manual_seed(7))

    def __len__(self) -> int:
        return len(self.pixels)

    def images(self, indices: list[int]) -> torch.Tensor:
        return self.pixels[indices]


def make_task(name: str, batch: int, out: Path):
    """`artdiff train unconditional`'s task on the named preset, its images in memory."""
    cfg = UnconditionalConfig(data=out / "data", out=out / "run", preset=PRESETS[name], batch_size=batch,
                              warmup_steps=0, lr_schedule="constant", progress=False)
    unconditional.ImageDataset = InMemoryImages  # the benchmark's data; the task's own code runs unchanged
    return cfg, unconditional.UnconditionalTask(cfg)


class Ours:
    """The shared loop's step on the task, with its LR schedule and EMA update after it."""

    def __init__(self, cfg, task, model: torch.nn.Module) -> None:
        AcceleratorState._reset_state()
        GradientState._reset_state()
        on_cpu = next(model.parameters()).device.type == "cpu"  # accelerate would move it to a GPU otherwise
        self.cfg, self.task, self.accelerator = cfg, task, Accelerator(mixed_precision="no", cpu=on_cpu)
        # run_training's optimizer; --fused-adam shows what torch's fused AdamW would change (both sides)
        optimizer = torch.optim.AdamW(list(model.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay, **ADAM)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.params = list(model.parameters())
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: cfg.lr_factor(step))
        self.ema, self.state = EMA(self.params), LoopState()

    def step(self) -> float:
        loss = _one_step(self.cfg, self.task, self.model, self.optimizer, self.accelerator, self.state,
                         self.cfg.batch_size, 1, 0)
        self.scheduler.step()
        self.ema.update(self.params, ema_decay(self.state.step + 1, decay=self.cfg.ema_decay,
                                               warmup=self.cfg.ema_warmup))
        self.state.step += 1
        self.state.position += self.cfg.batch_size
        return loss


class Diffusers:
    """train_unconditional.py's step, plus the vb term of the learned variance."""

    def __init__(self, cfg, task, model: torch.nn.Module) -> None:
        schedule = task.info.schedule
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=schedule["num_train_timesteps"],
                                             beta_schedule=schedule["beta_schedule"],
                                             beta_start=schedule["beta_start"], beta_end=schedule["beta_end"])
        self.model, self.tables, self.task, self.cfg = model, task.tables, task, cfg
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **ADAM)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0)  # constant
        self.ema = EMAModel(model.parameters(), decay=cfg.ema_decay, use_ema_warmup=True)
        self.position = 0

    def step(self, draws: tuple[torch.Tensor, torch.Tensor] | None = None, indices: list[int] | None = None) -> float:
        count = self.cfg.batch_size
        indices = indices or [(self.position + i) % self.task.dataset_size() for i in range(count)]
        self.position += count
        device = next(self.model.parameters()).device
        clean = self.task.batch(indices).to(device) * 2 - 1  # the example's Normalize([0.5], [0.5])
        if draws is None:
            noise = torch.randn(clean.shape, device=device)
            timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (count,), device=device)
        else:
            noise, timesteps = (d.to(device) for d in draws)
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        output = self.model(noisy, timesteps).sample
        eps, v = output[:, :3], output[:, 3:]
        loss = F.mse_loss(eps.float(), noise.float())
        frozen_x0 = predict_x0_from_eps(self.tables, noisy, timesteps, eps.detach().float())
        vb = vb_term_bits(self.tables, x0=clean, x_t=noisy, t=timesteps, model_x0=frozen_x0,
                          model_log_variance=learned_range_log_variance_at(self.tables, v.float(), timesteps))
        loss = loss + vb.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.ema.step(self.model.parameters())
        for param in self.model.parameters():
            param.grad = None
        return float(loss.detach())


def _keep_gradients(optimizer, kept: list) -> None:
    """Record the (clipped) gradients the optimizer is about to apply."""
    step = optimizer.step

    def recording(*args, **kwargs):
        kept.extend(p.grad.detach().clone() for group in optimizer.param_groups for p in group["params"])
        return step(*args, **kwargs)

    optimizer.step = recording


def equality(cfg, task, initial: torch.nn.Module) -> dict:
    """One step of each side from equal weights, the reference given our batch, noise and timesteps.

    Compared: the losses and the clipped gradients AdamW receives. (Not the weights after the step: Adam's first
    update is about lr * sign(g), so a gradient near 0 moves by up to lr on a 1e-7 difference.)
    """
    seeds = example_seeds(cfg.seed, 0, 0, cfg.batch_size)
    indices = data_order(cfg.seed, task.dataset_size(), 0, cfg.batch_size)
    _, eps, t, _ = task._draws(task.batch(indices), seeds)  # what our first step draws
    ours, theirs = Ours(cfg, task, copy.deepcopy(initial)), Diffusers(cfg, task, copy.deepcopy(initial))
    ours_grads, theirs_grads = [], []
    _keep_gradients(ours.optimizer, ours_grads)
    _keep_gradients(theirs.optimizer, theirs_grads)
    with warnings.catch_warnings():  # the LR schedulers notice the wrapped optimizer.step and warn
        warnings.simplefilter("ignore", UserWarning)
        ours_loss, theirs_loss = ours.step(), theirs.step(draws=(eps, t), indices=indices)
    scale = max(float(g.abs().max()) for g in theirs_grads)
    gradients = max(float((a - b).abs().max()) for a, b in zip(ours_grads, theirs_grads, strict=True)) / scale
    # float32 alpha-bar in add_noise against our float64 tables moves x_t by ~1e-7; the gradients follow it.
    equal = abs(ours_loss - theirs_loss) <= 1e-5 * (1 + abs(theirs_loss)) and gradients <= 1e-3
    return {"loss_artdiff": ours_loss, "loss_diffusers": theirs_loss, "loss_abs_diff": abs(ours_loss - theirs_loss),
            "gradient_max_diff_relative": gradients, "equal": equal}


def bench(name: str, batch: int, args, cuda: bool, out: Path) -> list[dict]:
    cfg, task = make_task(name, batch, out)
    initial = task.model.to(args.device)
    rows, medians, our_steps = [], {}, {}
    check = equality(cfg, task, initial)
    for fmt, memory_format in FORMATS.items():
        ours_model = copy.deepcopy(initial).to(memory_format=memory_format)
        theirs_model = copy.deepcopy(initial).to(memory_format=memory_format)
        ours, theirs = Ours(cfg, task, ours_model), Diffusers(cfg, task, theirs_model)
        our_steps[fmt] = ours
        timing = paired(theirs.step, ours.step, args.repeats, clock=args.clock,
                        networks=None if cuda else ([theirs_model], [ours_model]))
        row = timing.row()
        medians[fmt] = (statistics.median(timing.reference_s), statistics.median(timing.ours_s))
        rows.append({"unet": name, "parameters": sum(p.numel() for p in initial.parameters()),
                     "size": task.size, "batch": batch, "memory_format": fmt,
                     "diffusers_images_per_s": round(batch / medians[fmt][0], 2),
                     "artdiff_images_per_s": round(batch / medians[fmt][1], 2),
                     **{k: v for k, v in row.items() if not k.endswith("inside_s") and not k.endswith("outside_s")
                        and k not in ("outside_ratio", "equal_network_ratio")},
                     "same_network_calls": row.get("same_network_calls"), **check})
    # The two formats' rows ran at different times, so on a shared machine their medians also see different load:
    # our step in each format is timed once more, back to back in ABBA pairs, for the speed-up itself.
    formats = paired(our_steps["contiguous"].step, our_steps["channels_last"].step, args.repeats, clock=args.clock)
    for row in rows:  # channels_last's speed-up over contiguous: step time contiguous / channels_last
        row["channels_last_speedup_diffusers"] = round(medians["contiguous"][0] / medians["channels_last"][0], 3)
        row["channels_last_speedup_artdiff"] = round(medians["contiguous"][1] / medians["channels_last"][1], 3)
        row["channels_last_speedup_artdiff_paired"] = round(1 / formats.ratio, 3)
        quartiles = statistics.quantiles(formats.pair_ratios, n=4) if args.repeats > 1 else [formats.ratio] * 3
        row["channels_last_speedup_artdiff_paired_quartiles"] = [round(1 / quartiles[2], 3), round(1 / quartiles[0], 3)]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unets", default="tiny", help="comma-separated: tiny (16 px), mini (64 px), lsun-256")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10, help="timed training steps per side")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall")
    parser.add_argument("--fused-adam", action="store_true",
                        help="torch's fused AdamW on both sides (the loop uses the default, per-tensor one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.fused_adam:
        ADAM["fused"] = True
    cuda = torch.device(args.device).type == "cuda"
    unknown = [n for n in args.unets.split(",") if n not in PRESETS]
    if unknown:
        parser.error(f"unknown --unets {unknown[0]!r}; use {', '.join(PRESETS)}")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        rows = [row for name in args.unets.split(",") for row in bench(name, args.batch, args, cuda, Path(folder))]
    result = {"machine": f"{platform.machine()} {args.device}, {args.threads} threads, load average {load:.1f} "
                         f"(before) {os.getloadavg()[0]:.1f} (after)", "torch": torch.__version__,
              "adam": "fused" if args.fused_adam else "default (per tensor)", "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"training steps on {result['machine']}; ratio = artdiff / diffusers step time (below 1: ours is faster)")
        for r in rows:
            print(f"  {r['unet']:8s} batch {r['batch']} {r['memory_format']:13s} diffusers "
                  f"{r['diffusers_images_per_s']:7.2f} img/s  artdiff {r['artdiff_images_per_s']:7.2f} img/s  "
                  f"ratio {r['ratio']:.3f} ({r['ratio_q1']:.3f}-{r['ratio_q3']:.3f})  channels_last speed-up "
                  f"{r['channels_last_speedup_diffusers']:.2f} / {r['channels_last_speedup_artdiff']:.2f} (ours paired "
                  f"{r['channels_last_speedup_artdiff_paired']:.2f})  "
                  f"loss diff {r['loss_abs_diff']:.1e}, gradients {r['gradient_max_diff_relative']:.1e} (relative)")
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
