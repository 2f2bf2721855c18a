"""`artdiff evaluate judge|encoder`: measure the judge or a joint encoder on a labelled set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Register `evaluate` and its targets."""
    parser = subparsers.add_parser("evaluate", help="measure the judge or an encoder on a labelled set")
    targets = parser.add_subparsers(dest="target", metavar="TARGET", title="targets", required=True)
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
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        width = max(len(k) for k in result)
        print("\n".join(f"{k:{width}s}  {v:.4f}" if isinstance(v, float) else f"{k:{width}s}  {v}"
                        for k, v in result.items()))
    return 0
