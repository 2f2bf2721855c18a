"""`artdiff convert`: a model directory in another precision, or an original OpenAI checkpoint as a model directory.

    artdiff convert MODEL OUT --dtype fp16
    artdiff convert guided-diffusion FILE.pt OUT --flags "--image_size 256 ..."   (or improved-diffusion,
                                                                                    clip-diffusion-art)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The codebase whose defaults fill the omitted flags (models/pixel/openai_flags.py); kept here so --help is light.
FORMATS = ("guided-diffusion", "improved-diffusion", "clip-diffusion-art")
PRESET_NAMES = ("lsun-uncond-256", "openai-256-uncond", "clip-diffusion-art-256")  # openai_flags.PRESETS
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
USAGE = ("artdiff convert MODEL OUT [--dtype {fp16,bf16,fp32}]\n"
         "       artdiff convert {guided-diffusion,improved-diffusion,clip-diffusion-art} FILE OUT --flags FLAGS "
         "[--dtype {fp32,fp16,bf16}]")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the command."""
    parser = subparsers.add_parser(
        "convert", usage=USAGE,
        help="copy a model directory in another precision, or convert an improved/guided-diffusion checkpoint",
        description="Copy MODEL to OUT with every floating-point safetensors tensor stored as --dtype (loaders cast "
                    "back to what they run in); or convert an original improved-diffusion, guided-diffusion or "
                    "clip-diffusion-art checkpoint FILE (.pt, .pth or .safetensors, read without running code) into "
                    "an unconditional model directory OUT (a diffusers UNet2DModel in unet/ plus artdiff.json). "
                    "OUT must be new or empty; it is never replaced.",
        epilog=f"presets for --flags: {', '.join(PRESET_NAMES)}. The format picks the defaults of omitted flags "
               "(improved-diffusion rescales timesteps by default, guided-diffusion does not).")
    parser.add_argument("source", metavar="MODEL|FORMAT",
                        help=f"model directory to copy, or the checkpoint's format: {', '.join(FORMATS)}")
    parser.add_argument("target", metavar="OUT|FILE", help="new folder to write, or the checkpoint file")
    parser.add_argument("out", metavar="OUT", nargs="?", help="new folder to write (checkpoint form)")
    parser.add_argument("--flags", metavar="FLAGS",
                        help="checkpoint form: the checkpoint's MODEL_FLAGS and DIFFUSION_FLAGS "
                             "('--image_size 256 --num_channels 128 ...'), a YAML model_config file, or a preset")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None,
                        help="stored precision (default: fp16 for a model directory, fp32 for a checkpoint)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Convert and print the sizes."""
    from artdiff.errors import UserError

    if args.out is not None:
        if args.source not in FORMATS:
            raise UserError(f"{args.source!r} is not a checkpoint format; the forms are `artdiff convert MODEL OUT` and "
                            f"`artdiff convert FORMAT FILE OUT --flags ...` with FORMAT one of {', '.join(FORMATS)}")
        return _convert_checkpoint(args)
    if args.source in FORMATS and not Path(args.source).exists():
        raise UserError(f"artdiff convert {args.source} FILE OUT: give the checkpoint file and a new folder OUT")
    if args.flags is not None:
        raise UserError(f"--flags describes an original checkpoint: `artdiff convert guided-diffusion FILE OUT "
                        f"--flags ...`; {args.source} is copied as a model directory, which needs none")
    if Path(args.source).is_file() and Path(args.source).suffix.lower() in CHECKPOINT_SUFFIXES:
        raise UserError(f"{args.source} is a checkpoint file, not a model directory; convert an improved/guided-"
                        f"diffusion checkpoint with `artdiff convert guided-diffusion {args.source} {args.target} "
                        "--flags ...`")
    from artdiff.models.convert_dtype import convert_model_dtype

    result = convert_model_dtype(Path(args.source), Path(args.target), args.dtype or "fp16")
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"wrote {result.out}: {result.files} weight files, {result.bytes_before / 1e6:.1f} MB -> "
              f"{result.bytes_after / 1e6:.1f} MB")
    return 0


def _convert_checkpoint(args: argparse.Namespace) -> int:
    from artdiff.errors import UserError
    from artdiff.models.pixel.pixel_model import NEEDS_FLAGS, convert_openai_checkpoint

    if args.flags is None:
        raise UserError(f"{args.target} does not describe its own architecture; {NEEDS_FLAGS}")
    result = convert_openai_checkpoint(Path(args.target), flags=args.flags, out=Path(args.out),
                                       dtype=args.dtype or "fp32", codebase=args.source)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"wrote {result.out}: {result.format} UNet, {result.parameters / 1e6:.1f}M parameters, "
              f"{result.image_size} px, {result.variance} variance; {result.bytes_before / 1e6:.1f} MB -> "
              f"{result.bytes_after / 1e6:.1f} MB ({result.dtype})")
    return 0
