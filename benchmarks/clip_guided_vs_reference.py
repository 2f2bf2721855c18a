"""Our CLIP-guided pixel sampling beside clip-diffusion-art's loop (benchmarks/clip_guided_reference.py).

First a parity check in fixed-cutout mode (the same cuts every step, no augmentations): both loops must give
the same image. Then paired timings (benchmarks/_timing.py) at identical settings with random cutouts, DDIM on
`--respacing`, the anchor's blend (x0 * fac + x_t * (1 - fac)) and range scale 0 on both sides (the anchor's
range term is inert, see the reference's docstring). Model: the shipped artdiff-pixel-mini when present, else
a random pixel-mini; encoder: the shipped cloob-mini.
Usage: python benchmarks/clip_guided_vs_reference.py [--json] [--respacing ddim25] [--cutn 16] [--cutn-batches 4]
       [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from _timing import paired
from clip_guided_reference import reference_sample

from artdiff.generate.clip_guidance import ClipGuidanceConfig, EncoderPrompts
from artdiff.generate.clip_setup import ClipGuidance
from artdiff.generate.cutouts import CdaCutouts
from artdiff.generate.pixel_sample import sample_pixels
from artdiff.models.encoders import load_encoder
from artdiff.models.model_info import ModelInfo
from artdiff.models.pixel.pixel_model import load_pixel_model
from artdiff.utils.assets import SHIPPED_ENCODER, SHIPPED_PIXEL_MODEL

PROMPTS = ["a rothko painting", "a mondrian painting"]


def _model():
    if SHIPPED_PIXEL_MODEL.is_dir():
        model = load_pixel_model(SHIPPED_PIXEL_MODEL)
        return model.unet, model.info, "artdiff-pixel-mini"
    from diffusers import UNet2DModel

    from artdiff.train.unconditional_presets import PIXEL_MINI

    torch.manual_seed(0)
    info = ModelInfo(kind="unconditional", parameterization="eps",
                     schedule={"type": "discrete", "beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000},
                     conditioning={"type": "none"}, extra={"image_size": 64, "variance": "learned_range"})
    return UNet2DModel(**PIXEL_MINI).eval(), info, "pixel-mini (random weights)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--respacing", default="ddim25")
    parser.add_argument("--cutn", type=int, default=16)
    parser.add_argument("--cutn-batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    unet, info, name = _model()
    encoder = load_encoder(SHIPPED_ENCODER)
    size = int(encoder.preprocessing.output_size)
    targets, weights = encoder.embed_text(PROMPTS), [1.0, -0.3]
    noise = torch.randn((1, 3, 64, 64), generator=torch.Generator().manual_seed(0))

    def ours(fixed: bool):
        config = ClipGuidanceConfig(clip_guidance_scale=5000, tv_scale=100, range_scale=0, cutn=args.cutn,
                                    cutn_batches=args.cutn_batches, fixed_cutouts=fixed, guide="blend")
        guidance = ClipGuidance([EncoderPrompts(encoder, targets, torch.tensor(weights))], config, record={})
        return sample_pixels(unet, info, seeds=[0], respacing=args.respacing, sampler="ddim", eta=0.0,
                             clip_denoised=False, guidance=guidance)

    def reference(fixed: bool):
        cut = CdaCutouts(cutn=args.cutn, size=size, fixed=fixed)
        generator = torch.Generator().manual_seed(1)
        return reference_sample(unet, info.schedule, encoder, targets, weights, noise=noise,
                                respacing=args.respacing, generator=generator,
                                cutouts=lambda x01, g: (cut(x01 * 2 - 1, generator=g) + 1) / 2,
                                cutn_batches=args.cutn_batches, clip_scale=5000, tv_scale=100, range_scale=0)

    started = time.perf_counter()
    difference = float((ours(True) - reference(True)).abs().max())
    timing = paired(lambda: reference(False), lambda: ours(False), args.repeats)
    result = {"machine": platform.machine(), "threads": args.threads, "model": name, "respacing": args.respacing,
              "cutn": args.cutn, "cutn_batches": args.cutn_batches, "fixed_cutout_max_abs_diff": difference,
              "timing": timing.row(), "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(result, indent=2) if args.json else
          f"{name}, {args.respacing}, {args.cutn}x{args.cutn_batches} cuts: parity max diff {difference:.2e}; "
          f"ours / reference time {timing.ratio:.3f} (pairs {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
