"""`artdiff generate "text:weight" ... [--image P:W] [--embedding F:W]`: one library call to generate()."""

from __future__ import annotations

import argparse
import json

from artdiff.cli._args import add_dataclass_args, args_to_config
from artdiff.generate.clip_options import CLIP_FIELDS, ClipGuidanceOptions
from artdiff.generate.options import GenerateOptions


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the command; flags come from GenerateOptions."""
    parser = subparsers.add_parser(
        "generate", help="generate images from text, image and embedding prompts, weighted and mixed",
        description="Embedding models (artdiff-mini): prompts combine as in CCLD, uncond + cfg * sum_i w_i "
                    "(cond_i - uncond) with weights relative to their positive sum (so the guidance scale is --cfg; "
                    "--raw-weights for CCLD's raw sum); negative weights push away. Stable Diffusion: one prompt in A1111 syntax "
                    "((word:1.3), longer than 77 tokens), --negative, --init-image. Image i uses seed + i (--seed -1, "
                    "the default, draws one). Images are NNNNN-SEED.png, numbered on in --out, never replaced; each "
                    "carries A1111 infotext and a JSON sidecar. Unconditional pixel models (--model DIR, or an OpenAI "
                    ".pt with --flags) take no prompt: --respacing, --clip-denoised, --skip-steps, --class-label.")
    parser.add_argument("prompt_args", nargs="*", metavar="PROMPT",
                        help="text prompt (TEXT:WEIGHT for embedding models; or `prompts:` in --config)")
    add_dataclass_args(parser, GenerateOptions, skip=CLIP_FIELDS)
    group = parser.add_argument_group(
        "CLIP guidance", "--clip-guidance steers an unconditional pixel model with a joint encoder's gradient over "
                         "cutouts (clip-diffusion-art, Disco Diffusion); scales and cut counts take a number, a "
                         "ramp START:END, or Disco's list form \"[12]*400+[4]*600\" (one entry per timestep or "
                         "per step)")
    add_dataclass_args(group, ClipGuidanceOptions, config_flags=False)
    return parser


def run(args: argparse.Namespace) -> int:
    """Generate and print where the images are."""
    from artdiff.generate.any_model import generate

    # Positional prompts win over `prompts:` in --config only when given (an empty list would erase the YAML's).
    given = {"prompts": args.prompt_args} if args.prompt_args else {}
    result = generate(args_to_config(GenerateOptions, args, **given))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        how = f"guidance scale {result.cfg:g}" if result.cfg is not None else f"{result.sampler}, {result.steps} steps"
        count = f"{len(result.paths)} image{'' if len(result.paths) == 1 else 's'}"
        print(f"generated {count} in {result.seconds:.1f}s from {result.model} (seed "
              f"{result.seed}, {how})")
        print(f"images: {result.paths[0].parent}")
    return 0
