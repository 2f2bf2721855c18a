"""`artdiff vary IMAGE --model M -n 4`: one library call to vary()."""

from __future__ import annotations

import argparse
import json

from artdiff.cli._args import add_dataclass_args, args_to_config
from artdiff.generate.vary_options import VaryOptions


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the command; flags come from VaryOptions."""
    parser = subparsers.add_parser(
        "vary", help="make variations of an image with an image-variation model (sd-image-variations)",
        description="The image's CLIP embedding, taken under the model's preprocessing contract (the published "
                    "model: squashed to 224 px without antialiasing), conditions the UNet; zeros are the "
                    "unconditional input. Image i uses seed + i (--seed -1, the default, draws one). Images are "
                    "NNNNN-SEED.png, numbered on in --out, never replaced; each carries A1111 infotext and a JSON "
                    "sidecar.")
    parser.add_argument("image_arg", metavar="IMAGE", nargs="?", help="the image to make variations of (or `image:` "
                        "in --config)")
    add_dataclass_args(parser, VaryOptions)
    return parser


def run(args: argparse.Namespace) -> int:
    """Make the variations and print where they are."""
    from artdiff.generate.vary import vary

    result = vary(args_to_config(VaryOptions, args, image=args.image_arg))  # None leaves --config's `image:`
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"made {len(result.paths)} variations in {result.seconds:.1f}s from {result.model} (seed "
              f"{result.seed})")
        print(f"images: {result.paths[0].parent}")
    return 0
