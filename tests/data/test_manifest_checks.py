"""Every reader of a dataset manifest refuses records that point outside the dataset and names bad lines."""

import json
import os
import sys

import pytest

from artdiff.data.dataset import ImageDataset
from artdiff.data.labelled import load_labelled
from artdiff.data.manifest import read_manifest
from artdiff.errors import UserError

from helpers import pattern, save


def _dataset(root, *records):
    save(pattern(16, 16), root / "images" / "a.png")
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    (root / "manifest.jsonl").write_text("".join(line + "\n" for line in lines))
    return root


GOOD = {"image": "images/a.png", "caption": "a", "labels": {"style": "rothko"}}


def _readers():
    return [read_manifest, lambda root: ImageDataset(root, size=8), lambda root: load_labelled(root, 8)]


@pytest.mark.parametrize("image", ["/etc/hostname", "../outside.png", "images/../../outside.png"])
@pytest.mark.parametrize("reader", _readers())
def test_an_image_outside_the_dataset_is_refused(tmp_path, image, reader):
    save(pattern(16, 16), tmp_path / "outside.png")
    root = _dataset(tmp_path / "data", GOOD, {**GOOD, "image": image})
    with pytest.raises(UserError, match=r"manifest.jsonl:2: image .* is outside the dataset"):
        reader(root)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_a_link_out_of_the_dataset_is_refused(tmp_path):
    save(pattern(16, 16), tmp_path / "outside.png")
    root = _dataset(tmp_path / "data", GOOD, {**GOOD, "image": "images/link.png"})
    os.symlink(tmp_path / "outside.png", root / "images" / "link.png")
    with pytest.raises(UserError, match="manifest.jsonl:2: image 'images/link.png' is outside the dataset"):
        ImageDataset(root, size=8)


@pytest.mark.parametrize("line,message", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "is not a JSON object"),
    ('{"caption": "no image"}', "has no 'image'"),
    ('{"image": 7}', "'image' must be a relative path"),
    ('{"image": "images/a.png", "caption": 3}', "'caption' must be text"),
    ('{"image": "images/a.png", "labels": ["rothko"]}', "'labels' must be an object"),
    ('{"image": "images/a.png", "labels": {"style": 1}}', "'labels' must be an object"),
])
@pytest.mark.parametrize("reader", _readers())
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, line, message, reader):
    root = _dataset(tmp_path / "data", GOOD, line, GOOD)
    with pytest.raises(UserError, match=message) as info:
        reader(root)
    assert f"{root / 'manifest.jsonl'}:2:" in str(info.value) and "\n" not in str(info.value)


def test_a_manifest_that_is_not_utf8_names_its_line(tmp_path):
    root = _dataset(tmp_path / "data", GOOD)
    (root / "manifest.jsonl").write_bytes(json.dumps(GOOD).encode() + b'\n{"image": "\xff"}\n')
    with pytest.raises(UserError, match=r"manifest.jsonl:2: .*not UTF-8"):
        read_manifest(root)


def test_good_manifest_still_reads(tmp_path):
    root = _dataset(tmp_path / "data", GOOD, {"image": "images/a.png"})
    assert [r["image"] for r in read_manifest(root)] == ["images/a.png", "images/a.png"]
    assert len(ImageDataset(root, size=8)) == 2


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs are POSIX")
@pytest.mark.parametrize("reader", _readers()[1:])
def test_an_image_that_is_not_a_file_is_refused_not_opened(tmp_path, reader):
    root = _dataset(tmp_path / "data", GOOD, {**GOOD, "image": "images/pipe.png"})
    os.mkfifo(root / "images" / "pipe.png")
    with pytest.raises(UserError, match="pipe.png"):
        reader(root)
