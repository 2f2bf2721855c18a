"""`artdiff convert MODEL OUT --dtype fp16`: a copy of a model directory with its weights in another precision."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the command."""
    parser = subparsers.add_parser("convert", help="copy a model directory with its weights in another precision",
                                   description="Copy MODEL to OUT; every floating-point safetensors tensor is "
                                               "stored as --dtype (loaders cast back to what they run in).")
    parser.add_argument("model", metavar="MODEL", help="model directory")
    parser.add_argument("out", metavar="OUT", help="new folder to write")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16", help="stored precision")
    return parser


def run(args: argparse.Namespace) -> int:
    """Convert and print the sizes."""
    from artdiff.models.convert_dtype import convert_model_dtype

    result = convert_model_dtype(Path(args.model), Path(args.out), args.dtype)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"wrote {result.out}: {result.files} weight files, {result.bytes_before / 1e6:.1f} MB -> "
              f"{result.bytes_after / 1e6:.1f} MB")
    return 0
