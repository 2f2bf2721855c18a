"""`artdiff train METHOD`: one subcommand per training method, each an adapter over one library call."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from artdiff.cli._args import add_dataclass_args, args_to_config

# method -> (module, config module, config class, train function, help). The options live in the light config
# module, so `artdiff train METHOD --help` imports no torch; the method's module is imported only to train.
METHODS: dict[str, tuple[str, str, str, str, str]] = {
    "judge": ("artdiff.train.judge", "artdiff.train.judge_config", "JudgeTrainConfig", "train_judge",
              "train the style/palette/ground judge on a labelled set (e.g. from artdiff synth)"),
    "vae": ("artdiff.train.vae", "artdiff.train.vae_config", "VaeTrainConfig", "train_vae",
            "train an AutoencoderKL from scratch and measure its latent scale on the data"),
    "embedding-ldm": ("artdiff.train.embedding_ldm", "artdiff.train.embedding_ldm_config", "EmbeddingLDMConfig",
                      "train_embedding_ldm",
                      "latent diffusion conditioned on each image's own joint embedding (CCLD; no captions needed)"),
    "encoder": ("artdiff.train.encoder", "artdiff.train.encoder_config", "EncoderTrainConfig", "train_encoder",
                "train a joint text-image encoder from scratch with the CLIP or CLOOB objective"),
    "image-variation": ("artdiff.train.image_variation", "artdiff.train.image_variation_config",
                        "ImageVariationConfig", "train_image_variation",
                        "Stable Diffusion conditioned on a CLIP image embedding (sd-image-variations): "
                        "--init SD --image-encoder CLIP --stage attn|full"),
    "textual-inversion": ("artdiff.train.textual_inversion", "artdiff.train.textual_inversion_config",
                          "TextualInversionConfig", "train_textual_inversion",
                          "learn new token vectors (or retrain a word's) on a frozen Stable Diffusion, A1111-style"),
    "unconditional": ("artdiff.train.unconditional", "artdiff.train.unconditional_config", "UnconditionalConfig",
                      "train_unconditional",
                      "pixel diffusion with improved-diffusion's hybrid loss (learned variance): from --preset, or "
                      "fine-tune --init MODEL (an unconditional model dir or an OpenAI .pt with --flags)"),
    "lora": ("artdiff.train.lora", "artdiff.train.lora_config", "LoraTrainConfig", "train_lora",
             "low-rank adapters (LoRA) on a frozen Stable Diffusion's attention, saved in diffusers' format: "
             "--model SD --rank 4 [--train-text-encoder]"),
}
# Old spellings kept working (hidden from --help) after options took the names every other method uses.
RENAMED_FLAGS: dict[str, dict[str, str]] = {"encoder": {"--steps": "--max-steps", "--warmup": "--warmup-steps"}}


class _RenamedFlag(argparse.Action):
    """Store the value under the new option's name and say, in one line, that the flag was renamed."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        new = self.metavar
        print(f"artdiff train: {option_string} is now {new}; the old name still works for now", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_parser(subparsers: argparse._SubParsersAction, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Register `train` and its methods; only the chosen method's options module is imported (no torch)."""
    words = [a for a in (argv or []) if not a.startswith("-")]
    chosen = words[1] if len(words) > 1 and words[0] == "train" else None
    parser = subparsers.add_parser("train", help="train a model (" + ", ".join(METHODS) + ")",
                                   description="Train a model. Run `artdiff train METHOD --help` for its options.")
    methods = parser.add_subparsers(dest="method", metavar="METHOD", title="methods", required=True)
    for name, (_, config_module, config_name, _, help_text) in METHODS.items():
        sub = methods.add_parser(name, help=help_text, description=help_text)
        if name != chosen:
            continue
        sub.add_argument("--data", required=True, metavar="DIR", help="dataset folder (images + manifest.jsonl)")
        add_dataclass_args(sub, getattr(importlib.import_module(config_module), config_name), skip=("data",))
        for old, new in RENAMED_FLAGS.get(name, {}).items():
            sub.add_argument(old, dest=new[2:].replace("-", "_"), action=_RenamedFlag, metavar=new,
                             default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--json", action="store_true", help="print a machine-readable result as JSON")
        sub.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the method's config, train, and print where the result is."""
    module_name, config_module, config_name, function_name, _ = METHODS[args.method]
    cfg = args_to_config(getattr(importlib.import_module(config_module), config_name), args, data=args.data)
    if args.json:
        cfg.progress = False
    result = getattr(importlib.import_module(module_name), function_name)(cfg)
    summary = result.to_json()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join(f"{key}: {value}" for key, value in summary.items()))
    if summary.get("interrupted"):  # the checkpoint is saved; the same command resumes from it
        print(f"artdiff train {args.method}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
