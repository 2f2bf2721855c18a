"""prepare's resize kernels, antialias switch, crop modes, buckets, tiles and flips."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from artdiff.data import crops
from artdiff.utils.images import resize

from helpers import pattern, save, solid
from prepare_utils import pixels, records, run


def stripes(width: int, height: int) -> Image.Image:
    """One-pixel black and white columns: the worst case for aliasing."""
    array = np.zeros((height, width, 3), np.uint8)
    array[:, ::2] = 255
    return Image.fromarray(array)


def test_antialias_removes_aliasing_and_no_antialias_matches_torch(tmp_path):
    image = stripes(128, 128)
    # 128 -> 30: a non-integer factor, so unfiltered samples land on varying phases of the stripes.
    smooth = np.asarray(resize(image, (30, 30), kernel="bilinear", antialias=True)).astype(int)
    aliased = np.asarray(resize(image, (30, 30), kernel="bilinear", antialias=False)).astype(int)
    assert smooth.std() < 10 and aliased.std() > 40
    x = torch.from_numpy(np.asarray(image, np.float32)).permute(2, 0, 1)[None]
    expected = F.interpolate(x, size=(32, 32), mode="bicubic", align_corners=False, antialias=False)
    got = np.asarray(resize(image, (32, 32), kernel="bicubic", antialias=False)).astype(int)
    assert np.abs(got - expected[0].permute(1, 2, 0).round().clamp(0, 255).numpy()).max() == 0


@pytest.mark.parametrize("kernel", ["bicubic", "bilinear", "area", "nearest"])
def test_kernels_differ_from_lanczos(kernel):
    image = pattern(96, 96, seed=3)
    lanczos = np.asarray(resize(image, (30, 30), kernel="lanczos")).astype(int)
    other = np.asarray(resize(image, (30, 30), kernel=kernel)).astype(int)
    assert other.shape == lanczos.shape and np.abs(other - lanczos).max() > 0


def test_no_antialias_flag_reaches_outputs(tmp_path):
    save(stripes(120, 120), tmp_path / "src" / "stripes.png")
    run(tmp_path / "src", tmp_path / "aa", kernel="bicubic")
    run(tmp_path / "src", tmp_path / "noaa", kernel="bicubic", antialias=False)
    assert pixels(tmp_path / "aa", records(tmp_path / "aa")[0]).std() < 10
    assert pixels(tmp_path / "noaa", records(tmp_path / "noaa")[0]).std() > 40


def test_size_width_by_height_and_center_crop(tmp_path):
    save(pattern(100, 50), tmp_path / "src" / "wide.png")
    run(tmp_path / "src", tmp_path / "dst", size="48x32")
    record = records(tmp_path / "dst")[0]
    assert (record["width"], record["height"]) == (48, 32)
    assert record["crop_box"] == [12, 0, 87, 50]  # 75x50 = 48:32, centred


def test_focal_crop_finds_the_detailed_region(tmp_path):
    image = solid(200, 60, (120, 120, 120))
    image.paste(pattern(50, 60, seed=5), (140, 0))  # all the detail sits on the right
    save(image, tmp_path / "src" / "detail_right.png")
    run(tmp_path / "src", tmp_path / "dst", crop="focal", focal_debug=True)
    left, _, right, _ = records(tmp_path / "dst")[0]["crop_box"]
    assert right - left == 60 and left >= 120
    assert len(list((tmp_path / "dst" / "focal-debug").glob("*.jpg"))) == 1


def test_focal_crop_of_a_flat_image_is_centred():
    assert crops.focal_box(solid(120, 40, (9, 9, 9)), 1.0) == crops.center_box(120, 40, 1.0)


def test_pad_letterboxes_without_cropping(tmp_path):
    save(solid(80, 40, (255, 255, 255)), tmp_path / "src" / "wide.png")
    run(tmp_path / "src", tmp_path / "dst", crop="pad", pad_color="#ff0000")
    record = records(tmp_path / "dst")[0]
    image = pixels(tmp_path / "dst", record)
    assert record["crop_box"] == [0, 0, 80, 40] and record["pad_box"] == [0, 8, 32, 24]
    assert tuple(image[2, 16]) == (255, 0, 0) and tuple(image[16, 16]) == (255, 255, 255)


def test_buckets_keep_the_composition(tmp_path):
    save(pattern(200, 100), tmp_path / "src" / "wide.png")
    save(pattern(100, 200), tmp_path / "src" / "tall.png")
    save(pattern(100, 100), tmp_path / "src" / "square.png")
    run(tmp_path / "src", tmp_path / "dst", size=128, crop="buckets", bucket_step=16)
    sizes = {r["source"]: (r["width"], r["height"]) for r in records(tmp_path / "dst")}
    assert sizes["square.png"] == (128, 128)
    w, h = sizes["wide.png"]
    assert w / h == pytest.approx(2.0, rel=0.1) and w * h <= 128 * 128 and sizes["tall.png"] == (h, w)


def test_make_buckets_respects_area_step_and_ratio():
    buckets = crops.make_buckets(256 * 256, step=64, max_ratio=2.0)
    assert (256, 256) in buckets and (384, 128) not in buckets  # 3:1 is beyond the ratio
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 256 * 256 for w, h in buckets)
    assert all(max(w, h) / min(w, h) <= 2.0 for w, h in buckets)


def test_split_cuts_large_images_into_overlapping_tiles(tmp_path):
    save(pattern(100, 70, seed=2), tmp_path / "src" / "big.png")
    save(pattern(40, 40, seed=3), tmp_path / "src" / "small.png")
    run(tmp_path / "src", tmp_path / "dst", split=True, split_overlap=0.25)
    tiles = [r for r in records(tmp_path / "dst") if r["source"] == "big.png"]
    boxes = np.array([r["crop_box"] for r in tiles])
    assert len(tiles) == 4 * 3 and all((r["width"], r["height"]) == (32, 32) for r in tiles)
    assert boxes[:, 0].min() == 0 and boxes[:, 2].max() == 100 and boxes[:, 3].max() == 70  # covers the image
    assert [r["tile"] for r in tiles] == sorted(r["tile"] for r in tiles)
    source = np.asarray(pattern(100, 70, seed=2)).astype(int)
    first = next(r for r in tiles if r["tile"] == 0)
    assert np.array_equal(pixels(tmp_path / "dst", first), source[:32, :32])  # native resolution
    assert [r["source"] for r in records(tmp_path / "dst")].count("small.png") == 1


def test_split_respects_max_tiles(tmp_path):
    save(pattern(200, 200), tmp_path / "src" / "huge.png")
    run(tmp_path / "src", tmp_path / "dst", split=True, max_tiles=9)
    tiles = records(tmp_path / "dst")
    assert 1 < len(tiles) <= 9 and tiles[0]["tile_scale"] < 1


def test_flip_adds_mirrored_copies(tmp_path):
    save(pattern(40, 40, seed=4), tmp_path / "src" / "a.png")
    result = run(tmp_path / "src", tmp_path / "dst", flip=True)
    plain, mirrored = sorted(records(tmp_path / "dst"), key=lambda r: r["flipped"])
    assert result.outputs == 2 and mirrored["flipped"] and mirrored["crop_box"] == plain["crop_box"]
    assert np.array_equal(pixels(tmp_path / "dst", plain)[:, ::-1], pixels(tmp_path / "dst", mirrored))


def test_tile_boxes_cover_evenly():
    boxes = crops.tile_boxes(100, 32, (32, 32), overlap=0.5)
    starts = [b[0] for b in boxes]
    assert starts[0] == 0 and boxes[-1][2] == 100
    assert max(np.diff(starts)) <= 16
