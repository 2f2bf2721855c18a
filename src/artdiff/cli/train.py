"""`artdiff train METHOD`: one subcommand per training method, each an adapter over one library call."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from artdiff.cli._args import add_dataclass_args, args_to_config

# method -> (module, config class, train function, help)
METHODS: dict[str, tuple[str, str, str, str]] = {
    "judge": ("artdiff.train.judge", "JudgeTrainConfig", "train_judge",
              "train the style/palette/ground judge on a labelled set (e.g. from artdiff synth)"),
    "vae": ("artdiff.train.vae", "VaeTrainConfig", "train_vae",
            "train an AutoencoderKL from scratch and measure its latent scale on the data"),
    "embedding-ldm": ("artdiff.train.embedding_ldm", "EmbeddingLDMConfig", "train_embedding_ldm",
                      "latent diffusion conditioned on each image's own joint embedding (CCLD; no captions needed)"),
    "encoder": ("artdiff.train.encoder", "EncoderTrainConfig", "train_encoder",
                "train a joint text-image encoder from scratch with the CLIP or CLOOB objective"),
    "image-variation": ("artdiff.train.image_variation", "ImageVariationConfig", "train_image_variation",
                        "Stable Diffusion conditioned on a CLIP image embedding (sd-image-variations): "
                        "--init SD --image-encoder CLIP --stage attn|full"),
    "textual-inversion": ("artdiff.train.textual_inversion", "TextualInversionConfig", "train_textual_inversion",
                          "learn new token vectors (or retrain a word's) on a frozen Stable Diffusion, A1111-style"),
    "lora": ("artdiff.train.lora", "LoraTrainConfig", "train_lora",
             "low-rank adapters (LoRA) on a frozen Stable Diffusion's attention, saved in diffusers' format: "
             "--model SD --rank 4 [--train-text-encoder]"),
}


def add_parser(subparsers: argparse._SubParsersAction, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Register `train` and its methods; only the chosen method's module is imported (it imports torch)."""
    words = [a for a in (argv or []) if not a.startswith("-")]
    chosen = words[1] if len(words) > 1 and words[0] == "train" else None
    parser = subparsers.add_parser("train", help="train a model (" + ", ".join(METHODS) + ")",
                                   description="Train a model. Run `artdiff train METHOD --help` for its options.")
    methods = parser.add_subparsers(dest="method", metavar="METHOD", title="methods", required=True)
    for name, (module_name, config_name, _, help_text) in METHODS.items():
        sub = methods.add_parser(name, help=help_text, description=help_text)
        if name != chosen:
            continue
        sub.add_argument("--data", required=True, metavar="DIR", help="dataset folder (images + manifest.jsonl)")
        add_dataclass_args(sub, getattr(importlib.import_module(module_name), config_name), skip=("data",))
        sub.add_argument("--json", action="store_true", help="print a machine-readable result as JSON")
        sub.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the method's config, train, and print where the result is."""
    module_name, config_name, function_name, _ = METHODS[args.method]
    module = importlib.import_module(module_name)
    cfg = args_to_config(getattr(module, config_name), args, data=args.data)
    if args.json:
        cfg.progress = False
    result = getattr(module, function_name)(cfg)
    summary = result.to_json()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join(f"{key}: {value}" for key, value in summary.items()))
    if summary.get("interrupted"):  # the checkpoint is saved; the same command resumes from it
        print(f"artdiff train {args.method}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
