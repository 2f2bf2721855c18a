"""Train the "mini" encoder with CLIP's and with CLOOB's loss on the procedural art set; compare them held out.

Generates (or reuses, in --work) a training set (seed 0) and a held-out set (seed 1), trains one encoder per
loss with the library defaults on 2 threads, evaluates both on the held-out set and prints a side-by-side
table (or JSON with --json). Bars: zero-shot style and palette accuracy >= 0.9 each; each encoder trains in
about ten minutes or less on 2 CPU cores.
Usage: python benchmarks/encoder_training.py [--work DIR] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from artdiff.data.synthetic import SynthConfig, generate_dataset
from artdiff.evaluate.encoder_eval import evaluate_encoder
from artdiff.models.encoders import load_encoder
from artdiff.models.specs import CLIP_PRESETS
from artdiff.train.encoder import EncoderTrainConfig, train_encoder

BARS = {"style": 0.9, "palette": 0.9}
ROWS = [("zero-shot style", lambda r: r["zero_shot"]["style"]),
        ("zero-shot palette", lambda r: r["zero_shot"]["palette"]),
        ("zero-shot ground", lambda r: r["zero_shot"]["ground"]),
        ("image->text R@1", lambda r: r["image_to_text"]["R@1"]),
        ("image->text R@5", lambda r: r["image_to_text"]["R@5"]),
        ("text->image R@1", lambda r: r["text_to_image"]["R@1"]),
        ("text->image R@5", lambda r: r["text_to_image"]["R@5"]),
        ("paired cosine", lambda r: r["paired_cosine"]),
        ("centroid distance", lambda r: r["centroid_distance"]),
        ("final train loss", lambda r: r["train"]["final_loss"]),
        ("training seconds", lambda r: r["train"]["seconds"]),
        ("folder MB", lambda r: r["folder_mb"])]


def folder_mb(path: Path) -> float:
    """Size of a folder's files in MB."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def run_one(loss: str, train_dir: Path, val_dir: Path, out: Path, args: argparse.Namespace) -> dict:
    """Train one encoder with the library defaults (plus the given overrides), then evaluate it held out."""
    overrides = {k: v for k, v in (("max_steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr))
                 if v is not None}
    spec = CLIP_PRESETS[args.preset]
    if args.patch_size not in (None, spec.vision.patch_size):  # a patch size the preset lacks, specs.py untouched
        overrides["spec"] = replace(spec, vision=replace(spec.vision, patch_size=args.patch_size))
    cfg = EncoderTrainConfig(data=train_dir, out=out, loss=loss, preset=args.preset, val_fraction=0.0,
                             progress=False, **overrides)
    print(f"training {loss}: {cfg.max_steps} steps of {cfg.batch_size} at lr {cfg.lr:g} ...", file=sys.stderr)
    trained = train_encoder(cfg)
    started = time.perf_counter()
    report = evaluate_encoder(load_encoder(out), val_dir).to_json()
    print(f"{loss}: trained in {trained.seconds:.0f}s, {json.dumps(report['zero_shot'])}", file=sys.stderr)
    return {**report, "train": {**trained.to_json(), "lr": cfg.lr, "batch_size": cfg.batch_size},
            "eval_seconds": round(time.perf_counter() - started, 1), "folder_mb": round(folder_mb(out), 2),
            "log": trained.log}


def table(results: dict[str, dict]) -> str:
    """The side-by-side text table."""
    losses = list(results)
    lines = [f"{'':22}" + "".join(f"{loss:>12}" for loss in losses)]
    for name, get in ROWS:
        lines.append(f"{name:22}" + "".join(f"{get(results[loss]):>12.4g}" for loss in losses))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "artdiff-bench" / "encoder",
                        help="cache folder for the synthetic sets (reused between runs)")
    parser.add_argument("--out", type=Path, default=None, help="where the encoders go (default: WORK/encoders)")
    parser.add_argument("--train-n", type=int, default=20000)
    parser.add_argument("--val-n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--losses", nargs="+", default=["clip", "cloob"], choices=["clip", "cloob"])
    # 16 until models/specs.py's "mini" preset has it: 16 patches of 16 px train 3x faster than 64 of 8 px.
    parser.add_argument("--patch-size", type=int, default=16, help="override the preset's ViT patch size")
    parser.add_argument("--steps", type=int, default=None, help="override the library default")
    parser.add_argument("--batch-size", type=int, default=None, help="override the library default")
    parser.add_argument("--lr", type=float, default=None, help="override the per-loss default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train_dir, val_dir = args.work / f"train-s0-{args.size}px", args.work / f"val-s1-{args.size}px"
    generate_dataset(SynthConfig(out=train_dir, n=args.train_n, size=args.size, seed=0, progress=False))
    generate_dataset(SynthConfig(out=val_dir, n=args.val_n, size=args.size, seed=1, progress=False))
    data_seconds = time.perf_counter() - started
    out_root = args.out or args.work / "encoders"
    results = {loss: run_one(loss, train_dir, val_dir, out_root / f"{loss}-{args.preset}", args)
               for loss in args.losses}
    passed = all(results[loss]["zero_shot"][kind] >= bar for loss in results for kind, bar in BARS.items())
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
               "train_images": args.train_n, "val_images": args.val_n, "size": args.size, "preset": args.preset,
               "patch_size": args.patch_size or CLIP_PRESETS[args.preset].vision.patch_size,
               "data_seconds": round(data_seconds, 1), "bars": BARS, "bars_met": passed,
               "encoders": {loss: str(out_root / f"{loss}-{args.preset}") for loss in results},
               "results": results}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(table(results))
        print(f"bars (zero-shot style and palette >= 0.9 for both): {'met' if passed else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
