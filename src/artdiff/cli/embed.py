"""`artdiff embed FOLDER --out style.safetensors`: a folder's mean image embedding (one library call)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the command."""
    parser = subparsers.add_parser("embed", help="save a folder's mean image embedding as a reusable style vector")
    parser.add_argument("folder", metavar="FOLDER", help="folder of images")
    parser.add_argument("--out", required=True, help="file to write (.safetensors)")
    parser.add_argument("--model", default=None,
                        help="model directory whose encoder to use (default: the shipped artdiff-mini)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Embed the folder with the model's encoder and its preprocessing contract."""
    from artdiff.generate.embed import check_paths, embed_folder
    from artdiff.generate.embedding_generate import load_embedding_model

    check_paths(Path(args.folder), Path(args.out))  # a typo in a path is reported before the model loads
    model = load_embedding_model(args.model)
    result = embed_folder(Path(args.folder), model.encoder, Path(args.out))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"embedded {result.images} images ({len(result.skipped)} skipped: unreadable, not a file or badly named) into {result.out}")
    return 0
