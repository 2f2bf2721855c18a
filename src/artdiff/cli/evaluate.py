"""`artdiff evaluate`: judge a model against the procedural art set, or the judge or a joint encoder on a labelled set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Register `evaluate` and its targets."""
    parser = subparsers.add_parser(
        "evaluate", help="measure a model against the procedural art set, or the judge or an encoder on a labelled set",
        description="Without a target: judge what --model makes. An embedding-ldm (default: the shipped one) is "
                    "prompted (text adherence, image-prompt consistency, FD-judge beside its real-vs-real baseline, "
                    "diversity, images/s); an unconditional pixel model is sampled at fixed seeds (the share of "
                    "each of the 8 styles, FD-judge beside its baseline, images/s) and checked against its bars: "
                    "every style >= 6% of the samples, FD ratio <= 2 (judged from 64 samples up; fewer are "
                    "reported but not judged).")
    parser.add_argument("--model", default=None,
                        help="embedding-ldm (default: the shipped one) or unconditional pixel model directory")
    parser.add_argument("--judge", dest="model_judge", default=None, metavar="DIR", help="judge folder")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampling steps (default 50; pixel models with --respacing: the steps it keeps)")
    parser.add_argument("--sampler", default=None,
                        help="sampler (default: dpm++2m for embedding models; pixel models: ddim, or ddpm for "
                             "--respacing N or A,B,C, as in `artdiff generate`)")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    embedding = parser.add_argument_group("embedding-ldm models")
    embedding.add_argument("--prompts", default=None, metavar="FILE.jsonl",
                           help='prompts to score, one {"prompt": ..., "labels": {...}} per line (default: a built-in '
                                'set)')
    embedding.add_argument("--samples-per-prompt", type=int, default=None, help="images per text prompt (default 4)")
    embedding.add_argument("--image-prompts", type=int, default=None, help="real images used as image prompts "
                                                                             "(default 32)")
    embedding.add_argument("--cfg", type=float, default=None, help="guidance scale (default 3)")
    pixel = parser.add_argument_group("unconditional pixel models")
    pixel.add_argument("--samples", type=int, default=None, help="samples to judge (default 512)")
    pixel.add_argument("--respacing", default=None, help="improved-diffusion timestep respacing, e.g. ddim50 or 250 "
                                                         "(it sets the step count)")
    pixel.add_argument("--eta", type=float, default=None, help="DDIM eta (default 0; ddim only)")
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


EMBEDDING_ONLY = ("prompts", "samples_per_prompt", "image_prompts", "cfg")
PIXEL_ONLY = ("samples", "respacing", "eta")


def _evaluate_model(args: argparse.Namespace) -> int:
    pixel = _is_pixel_model(args.model)
    wrong = [name for name in (EMBEDDING_ONLY if pixel else PIXEL_ONLY) if getattr(args, name) is not None]
    if wrong:
        from artdiff.errors import UserError

        flag = "--" + wrong[0].replace("_", "-")
        raise UserError(f"{flag} applies to {'embedding-ldm' if pixel else 'unconditional pixel'} models, and "
                        f"{args.model or 'the shipped artdiff-mini'} is {'an unconditional pixel' if pixel else 'an embedding-ldm'} "
                        "model; leave it out")
    if pixel:
        return _evaluate_pixel_model(args)
    from artdiff.evaluate.model_eval import ModelEvalConfig, evaluate_model

    given = {name: getattr(args, name) for name in ("samples_per_prompt", "image_prompts", "cfg", "sampler", "steps")
             if getattr(args, name) is not None}
    cfg = ModelEvalConfig(model=args.model, prompts=Path(args.prompts) if args.prompts else None,
                          judge=Path(args.model_judge) if args.model_judge else None, seed=args.seed, **given)
    report = evaluate_model(cfg).to_json()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for section, values in report.items():
        print(f"{section}: {values}")
    return 0


def _is_pixel_model(model: str | None) -> bool:
    """Whether --model names an unconditional pixel model directory (or a run whose model/ is one)."""
    if model is None or not Path(model).is_dir():
        return False  # the shipped embedding model, or a path the embedding evaluation explains
    from artdiff.errors import UserError
    from artdiff.models import factory

    try:
        folder = factory.resolve_model_dir(model)
    except UserError:
        return False
    return (factory.read_json(folder / "artdiff.json") or {}).get("kind") == "unconditional"


def _evaluate_pixel_model(args: argparse.Namespace) -> int:
    from artdiff.evaluate.pixel_eval import PixelEvalConfig, evaluate_pixel_model

    given = {name: getattr(args, name) for name in ("samples", "respacing", "eta", "sampler", "steps")
             if getattr(args, name) is not None}
    from artdiff.errors import UserError

    try:
        cfg = PixelEvalConfig(model=args.model, judge=Path(args.model_judge) if args.model_judge else None,
                              seed=args.seed, **given)
    except ValueError as error:  # a config's own check: the user's option, not a bug
        raise UserError(str(error)) from None
    report = evaluate_pixel_model(cfg).to_json()
    if args.json:
        print(json.dumps(report, indent=2))
        if not report["bars_meaningful"]:  # stdout stays JSON; the reader still hears it
            print(bars_not_meaningful(report["samples"]), file=sys.stderr)
        return 0
    print("\n".join(pixel_report_lines(report)))
    return 0


def bars_not_meaningful(samples: int) -> str:
    """The line saying an evaluation had too few samples for its bars to judge anything."""
    from artdiff.evaluate.pixel_eval import MIN_BAR_SAMPLES

    return f"the bars are not meaningful at {samples} samples: judge them with --samples {MIN_BAR_SAMPLES} or more"


def pixel_report_lines(report: dict) -> list[str]:
    """The pixel evaluation as lines a person reads: shares, FD beside its baseline, speed, and each bar."""
    fd = report["fd"]
    shares = ", ".join(f"{style} {share:.1%}" for style, share in report["style_shares"].items())
    lines = [f"samples: {report['samples']} ({report['settings']['sampler']}, {report['settings']['steps']} steps)",
             f"style shares: {shares}",
             f"rarest style: {report['min_style']['style']} {report['min_style']['share']:.1%}",
             f"FD-judge: {fd['fd_judge']:.4f} vs real-vs-real {fd['real_vs_real']:.4f} (ratio {fd['ratio']:.2f})",
             f"images/s: {report['images_per_s']:.3f}"]
    lines += [f"bar {name}: {'holds' if held else 'FAILS'}" for name, held in report["bars"].items()]
    if not report["bars_meaningful"]:
        lines.append(bars_not_meaningful(report["samples"]))
    return lines


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        width = max(len(k) for k in result)
        print("\n".join(f"{k:{width}s}  {v:.4f}" if isinstance(v, float) else f"{k:{width}s}  {v}"
                        for k, v in result.items()))
