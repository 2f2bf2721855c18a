"""Captions from file names (A1111 rule and a regex), sidecars and metadata tables, with provenance."""

import json
import re
from pathlib import Path

import pytest

from artdiff.data.captions import filename_caption, fill_template
from artdiff.errors import UserError

from helpers import pattern, save
from prepare_utils import by_source, run


@pytest.mark.parametrize("name,expected", [
    ("00012-a_starry-night.jpg", "a starry night"),
    ("water lilies (2).png", "water lilies"),
    ("monet_water.lilies_copy.jpg", "monet water lilies"),
    ("3 the scream-01.jpg", "the scream"),
])
def test_filename_caption_follows_a1111(name, expected):
    assert filename_caption(Path(name)) == expected


def test_filename_regex_joins_matches():
    assert filename_caption(Path("12-monet_WaterLilies_1899.jpg"), re.compile(r"[A-Za-z]+")) == "monet WaterLilies"


def test_caption_sources_in_auto_mode(tmp_path):
    src = tmp_path / "src"
    save(pattern(40, 40, 1), src / "0001-blue_horse.png")
    save(pattern(40, 40, 2), src / "sided.png")
    (src / "sided.txt").write_text("a painting  of\na red tree\n")
    save(pattern(40, 40, 3), src / "other.png")
    (src / "other.caption").write_text("stormy sea")
    run(src, tmp_path / "dst")
    got = {k: (r["caption"], r["caption_source"]) for k, r in by_source(tmp_path / "dst").items()}
    assert got == {"0001-blue_horse.png": ("blue horse", "filename"), "sided.png": ("a painting of a red tree", "sidecar"),
                   "other.png": ("stormy sea", "sidecar")}


def test_metadata_csv_template_and_provenance(tmp_path):
    src = tmp_path / "src"
    save(pattern(40, 40, 1), src / "Impressionism" / "claude-monet_water-lilies.jpg")
    save(pattern(40, 40, 2), src / "unlisted.png")
    (tmp_path / "meta.csv").write_text(
        "filename,artist,style,genre,license\n"
        "Impressionism/claude-monet_water-lilies.jpg,claude-monet,Impressionism,landscape,public domain\n")
    run(src, tmp_path / "dst", metadata=tmp_path / "meta.csv", captions="metadata",
        caption_template="a {style} {genre} painting by {artist}", license="CC0")
    records = by_source(tmp_path / "dst")
    monet = records["Impressionism/claude-monet_water-lilies.jpg"]
    assert monet["caption"] == "a Impressionism landscape painting by claude monet"
    assert monet["caption_source"] == "metadata"
    assert monet["provenance"] == {"license": "public domain", "artist": "claude-monet"}
    assert records["unlisted.png"]["caption_source"] == "filename"  # no row: falls back, never lost
    assert records["unlisted.png"]["provenance"] == {"license": "CC0"}


def test_metadata_jsonl_by_file_name(tmp_path):
    save(pattern(40, 40, 1), tmp_path / "src" / "a.png")
    (tmp_path / "meta.jsonl").write_text(json.dumps({"file": "a.png", "caption": "a quiet harbour"}) + "\n")
    run(tmp_path / "src", tmp_path / "dst", metadata=tmp_path / "meta.jsonl", metadata_key="file")
    assert by_source(tmp_path / "dst")["a.png"]["caption"] == "a quiet harbour"


def test_template_with_unknown_column_is_an_error(tmp_path):
    save(pattern(40, 40, 1), tmp_path / "src" / "a.png")
    (tmp_path / "meta.csv").write_text("filename,artist\na.png,x\n")
    with pytest.raises(UserError, match="style"):
        run(tmp_path / "src", tmp_path / "dst", metadata=tmp_path / "meta.csv", caption_template="{style}")
    assert not (tmp_path / "dst").exists()  # nothing written


def test_empty_values_leave_no_stray_punctuation():
    assert fill_template("{style}, {genre} by {artist}", {"style": "", "genre": "portrait", "artist": "x"}) == \
        "portrait by x"


def test_no_captions(tmp_path):
    save(pattern(40, 40, 1), tmp_path / "src" / "named.png")
    (tmp_path / "src" / "named.txt").write_text("ignored")
    run(tmp_path / "src", tmp_path / "dst", captions="none")
    assert by_source(tmp_path / "dst")["named.png"]["caption"] == ""
