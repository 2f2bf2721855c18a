"""Throughput of `artdiff prepare` (images/s) beside a plain serial Pillow loop, on the real paintings.

The folder is replicated COPIES times under different names (with dedup off, so every copy is
work) to get runs long enough to time. Usage: python benchmarks/prepare_throughput.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

from artdiff.data.prepare import prepare_folder
from artdiff.data.prepare_config import PrepareConfig

ARTWORKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "artworks"


def replicate(src: Path, dst: Path, copies: int) -> int:
    """Hard-link (or copy) every painting `copies` times; return the number of files."""
    count = 0
    for i in range(copies):
        for path in sorted(src.glob("*.jpg")):
            target = dst / f"c{i:02d}_{path.name}"
            try:
                os.link(path, target)
            except OSError:
                shutil.copy(path, target)
            count += 1
    return count


def plain_pillow_loop(src: Path, dst: Path, size: int) -> None:
    """The reference: what a short hand-written script does (centre crop, Lanczos, PNG), one core."""
    dst.mkdir(parents=True)
    for path in sorted(src.iterdir()):
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side)).save(
                dst / f"{path.stem}.png", compress_level=4)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not ARTWORKS.is_dir():
        raise SystemExit(f"benchmark needs the paintings in {ARTWORKS}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        src.mkdir()
        n = replicate(ARTWORKS, src, args.copies)
        rows = {"plain Pillow loop, 1 core, centre crop": timed(lambda: plain_pillow_loop(src, tmp / "ref", args.size))}
        for crop in ("center", "focal"):
            for workers in (1, 2):
                cfg = PrepareConfig(src=src, dst=tmp / f"{crop}{workers}", size=args.size, crop=crop, dedup=False,
                                    workers=workers, progress=False)
                rows[f"artdiff prepare --crop {crop} --workers {workers}"] = timed(lambda cfg=cfg: prepare_folder(cfg))
        cfg = PrepareConfig(src=src, dst=tmp / "center2", size=args.size, dedup=False, workers=2, progress=False)
        rows["artdiff prepare, re-run (all reused)"] = timed(lambda: prepare_folder(cfg))
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "images": n, "size": args.size,
              "rows": {name: {"seconds": round(s, 2), "images_per_s": round(n / s, 1)} for name, s in rows.items()}}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{n} paintings at {args.size} px on {result['machine']}")
        for name, row in result["rows"].items():
            print(f"  {name:48s} {row['seconds']:7.2f} s  {row['images_per_s']:7.1f} img/s")


if __name__ == "__main__":
    main()
