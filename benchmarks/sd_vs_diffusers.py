"""artdiff's Stable Diffusion text-to-image against diffusers' StableDiffusionPipeline on the same weights.

Random weights in the real component classes (speed does not depend on weight values): "tiny" and "mid"
on CPU, and the SD 1.5 architecture (860M UNet, 83M VAE, 123M text encoder) with --sizes sd15 (a GPU). Both sides
encode the prompt and negative prompt, run CFG with the same scheduler config and per-image generators, and
decode; the script checks the images are equal and prints the time ratio ours / diffusers: the median over
--repeats back-to-back pairs in alternating (ABBA) order, with its quartiles (_timing.py).
Usage: python benchmarks/sd_vs_diffusers.py [--json] [--steps 20] [--repeats 3] [--sizes tiny,mid|sd15] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch
from _timing import CLOCKS, outside_text, paired
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from artdiff.generate.prompt_weighting import encode_prompt_pair
from artdiff.generate.sd_sample import sample_sd
from artdiff.models.stable_diffusion import load_stable_diffusion
from artdiff.models.tokenizer import build_tokenizer

SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
             "skip_prk_steps": True, "steps_offset": 1, "set_alpha_to_one": False}
SAMPLERS = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpm++2m": DPMSolverMultistepScheduler}
CROSS = ("CrossAttnDownBlock2D", "CrossAttnUpBlock2D")
SIZES = {
    # name: (unet kwargs, vae block channels, text encoder (hidden, layers, heads), image side)
    "tiny": (dict(block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=4, norm_num_groups=8,
                  down_block_types=(CROSS[0], "DownBlock2D"), up_block_types=("UpBlock2D", CROSS[1])),
             (32, 64), (64, 2, 2), 64),
    "mid": (dict(block_out_channels=(64, 128, 256), layers_per_block=2, attention_head_dim=8,
                 down_block_types=(CROSS[0], CROSS[0], "DownBlock2D"), up_block_types=("UpBlock2D", CROSS[1], CROSS[1])),
            (32, 64, 64, 64), (256, 4, 4), 256),
    "sd15": (dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=8,
                  down_block_types=(CROSS[0], CROSS[0], CROSS[0], "DownBlock2D"),
                  up_block_types=("UpBlock2D", CROSS[1], CROSS[1], CROSS[1])),
             (128, 256, 512, 512), (768, 12, 12), 512),
}
# No A1111 emphasis syntax: diffusers reads brackets as plain tokens, so both sides must see the same text.
PROMPT = "a painting of a lighthouse by the sea in oil, colourful, dusk"


def build(size: str, folder: Path) -> Path:
    """A random-weight SD folder of the given size, in diffusers' layout."""
    unet_kwargs, vae_blocks, (hidden, layers, heads), _ = SIZES[size]
    words = PROMPT.replace(",", " ").replace("(", " ").replace(")", " ").split() + ["dark", "moody", "blurry"]
    build_tokenizer([" ".join(words)] * 4, folder / "tokenizer-src", vocab_size=600, min_frequency=1)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer-src")
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                                        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(sample_size=SIZES[size][3] // 2 ** (len(vae_blocks) - 1), cross_attention_dim=hidden,
                                **unet_kwargs)
    vae = AutoencoderKL(block_out_channels=vae_blocks, down_block_types=("DownEncoderBlock2D",) * len(vae_blocks),
                        up_block_types=("UpDecoderBlock2D",) * len(vae_blocks), layers_per_block=min(2, len(vae_blocks) - 1),
                        latent_channels=4, norm_num_groups=32, scaling_factor=0.18215)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=PNDMScheduler(**SCHEDULER), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    out = folder / size
    pipe.save_pretrained(out, safe_serialization=True)
    config = out / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "clip_sample": False}))
    return out


def runners(pipe, ours, sampler, seeds, side, steps):
    """The two text-to-image calls compared: diffusers' pipeline and artdiff's encode + sample + decode."""

    def reference():
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return pipe(PROMPT, negative_prompt="dark, blurry", num_inference_steps=steps, height=side, width=side,
                    num_images_per_prompt=len(seeds), generator=generators, guidance_scale=7.5,
                    output_type="pt").images.float().cpu()

    def artdiff():
        cond, uncond = encode_prompt_pair(ours.text_encoder, ours.tokenizer, PROMPT, "dark, blurry")
        return sample_sd(ours, cond, uncond, seeds=seeds, height=side, width=side, steps=steps, cfg_scale=7.5,
                         sampler=sampler).float().cpu()

    return reference, artdiff


def networks(model) -> list[torch.nn.Module]:
    """The network modules a text-to-image run calls: text encoder, UNet, and the VAE's decoding part."""
    return [model.text_encoder, model.unet, model.vae.post_quant_conv, model.vae.decoder]


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="tiny,mid", help="comma-separated: tiny, mid, sd15")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall: elapsed seconds; cpu: this process's CPU seconds (steadier on a shared machine)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = torch.device(args.device).type == "cuda"  # the networks are timed from inside on CPU only
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            folder = build(size, Path(tmp))
            side = SIZES[size][3]
            pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, torch_dtype=dtype)
            pipe.to(args.device).set_progress_bar_config(disable=True)
            ours = load_stable_diffusion(folder, device=args.device, dtype=dtype)
            seeds = list(range(args.batch))
            for sampler, scheduler_cls in SAMPLERS.items():
                pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)

                reference, artdiff = runners(pipe, ours, sampler, seeds, side, args.steps)
                timing = paired(reference, artdiff, args.repeats, clock=args.clock,
                                networks=None if cuda else (networks(pipe), networks(ours)))
                rows.append({"size": size, "sampler": sampler, "batch": args.batch, **timing.row(),
                             "max_abs_diff": float((timing.ours_out - timing.reference_out).abs().max())})
    result = {"machine": f"{platform.machine()} {args.device} {args.dtype}, {args.threads} threads",
              "steps": args.steps, "torch": torch.__version__, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.steps} steps, CFG 7.5, batch {args.batch} on {result['machine']}; ratio = artdiff / diffusers")
    for r in rows:
        print(f"  {r['size']:5s} {r['sampler']:8s} diffusers {r['diffusers_s']:8.3f}s  artdiff {r['artdiff_s']:8.3f}s  "
              f"ratio {r['ratio']:.3f} (quartiles {r['ratio_q1']:.3f}-{r['ratio_q3']:.3f})  max|diff| {r['max_abs_diff']:.1e}"
              + outside_text(r))


if __name__ == "__main__":
    main()
