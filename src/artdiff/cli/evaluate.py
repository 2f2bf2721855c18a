"""`artdiff evaluate judge|encoder`: measure the judge or a joint encoder on a labelled set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Register `evaluate` and its targets."""
    parser = subparsers.add_parser(
        "evaluate", help="measure a model's prompt adherence, or the judge or an encoder on a labelled set",
        description="Without a target: generate from prompts with --model and judge the results (text adherence, "
                    "image-prompt consistency, FD-judge beside its real-vs-real baseline, diversity, images/s).")
    parser.add_argument("--model", default=None, help="embedding-ldm model directory (default: the shipped one)")
    parser.add_argument("--prompts", default=None, metavar="FILE.jsonl",
                        help='prompts to score, one {"prompt": ..., "labels": {...}} per line (default: a built-in set)')
    parser.add_argument("--judge", dest="model_judge", default=None, metavar="DIR", help="judge folder")
    parser.add_argument("--samples-per-prompt", type=int, default=4, help="images per text prompt")
    parser.add_argument("--image-prompts", type=int, default=32, help="real images used as image prompts")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps")
    parser.add_argument("--cfg", type=float, default=3.0, help="guidance scale")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result as JSON")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    targets = parser.add_subparsers(dest="target", metavar="TARGET", title="targets")
    judge = targets.add_parser("judge", help="the judge's accuracy per label on a labelled set")
    judge.add_argument("--data", required=True, metavar="DIR", help="labelled dataset (e.g. from artdiff synth)")
    judge.add_argument("--judge", default=None, metavar="DIR", help="judge folder (default: the shipped judge)")
    encoder = targets.add_parser("encoder", help="zero-shot accuracy, retrieval and modality gap of an encoder")
    encoder.add_argument("model", metavar="MODEL", help="encoder folder or hub id")
    encoder.add_argument("--data", required=True, metavar="DIR", help="captioned (and labelled) dataset")
    encoder.add_argument("--max-images", type=int, default=None, help="evaluate on at most this many images")
    for sub in (judge, encoder):
        sub.add_argument("--json", action="store_true", help="print a machine-readable result as JSON")
        sub.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the chosen evaluation and print it."""
    from artdiff.data.manifest import read_manifest

    if args.target is None:
        return _evaluate_model(args)
    read_manifest(Path(args.data))  # a clear error before any model loads
    if args.target == "judge":
        from artdiff.evaluate.judge_eval import evaluate_judge
        from artdiff.utils.assets import SHIPPED_JUDGE, shipped

        judge_dir = Path(args.judge) if args.judge else shipped(SHIPPED_JUDGE, "judge")
        result = {"judge": str(judge_dir), "data": str(args.data), **evaluate_judge(judge_dir, Path(args.data))}
    else:
        from artdiff.evaluate.encoder_eval import evaluate_encoder
        from artdiff.models.encoders import load_encoder

        report = evaluate_encoder(load_encoder(args.model), Path(args.data), max_images=args.max_images)
        result = {"model": args.model, "data": str(args.data), **report.to_json()}
    _print(result, args.json)
    return 0


def _evaluate_model(args: argparse.Namespace) -> int:
    from artdiff.evaluate.model_eval import ModelEvalConfig, evaluate_model

    cfg = ModelEvalConfig(model=args.model, prompts=Path(args.prompts) if args.prompts else None,
                          judge=Path(args.model_judge) if args.model_judge else None,
                          samples_per_prompt=args.samples_per_prompt, image_prompts=args.image_prompts,
                          steps=args.steps, cfg=args.cfg, seed=args.seed)
    report = evaluate_model(cfg).to_json()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for section, values in report.items():
        print(f"{section}: {values}")
    return 0


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        width = max(len(k) for k in result)
        print("\n".join(f"{k:{width}s}  {v:.4f}" if isinstance(v, float) else f"{k:{width}s}  {v}"
                        for k, v in result.items()))
