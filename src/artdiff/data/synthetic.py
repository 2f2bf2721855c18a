"""`artdiff synth`: a procedural art set with known labels (style, palette, ground) and captions.

Image i is a pure function of (seed, i, size, supersample): its labels, caption and every stroke come
from numpy's Generator seeded with [seed, i], so a set does not change with N, with the worker count,
or with the machine. The labels give later stages ground truth: a judge can be trained on them, and
synthetic_labels builds prompts from them (`canonical_prompt`) and reads them back (`labels_in_text`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from artdiff import __version__
from artdiff.config import check_all, option, to_dict
from artdiff.data import synthetic_styles as geometric
from artdiff.data import synthetic_styles_painterly as painterly
from artdiff.data.manifest import IMAGES_DIR, write_manifest
from artdiff.data.synthetic_labels import (
    GROUNDS,
    PALETTES,
    STYLES,
    Ground,
    Palette,
    Style,
    canonical_prompt,
    caption_for,
    choose,
)
from artdiff.data.synthetic_styles import RGB, Canvas, Paints
from artdiff.errors import UserError
from artdiff.utils.io import atomic_path, atomic_write_json
from artdiff.utils.parallel import parallel_map, process_pool, worker_count
from artdiff.utils.progress import progress

# Bump when a change to the painting code changes pixels, so an old set is not silently extended.
GENERATOR_VERSION = 1
STATE_FILE = ".synth.json"

PAINTERS: dict[str, Callable[[Canvas, np.random.Generator, Paints], None]] = {
    "mondrian": geometric.paint_mondrian,
    "kandinsky": geometric.paint_kandinsky,
    "rothko": painterly.paint_rothko,
    "pollock": painterly.paint_pollock,
    "pointillist": painterly.paint_pointillist,
    "op-art": geometric.paint_op_art,
    "stained-glass": geometric.paint_stained_glass,
    "ukiyo-e": painterly.paint_ukiyo_e,
}

# Hues, saturations and lightnesses are kept apart so a palette is recognisable at 32 px:
# warm is bright red-orange-yellow (no blue), primary always holds its blue, earth is muted and
# darker, pastel is light and unsaturated, monochrome has no hue at all.
PALETTE_COLORS: dict[str, tuple[str, ...]] = {
    "warm": ("#d7263d", "#f46036", "#ff9f1c", "#ffd23f", "#c2185b", "#e85d04"),
    "cool": ("#1b4965", "#2a9d8f", "#48cae4", "#5e60ce", "#3a86ff", "#0b7a75"),
    "pastel": ("#ffadad", "#ffd6a5", "#fdffb6", "#caffbf", "#9bf6ff", "#bdb2ff"),
    "monochrome": ("#303030", "#5a5a5a", "#808080", "#a6a6a6", "#cccccc"),
    "primary": ("#d62828", "#1d3fbb", "#f7c600"),
    "earth": ("#8c5a2b", "#c08a3e", "#5b3a29", "#6b7d3a", "#a0522d", "#9c8a5e"),
}
# Grounds stay near white or near black whatever the palette, so mean luminance alone tells them apart.
GROUND_COLORS: dict[str, tuple[str, ...]] = {
    "light": ("#f4efe6", "#f7f5f0", "#ece6da", "#f1f1ee"),
    "dark": ("#141414", "#1b1a1f", "#12161e", "#1e1a16"),
}
INK: dict[str, str] = {"light": "#161616", "dark": "#ebe8e1"}


def hex_rgb(text: str) -> RGB:
    """#rrggbb as an (r, g, b) triple."""
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


@dataclass
class SynthConfig:
    """What `artdiff synth` paints: how many images, how large, from which seed, with which labels."""

    out: Path = option(Path("synth"), "dataset folder to write", cli=False)
    n: int = option(1000, "number of images", metavar="N")
    size: int = option(64, "side of the square images in pixels", metavar="PX")
    seed: int = option(0, "base seed; image i depends only on (seed, i), never on N", metavar="K")
    styles: list[Style] = option(help="paint only this style (repeatable; default: all)", flag="--style",
                                 default_factory=list)
    palettes: list[Palette] = option(help="use only this palette (repeatable; default: all)", flag="--palette",
                                     default_factory=list)
    grounds: list[Ground] = option(help="use only this ground (repeatable; default: both)", flag="--ground",
                                   default_factory=list)
    # Drawing larger and shrinking with Lanczos is the antialiasing; 4x is smooth, 2x keeps big sizes cheap.
    supersample: int = option(0, "draw at this multiple of the size, then shrink (0 = auto: 4 up to 256 px, "
                                 "then 2)")
    workers: int = option(0, "worker processes (0 = one per core)")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        checks = [
            (self.n >= 1, f"--n must be at least 1, got {self.n}"),
            (8 <= self.size <= 4096, f"--size must be between 8 and 4096 pixels, got {self.size}"),
            (self.seed >= 0, f"--seed must be 0 or more, got {self.seed}"),
            (0 <= self.supersample <= 8, f"--supersample must be in 0..8 (0 = auto), got {self.supersample}"),
            (self.workers >= 0, "--workers must be 0 (all cores) or more"),
        ]
        check_all(checks)
        for name, vocab in (("styles", STYLES), ("palettes", PALETTES), ("grounds", GROUNDS)):
            chosen = list(getattr(self, name))
            unknown = sorted(set(chosen) - set(vocab))
            if unknown:
                raise ValueError(f"unknown {name[:-1]} {', '.join(unknown)}; choose from {', '.join(vocab)}")
            # Vocabulary order, so the same set of filters always paints the same images.
            setattr(self, name, [label for label in vocab if label in chosen])

    @property
    def scale(self) -> int:
        """The supersampling factor actually used."""
        return self.supersample or max(2, min(4, 1024 // self.size))


@dataclass
class ImagePlan:
    """What an image shows, decided before any paint, and the generator (past those draws) that paints it."""

    labels: dict[str, str]
    caption: str
    rng: np.random.Generator


def plan_image(cfg: SynthConfig, index: int) -> ImagePlan:
    """Draw the labels and caption of image `index` from the generator seeded with [seed, index] alone."""
    rng = np.random.default_rng([cfg.seed, index])
    labels = {"style": choose(rng, cfg.styles or STYLES), "palette": choose(rng, cfg.palettes or PALETTES),
              "ground": choose(rng, cfg.grounds or GROUNDS)}
    return ImagePlan(labels, caption_for(rng, labels), rng)


def make_paints(rng: np.random.Generator, palette: str, ground: str) -> Paints:
    """The palette's paints in a random order, each a little lighter or darker, and a near-white/black ground."""
    base = np.array([hex_rgb(h) for h in PALETTE_COLORS[palette]], dtype=np.int16)
    order = rng.permutation(len(base))
    shift = rng.integers(-12, 13, (len(base), 1))
    tint = rng.integers(-6, 7, (len(base), 3))
    if palette == "monochrome":
        tint[:] = 0  # a tint would give greys a hue
    colors = np.clip(base[order] + shift + tint, 0, 255)
    grounds = GROUND_COLORS[ground]
    ground_rgb = np.clip(np.array(hex_rgb(choose(rng, grounds))) + rng.integers(-4, 5), 0, 255)
    return Paints(ground=tuple(int(v) for v in ground_rgb), ink=hex_rgb(INK[ground]),  # type: ignore[arg-type]
                  colors=[tuple(int(v) for v in c) for c in colors])  # type: ignore[misc]


@dataclass
class SynthImage:
    """One painted image and what it shows."""

    image: Image.Image
    labels: dict[str, str]
    caption: str


def render(cfg: SynthConfig, index: int) -> SynthImage:
    """Paint image `index` of the set `cfg` describes."""
    plan = plan_image(cfg, index)
    paints = make_paints(plan.rng, plan.labels["palette"], plan.labels["ground"])
    canvas = Canvas(cfg.size, cfg.scale, paints.ground)
    PAINTERS[plan.labels["style"]](canvas, plan.rng, paints)
    return SynthImage(canvas.finish(), plan.labels, plan.caption)


def image_name(index: int) -> str:
    """Where image `index` lives inside the dataset (fixed width, so names never depend on N)."""
    return f"{IMAGES_DIR}/{index:06d}.png"


def record_for(cfg: SynthConfig, index: int, labels: dict[str, str], caption: str) -> dict[str, Any]:
    """The manifest record of image `index`."""
    return {"image": image_name(index), "width": cfg.size, "height": cfg.size, "caption": caption,
            "caption_source": "synthetic", "labels": labels, "prompt": canonical_prompt(labels),
            "index": index, "seed": cfg.seed}


def paint_batch(cfg: SynthConfig, indices: list[int]) -> list[dict[str, Any]]:
    """Paint and write a batch of images atomically; return their records (runs in a worker)."""
    records = []
    for index in indices:
        painted = render(cfg, index)
        with atomic_path(cfg.out / image_name(index)) as tmp:
            painted.image.save(tmp, format="PNG", compress_level=4)
        records.append(record_for(cfg, index, painted.labels, painted.caption))
    return records


@dataclass
class SynthResult:
    """What a synth run produced, for printing or --json."""

    out: Path
    manifest: Path
    count: int
    written: int
    reused: int
    size: int
    seed: int
    styles: dict[str, int] = field(default_factory=dict)
    palettes: dict[str, int] = field(default_factory=dict)
    grounds: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON data."""
        return {"output": str(self.out), "manifest": str(self.manifest), "count": self.count,
                "written": self.written, "reused": self.reused, "size": self.size, "seed": self.seed,
                "styles": self.styles, "palettes": self.palettes, "grounds": self.grounds,
                "elapsed_s": round(self.elapsed_s, 3)}


def generate_dataset(cfg: SynthConfig) -> SynthResult:
    """Write cfg.n images and their manifest to cfg.out, keeping images a previous identical run made."""
    started = time.perf_counter()
    out = _start_or_resume(cfg)
    have = {p.name for p in (out / IMAGES_DIR).glob("*.png")} if (out / IMAGES_DIR).is_dir() else set()
    todo = [i for i in range(cfg.n) if image_name(i).split("/")[1] not in have]
    records: dict[int, dict[str, Any]] = {}
    # Batches amortise the cost of handing work to a process over many small images.
    workers = min(worker_count(cfg.workers), max(1, len(todo) // 8))  # a pool costs ~1 s to start
    batch = max(1, min(64, len(todo) // (4 * workers)))
    batches = [todo[k:k + batch] for k in range(0, len(todo), batch)]
    with process_pool(workers) as pool:
        done = (r for rs in parallel_map(paint_batch, batches, pool=pool, args=(cfg,)) for r in rs)
        for record in progress(done, total=len(todo), desc="synth", enabled=cfg.progress):
            records[record["index"]] = record
    for index in range(cfg.n):
        if index not in records:  # reused: labels and caption are recomputed, no pixels needed
            plan = plan_image(cfg, index)
            records[index] = record_for(cfg, index, plan.labels, plan.caption)
    ordered = [records[i] for i in range(cfg.n)]
    _remove_stale(out, {r["image"] for r in ordered})
    manifest = write_manifest(out, ordered)
    return SynthResult(
        out=out, manifest=manifest, count=cfg.n, written=len(todo), reused=cfg.n - len(todo),
        size=cfg.size, seed=cfg.seed, styles=_counts(ordered, "style", STYLES),
        palettes=_counts(ordered, "palette", PALETTES), grounds=_counts(ordered, "ground", GROUNDS),
        elapsed_s=time.perf_counter() - started)


def _counts(records: list[dict[str, Any]], key: str, vocab: tuple[str, ...]) -> dict[str, int]:
    counts = Counter(r["labels"][key] for r in records)
    return {label: counts[label] for label in vocab if counts[label]}


def _identity(cfg: SynthConfig) -> dict[str, Any]:
    """The options that decide the pixels; N is not one of them, since image i never depends on it."""
    keep = ("size", "seed", "styles", "palettes", "grounds")
    return {**{k: v for k, v in to_dict(cfg).items() if k in keep}, "scale": cfg.scale,
            "generator_version": GENERATOR_VERSION}


def _start_or_resume(cfg: SynthConfig) -> Path:
    """Check OUT: new, empty, or an earlier synth set with the same options (to resume or resize)."""
    out = cfg.out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"output {cfg.out} is a file; choose a folder")
    state = out / STATE_FILE
    identity = _identity(cfg)
    if out.is_dir() and any(out.iterdir()):
        if not state.is_file():
            raise UserError(f"output {cfg.out} is not empty and was not made by `artdiff synth`; "
                            "choose a new or empty folder (nothing was written)")
        previous = json.loads(state.read_text(encoding="utf-8")).get("identity", {})
        if previous != identity:
            changed = ", ".join(f"{k} {previous.get(k)!r} -> {v!r}" for k, v in identity.items()
                                if previous.get(k) != v)
            raise UserError(f"output {cfg.out} holds a synth set made with other options ({changed}); "
                            "choose a new folder or repeat its options (nothing was written)")
    atomic_write_json(state, {"artdiff_version": __version__, "identity": identity, "n": cfg.n})
    cfg.out = out
    return out


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Delete images past N from an earlier, larger run, and temp files of an interrupted one."""
    for path in (out / IMAGES_DIR).iterdir():
        if f"{IMAGES_DIR}/{path.name}" not in keep:
            path.unlink()
