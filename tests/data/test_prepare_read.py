"""prepare reads every format and mode, applies EXIF orientation, and skips bad files with a reason."""

import numpy as np
import pytest
from PIL import Image

from artdiff.errors import UserError

from helpers import bomb_png, pattern, save, solid, tree_digest
from prepare_utils import by_source, pixels, records, report, run


def test_reads_every_format(tmp_path):
    src = tmp_path / "src"
    for i, (ext, kwargs) in enumerate([("jpg", {"quality": 95}), ("png", {}), ("webp", {"quality": 95}),
                                       ("bmp", {}), ("tiff", {}), ("gif", {})]):
        save(pattern(48, 40, seed=i), src / f"art{i}.{ext}", **kwargs)
    result = run(src, tmp_path / "dst")
    assert result.outputs == 6 and result.skipped == {}
    assert {r["source"].rsplit(".", 1)[1] for r in records(tmp_path / "dst")} == {"jpg", "png", "webp", "bmp",
                                                                                    "tiff", "gif"}
    assert all((r["width"], r["height"]) == (32, 32) for r in records(tmp_path / "dst"))


def test_gif_uses_first_frame(tmp_path):
    src = tmp_path / "src"
    frames = [solid(40, 40, (250, 0, 0)).convert("P"), solid(40, 40, (0, 0, 250)).convert("P")]
    frames[0].save(src / "anim.gif" if src.mkdir() is None else None, save_all=True, append_images=frames[1:])
    run(src, tmp_path / "dst")
    red, _, blue = pixels(tmp_path / "dst", records(tmp_path / "dst")[0]).reshape(-1, 3).mean(0)
    assert red > 200 and blue < 50


@pytest.mark.parametrize("background,expected", [("white", 255), ("black", 0), ("#808080", 128)])
def test_transparency_composited_over_background(tmp_path, background, expected):
    src = tmp_path / "src"
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    rgba.paste((0, 0, 255, 255), (0, 0, 20, 40))  # opaque blue left half
    save(rgba, src / "rgba.png")
    run(src, tmp_path / "dst", background=background, crop="pad")
    image = pixels(tmp_path / "dst", records(tmp_path / "dst")[0])
    assert abs(image[16, 28] - expected).max() <= 2  # right half: the background, not red
    assert image[16, 4, 2] > 240 and image[16, 4, 0] < 15


@pytest.mark.parametrize("mode", ["L", "LA", "P-transparent", "CMYK", "I;16", "1"])
def test_reads_every_mode(tmp_path, mode):
    src = tmp_path / "src"
    src.mkdir()
    if mode == "I;16":
        array = np.full((40, 40), 32768, dtype=np.uint16)  # half of full scale
        Image.fromarray(array).save(src / "deep.png")
    elif mode == "P-transparent":
        image = solid(40, 40, (10, 200, 10)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        image.info["transparency"] = image.getpixel((0, 0))
        image.save(src / "pal.png", transparency=image.getpixel((0, 0)))
    elif mode == "CMYK":
        solid(40, 40, (200, 50, 50)).convert("CMYK").save(src / "print.jpg", quality=95)
    else:
        pattern(40, 40).convert(mode).save(src / f"img_{mode}.png")
    result = run(src, tmp_path / "dst")
    assert result.outputs == 1, report(tmp_path / "dst")["skipped"]
    image = pixels(tmp_path / "dst", records(tmp_path / "dst")[0])
    assert image.shape == (32, 32, 3)
    if mode == "I;16":
        assert abs(image.mean() - 127.5) < 2  # scaled by bit depth, not clipped to white
    if mode == "P-transparent":
        assert image.min() > 240  # the transparent colour became the white background
    if mode == "CMYK":
        red, green, blue = image.reshape(-1, 3).mean(0)
        assert red > 150 and green < 110 and blue < 110


def test_exif_orientation_applied(tmp_path):
    src = tmp_path / "src"
    image = solid(60, 30, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 30, 30))  # red on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    save(image, src / "rotated.jpg", exif=exif, quality=95)
    run(src, tmp_path / "dst", crop="pad")
    record = records(tmp_path / "dst")[0]
    assert record["original_size"] == [30, 60]  # shown upright: tall
    shown = pixels(tmp_path / "dst", record)
    assert shown[4, 16, 0] > 200 and shown[28, 16, 2] > 200  # red now on top


def test_bad_files_are_skipped_with_reasons(tmp_path):
    src = tmp_path / "src"
    save(pattern(48, 48, seed=1), src / "good.png")
    good_jpeg = save(pattern(64, 64, seed=2), src / "whole.jpg", quality=90).read_bytes()
    (src / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (src / "empty.png").write_bytes(b"")
    (src / "notes.jpg").write_text("this is not a picture")
    bomb_png(src / "bomb.png")
    (src / "dangling.png").symlink_to(src / "missing-target.png")
    save(pattern(10, 10), src / "tiny.png")
    before = tree_digest(src)
    result = run(src, tmp_path / "dst")
    assert result.outputs == 2
    reasons = {s["source"]: s["reason"] for s in report(tmp_path / "dst")["skipped"]}
    assert reasons == {"truncated.jpg": "truncated", "empty.png": "empty-file", "notes.jpg": "not-an-image",
                       "bomb.png": "decompression-bomb", "dangling.png": "unreadable", "tiny.png": "too-small"}
    assert tree_digest(src) == before  # the source folder is never modified


def test_nothing_usable_is_an_error_with_a_report(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="no usable images"):
        run(src, tmp_path / "dst")
    assert report(tmp_path / "dst")["skipped"][0]["reason"] == "empty-file"


def test_real_paintings(artworks, tmp_path):
    result = run(artworks, tmp_path / "dst", size=64, crop="focal")
    assert result.skipped == {} and result.duplicates == {}  # wave and wave_crop are different pictures
    sources = by_source(tmp_path / "dst")
    assert len(sources) == len(list(artworks.glob("*.jpg")))
    assert sources["the_scream.jpg"]["original_size"] == [1200, 1528]
    assert all((r["width"], r["height"]) == (64, 64) for r in sources.values())
