"""`artdiff prepare`: turn a messy folder of artwork into DST/images + manifest.jsonl, resumably.

Two passes. The scan hashes every file (sha256, and a pHash from a reduced decode) so duplicates
can be chosen before any output is made; the transform pass decodes each kept image once and
writes its outputs. Both are cached under DST/.prepare, so a re-run skips finished work and an
interrupted run completes; a different option set rebuilds from scratch.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artdiff import __version__
from artdiff.config import to_dict
from artdiff.data.captions import (
    MetadataTable,
    filename_caption,
    fill_template,
    sidecar_caption,
    template_fields,
)
from artdiff.data.dedup import Candidate, find_duplicates
from artdiff.data.manifest import IMAGES_DIR, MANIFEST_NAME, REPORT_NAME, write_manifest
from artdiff.data.prepare_config import PrepareConfig
from artdiff.data.prepare_image import (
    FOCAL_DEBUG_DIR,
    ScanResult,
    SourceJob,
    SourceOutcome,
    process_source,
    scan_file,
    scan_from_dict,
    scan_to_dict,
)
from artdiff.data.sources import list_images
from artdiff.errors import UserError
from artdiff.utils.io import JsonlAppender, atomic_write_json, read_jsonl
from artdiff.utils.parallel import parallel_map, process_pool
from artdiff.utils.progress import progress

STATE_DIR = ".prepare"
# Options that change where or how fast work happens, not what it produces.
NEUTRAL_OPTIONS = ("dst", "workers", "progress")


@dataclass
class PrepareResult:
    """What a prepare run produced, for printing or --json."""

    dst: Path
    manifest: Path
    report: Path
    found: int
    kept_sources: int
    outputs: int
    reused: int
    skipped: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    captions: dict[str, int] = field(default_factory=dict)  # outputs per caption source (filename = fallback)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON data."""
        return {"output": str(self.dst), "manifest": str(self.manifest), "report": str(self.report),
                "found": self.found, "kept": self.kept_sources, "outputs": self.outputs, "reused": self.reused,
                "skipped": self.skipped, "duplicates": self.duplicates, "captions": self.captions, "elapsed_s": round(self.elapsed_s, 3)}


def prepare_folder(cfg: PrepareConfig) -> PrepareResult:
    """Prepare `cfg.src` into `cfg.dst`; raise UserError when the options are wrong or nothing is usable."""
    started = time.perf_counter()
    src, dst = _check_folders(cfg)
    metadata = _load_metadata(cfg)
    state = dst / STATE_DIR
    _start_or_resume(cfg, dst, state)

    listing = list_images(src, exclude=dst)
    keys, ignored = listing.keys, listing.ignored
    with process_pool(cfg.workers if keys else 1) as pool:  # one pool for both passes: spawning costs
        scans = _scan(cfg, keys, state, pool)
        skipped = listing.skipped + [(s.key, s.reason, s.detail) for s in scans if s.reason]
        usable = [s for s in scans if not s.reason]
        too_small = {s.key for s in usable if min(s.width, s.height) < cfg.smallest_side}
        skipped += [(k, "too-small", f"shorter side under {cfg.smallest_side} px") for k in sorted(too_small)]
        usable = [s for s in usable if s.key not in too_small]

        candidates = [Candidate(s.key, s.sha256, s.phash, s.width * s.height) for s in usable]
        duplicates = find_duplicates(candidates, near_threshold=cfg.near_dup_threshold) if cfg.dedup else []
        dropped = {d.key for d in duplicates}
        jobs = [_job(cfg, src, s, metadata) for s in usable if s.key not in dropped]
        outcomes, reused = _transform(cfg, jobs, state, pool)
    skipped += [(o.key, o.reason, o.detail) for o in outcomes if o.reason]
    records = sorted((r for o in outcomes for r in o.records), key=lambda r: r["image"])
    _remove_stale_outputs(dst, {r["image"] for r in records})

    manifest = write_manifest(dst, records)
    report = dst / REPORT_NAME
    result = PrepareResult(
        dst=dst, manifest=manifest, report=report, found=len(keys) + len(listing.skipped), reused=reused,
        kept_sources=sum(1 for o in outcomes if not o.reason), outputs=len(records),
        skipped=dict(sorted(Counter(reason for _, reason, _ in skipped).items())),
        duplicates=dict(sorted(Counter(d.kind for d in duplicates).items())),
        captions=dict(sorted(Counter(r["caption_source"] for r in records).items())),
        elapsed_s=time.perf_counter() - started,
    )
    atomic_write_json(report, _report(cfg, result, skipped, duplicates, records, ignored))
    if not records:
        reasons = ", ".join(f"{n} {r}" for r, n in result.skipped.items()) or "no image files"
        raise UserError(f"no usable images in {src} ({reasons}); details in {report}")
    return result


def _check_folders(cfg: PrepareConfig) -> tuple[Path, Path]:
    src, dst = cfg.src.expanduser().resolve(), cfg.dst.expanduser().resolve()
    if not src.exists():
        raise UserError(f"source folder {cfg.src} does not exist")
    if not src.is_dir():
        raise UserError(f"source {cfg.src} is not a folder; put the images in a folder and pass that")
    if dst == src or src.is_relative_to(dst):
        raise UserError(f"destination {cfg.dst} would overwrite the source folder; choose a separate folder")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"destination {cfg.dst} is a file; choose a folder")
    if dst.is_dir() and any(dst.iterdir()) and not (dst / STATE_DIR / "state.json").is_file():
        raise UserError(f"destination {cfg.dst} is not empty and was not made by `artdiff prepare`; "
                        "choose a new or empty folder (nothing was written)")
    cfg.src, cfg.dst = src, dst
    return src, dst


def _load_metadata(cfg: PrepareConfig) -> MetadataTable | None:
    if cfg.metadata is None:
        return None
    table = MetadataTable.load(cfg.metadata, cfg.metadata_key)
    missing = [name for name in template_fields(cfg.caption_template) if name not in table.columns]
    if missing and cfg.captions in ("auto", "metadata"):
        raise UserError(f"--caption-template uses column(s) {', '.join(missing)} that {cfg.metadata} lacks "
                        f"(columns: {', '.join(table.columns)})")
    return table


def _options_hash(cfg: PrepareConfig) -> tuple[dict[str, Any], str]:
    options = {k: v for k, v in to_dict(cfg).items() if k not in NEUTRAL_OPTIONS}
    if cfg.metadata is not None:  # the table's content matters, not just its name
        options["metadata_sha256"] = hashlib.sha256(Path(cfg.metadata).read_bytes()).hexdigest()
    text = json.dumps(options, sort_keys=True)
    return options, hashlib.sha256(text.encode()).hexdigest()


def _start_or_resume(cfg: PrepareConfig, dst: Path, state: Path) -> None:
    """Keep the previous run's work if its options match; otherwise clear what it made."""
    options, digest = _options_hash(cfg)
    state_file = state / "state.json"
    if state_file.is_file():
        previous = json.loads(state_file.read_text())
        if previous.get("options_hash") == digest:
            return
        for name in (IMAGES_DIR, FOCAL_DEBUG_DIR, STATE_DIR):
            shutil.rmtree(dst / name, ignore_errors=True)
        for name in (MANIFEST_NAME, REPORT_NAME):
            (dst / name).unlink(missing_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    atomic_write_json(state_file, {"artdiff_version": __version__, "options": options, "options_hash": digest})


def _scan(cfg: PrepareConfig, keys: list[str], state: Path, pool: Executor | None) -> list[ScanResult]:
    """Scan every file, reusing cached results for files whose size and mtime are unchanged."""
    cache_file = state / "scan.jsonl"
    cache = {}
    if cache_file.is_file():
        cache = {d["key"]: scan_from_dict(d) for d in read_jsonl(cache_file)}
    results, todo = {}, []
    for key in keys:
        cached = cache.get(key)
        try:
            stat = (cfg.src / key).stat()
        except OSError:
            stat = None
        if cached and stat and (cached.bytes, cached.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            results[key] = cached
        else:
            todo.append(key)
    scanned = parallel_map(_scan_one, todo, pool=pool, args=(cfg.src, cfg.max_pixels, cfg.max_file_size))
    with JsonlAppender(cache_file) as cache_journal:
        for result in progress(scanned, total=len(todo), desc="scan", enabled=cfg.progress):
            results[result.key] = result
            cache_journal.append(scan_to_dict(result))
    return [results[k] for k in keys]


def _scan_one(src: Path, max_pixels: int, max_bytes: int, key: str) -> ScanResult:
    """scan_file with the argument order parallel_map calls in (the item last)."""
    return scan_file(src, key, max_pixels, max_bytes)


def _job(cfg: PrepareConfig, src: Path, scan: ScanResult, metadata: MetadataTable | None) -> SourceJob:
    """Caption and provenance of one kept source."""
    row = metadata.lookup(scan.key) if metadata else None
    caption, source = "", "none"
    if cfg.captions in ("auto", "sidecar"):
        text = sidecar_caption(src / scan.key)
        if text is not None:
            caption, source = text, "sidecar"
    if source == "none" and cfg.captions in ("auto", "metadata") and row is not None:
        caption, source = fill_template(cfg.caption_template, row), "metadata"
    if source == "none" and cfg.captions in ("auto", "filename", "metadata"):
        regex = re.compile(cfg.filename_regex) if cfg.filename_regex else None
        caption, source = filename_caption(Path(scan.key), regex), "filename"
    provenance = {"license": cfg.license} if cfg.license else {}
    if row is not None:
        provenance.update({c: row[c] for c in cfg.provenance_columns if row.get(c)})
    return SourceJob(scan.key, scan.sha256, caption, source, provenance)


def _transform(cfg: PrepareConfig, jobs: list[SourceJob], state: Path,
               pool: Executor | None) -> tuple[list[SourceOutcome], int]:
    """Process every job, reusing finished ones recorded in the journal whose outputs still exist."""
    journal = state / "journal.jsonl"
    done: dict[tuple[str, str], SourceOutcome] = {}
    if journal.is_file():
        for entry in read_jsonl(journal):
            outcome = SourceOutcome(**entry)
            if all((cfg.dst / r["image"]).is_file() for r in outcome.records):
                done[(outcome.key, outcome.sha256)] = outcome
    outcomes, todo = [], []
    for job in jobs:
        previous = done.get((job.key, job.sha256))
        # A caption edit (sidecar, metadata) is picked up without re-decoding the image.
        if previous is not None and all(r.get("caption") == job.caption for r in previous.records):
            outcomes.append(previous)
        else:
            todo.append(job)
    reused = len(outcomes)
    with JsonlAppender(journal) as done_journal:
        for outcome in progress(parallel_map(process_source, todo, pool=pool, args=(cfg,)),
                                total=len(todo), desc="prepare", enabled=cfg.progress):
            done_journal.append(outcome.__dict__)
            outcomes.append(outcome)
    return sorted(outcomes, key=lambda o: o.key), reused


def _remove_stale_outputs(dst: Path, keep: set[str]) -> None:
    """Delete outputs of earlier, interrupted or superseded work that no record points to."""
    images = dst / IMAGES_DIR
    if images.is_dir():
        for path in images.iterdir():
            if f"{IMAGES_DIR}/{path.name}" not in keep:
                path.unlink()


def _report(cfg: PrepareConfig, result: PrepareResult, skipped: list, duplicates: list, records: list,
            ignored: int) -> dict[str, Any]:
    return {
        "artdiff_version": __version__,
        "src": str(cfg.src), "dst": str(cfg.dst),
        "options": to_dict(cfg),
        "summary": {**result.to_json(), "ignored_non_images": ignored},
        "captions": result.captions,
        "skipped": [{"source": k, "reason": r, "detail": d} for k, r, d in sorted(skipped)],
        "duplicates": [{"source": d.key, "duplicate_of": d.duplicate_of, "kind": d.kind, "distance": d.distance}
                       for d in duplicates],
    }
