"""prepare against hostile folders: special files, odd names, deep paths, huge files and headers, ragged CSVs."""

import os
import sys

import pytest
from PIL import Image

from artdiff.utils.images import ImageReadError, open_image

from helpers import bomb_png, pattern, save
from prepare_utils import records, report, run

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, /dev/zero and byte file names are POSIX")


def _reasons(dst):
    return {s["source"]: s["reason"] for s in report(dst)["skipped"]}


@posix_only
def test_special_files_are_skipped_unopened(tmp_path, monkeypatch):
    src = tmp_path / "src"
    save(pattern(48, 48), src / "good.png")
    os.mkfifo(src / "pipe.png")  # opening this for reading would block forever
    (src / "zero.png").symlink_to("/dev/zero")  # reading this would never end
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    result = run(src, tmp_path / "dst")
    assert result.outputs == 1
    assert _reasons(tmp_path / "dst") == {"pipe.png": "not-a-file", "zero.png": "not-a-file"}
    assert not [p for p in opened if p.endswith(("pipe.png", "zero.png"))]


@posix_only
def test_a_name_that_is_not_utf8_is_skipped_with_a_reason(tmp_path):
    src = tmp_path / "src"
    save(pattern(48, 48), src / "good.png")
    try:
        (src / os.fsdecode(b"caf\xe9.png")).write_bytes((src / "good.png").read_bytes())
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    result = run(src, tmp_path / "dst")
    assert result.outputs == 1
    skipped = report(tmp_path / "dst")["skipped"]
    assert [(s["source"], s["reason"]) for s in skipped] == [("caf\\xe9.png", "bad-name")]
    assert "rename" in skipped[0]["detail"]


@posix_only
def test_a_folder_deeper_than_path_max_is_reported_not_fatal(tmp_path):
    src = tmp_path / "src"
    save(pattern(48, 48), src / "good.png")
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(25):  # 25 x 201 characters: past Linux's 4096-byte PATH_MAX
        os.mkdir("d" * 200, dir_fd=fd)
        child = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open("deep.png", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as handle:
        pattern(48, 48, seed=3).save(handle, format="PNG")
    os.close(fd)
    result = run(src, tmp_path / "dst")
    assert result.outputs == 1 and sum(result.skipped.values()) == 1
    (skipped,) = report(tmp_path / "dst")["skipped"]
    assert skipped["reason"] == "unreadable" and skipped["source"].startswith("d" * 200)


def test_a_huge_file_is_skipped_by_its_size_before_it_is_read(tmp_path, monkeypatch):
    src = tmp_path / "src"
    save(pattern(48, 48), src / "good.png")
    huge = save(pattern(48, 48, seed=1), src / "huge.png")
    os.truncate(huge, 3 * 1024**3)  # a sparse 3 GB file that starts as a valid PNG
    monkeypatch.setattr(type(huge), "read_bytes", lambda self: pytest.fail(f"{self} was read whole"))
    result = run(src, tmp_path / "dst")
    assert result.outputs == 1 and _reasons(tmp_path / "dst") == {"huge.png": "too-large"}


def test_max_file_size_is_honoured(tmp_path):
    src = tmp_path / "src"
    save(pattern(48, 48), src / "a.png")
    save(Image.new("RGB", (48, 48), (9, 9, 9)), src / "flat.png")
    big = (src / "a.png").stat().st_size
    assert (src / "flat.png").stat().st_size < big // 2
    run(src, tmp_path / "dst", max_file_size=big // 2)
    assert _reasons(tmp_path / "dst") == {"a.png": "too-large"}


def test_max_pixels_decides_not_pillows_own_limit(tmp_path):
    pillows_own = Image.MAX_IMAGE_PIXELS
    bomb = bomb_png(tmp_path / "big.png", 10000, 10000)  # 100 Mpx: over Pillow's 89 Mpx warning limit
    assert open_image(bomb.read_bytes(), max_pixels=178_956_970).size == (10000, 10000)
    bomb = bomb_png(tmp_path / "bigger.png", 20000, 10000)  # 200 Mpx: over Pillow's hard 179 Mpx limit
    assert open_image(bomb.read_bytes(), max_pixels=250_000_000).size == (20000, 10000)
    with pytest.raises(ImageReadError, match="decompression-bomb"):
        open_image(bomb.read_bytes(), max_pixels=150_000_000)
    assert Image.MAX_IMAGE_PIXELS == pillows_own  # Pillow's limit is set only while artdiff reads


def test_prepare_does_not_call_a_100_mpx_image_a_bomb(tmp_path):
    src = tmp_path / "src"
    save(pattern(48, 48), src / "good.png")
    bomb_png(src / "big.png", 10000, 10000)  # a crafted header: the pixels are missing, so it is truncated
    run(src, tmp_path / "dst")
    assert _reasons(tmp_path / "dst") == {"big.png": "truncated"}
    run(src, tmp_path / "dst2", max_pixels=1_000_000)  # refused by its header, before any decode
    assert _reasons(tmp_path / "dst2") == {"big.png": "decompression-bomb"}


def test_csv_rows_with_extra_or_missing_fields_do_not_abort(tmp_path, capsys):
    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        save(pattern(48, 48, seed=ord(name)), src / f"{name}.png")
    table = tmp_path / "meta.csv"
    table.write_text("filename,artist\na.png,Monet,1872,extra\nb.png\nc.png,Hokusai\n")
    run(src, tmp_path / "dst", metadata=table, caption_template="painting by {artist}")
    captions = {r["source"]: r["caption"] for r in records(tmp_path / "dst")}
    assert captions == {"a.png": "painting by Monet", "b.png": "painting by", "c.png": "painting by Hokusai"}
    assert "line 2" in capsys.readouterr().err  # the ragged row is named, once


def test_a_huge_sidecar_is_not_read_whole(tmp_path):
    src = tmp_path / "src"
    save(pattern(48, 48), src / "a.png")
    (src / "a.txt").write_text("a harbour at dawn " + "x" * 100)
    os.truncate(src / "a.txt", 2 * 1024**3)
    run(src, tmp_path / "dst")
    assert records(tmp_path / "dst")[0]["caption"].startswith("a harbour at dawn")


def test_sources_are_listed_in_path_part_order(tmp_path):
    from artdiff.data.sources import list_images

    for name in ("a b/x.png", "a-b/x.png", "a/x.png", "a/b/x.png"):
        save(pattern(8, 8), tmp_path / name)
    keys = list_images(tmp_path).keys
    assert keys == sorted(keys, key=lambda key: key.split("/")) and keys[0] == "a/b/x.png"
