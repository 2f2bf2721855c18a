"""Exact and near duplicates are dropped, the best copy kept, and the report says which and why."""

import io

from PIL import Image

from artdiff.data.dedup import Candidate, find_duplicates, hamming, perceptual_hash

from helpers import pattern, save
from prepare_utils import records, report, run


def test_exact_and_near_duplicates(tmp_path):
    src = tmp_path / "src"
    original = pattern(96, 96, seed=1)
    save(original, src / "original.png")
    save(original, src / "copy" / "same.png")  # byte-identical
    save(original.resize((64, 64), Image.Resampling.LANCZOS), src / "smaller.jpg", quality=80)  # near copy
    save(pattern(96, 96, seed=2), src / "different.png")
    result = run(src, tmp_path / "dst")
    assert result.duplicates == {"exact": 1, "near": 1}
    # Of equal copies the first by path is kept; the smaller re-encoded copy loses to the larger.
    assert sorted(r["source"] for r in records(tmp_path / "dst")) == ["copy/same.png", "different.png"]
    dropped = {d["source"]: (d["kind"], d["duplicate_of"]) for d in report(tmp_path / "dst")["duplicates"]}
    assert dropped == {"original.png": ("exact", "copy/same.png"), "smaller.jpg": ("near", "copy/same.png")}


def test_no_dedup_keeps_everything(tmp_path):
    save(pattern(40, 40, 1), tmp_path / "src" / "a.png")
    save(pattern(40, 40, 1), tmp_path / "src" / "b.png")
    assert run(tmp_path / "src", tmp_path / "dst", dedup=False).outputs == 2


def test_phash_is_robust_to_resizing_and_recompression_but_not_to_content():
    image = pattern(128, 128, seed=7)
    buffer = io.BytesIO()
    image.resize((80, 80)).save(buffer, format="JPEG", quality=70)
    recompressed = Image.open(buffer)
    assert hamming(perceptual_hash(image), perceptual_hash(recompressed)) <= 4
    assert hamming(perceptual_hash(image), perceptual_hash(pattern(128, 128, seed=8))) > 12


def test_largest_copy_is_kept():
    candidates = [Candidate("small.jpg", "a", 0b1011, 100), Candidate("big.png", "b", 0b1011, 10_000)]
    (duplicate,) = find_duplicates(candidates, near_threshold=2)
    assert (duplicate.key, duplicate.duplicate_of, duplicate.kind) == ("small.jpg", "big.png", "near")
