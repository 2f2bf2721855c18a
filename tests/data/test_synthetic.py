"""`artdiff synth`: deterministic pictures, labels that match captions and pixels, the dataset layout, the CLI."""

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from artdiff.cli.main import main
from artdiff.data.manifest import read_manifest
from artdiff.data.synthetic import (
    GROUNDS,
    PAINTERS,
    PALETTES,
    STYLES,
    SynthConfig,
    generate_dataset,
    make_paints,
    plan_image,
    render,
)
from artdiff.data.synthetic_labels import canonical_prompt, labels_in_text
from artdiff.data.synthetic_styles import Canvas
from artdiff.errors import UserError


def pixels(cfg: SynthConfig, index: int) -> np.ndarray:
    return np.asarray(render(cfg, index).image, dtype=np.float64) / 255


def luminance(image: np.ndarray) -> float:
    return float((image @ [0.299, 0.587, 0.114]).mean())


def test_same_seed_index_and_size_give_the_same_pixels():
    a, b = SynthConfig(n=1, size=24, seed=7), SynthConfig(n=99, size=24, seed=7, workers=3)
    for index in range(len(STYLES) * 2):
        assert np.array_equal(pixels(a, index), pixels(b, index))


def test_another_index_or_seed_gives_another_picture():
    cfg = SynthConfig(n=1, size=24, seed=7)
    first = pixels(cfg, 0)
    assert not np.array_equal(first, pixels(cfg, 1))
    assert not np.array_equal(first, pixels(SynthConfig(n=1, size=24, seed=8), 0))


def test_every_style_paints_the_same_composition_at_any_size():
    for style in STYLES:
        small, large = (SynthConfig(n=1, size=size, seed=3, styles=[style]) for size in (24, 48))
        shrunk = np.asarray(render(large, 0).image.resize((24, 24), Image.Resampling.BOX), dtype=np.float64) / 255
        assert np.abs(shrunk - pixels(small, 0)).mean() < 0.12, style


@pytest.mark.parametrize("size, supersample", [(8, 0), (8, 1), (13, 2)])
def test_every_style_paints_at_the_smallest_sizes(size, supersample):
    for style in STYLES:
        cfg = SynthConfig(n=1, size=size, seed=0, supersample=supersample, styles=[style])
        for index in range(12):
            assert render(cfg, index).image.size == (size, size)


def test_all_labels_are_reachable_and_filters_hold():
    seen = [plan_image(SynthConfig(n=1, seed=1), i).labels for i in range(400)]
    for key, vocab in (("style", STYLES), ("palette", PALETTES), ("ground", GROUNDS)):
        assert {labels[key] for labels in seen} == set(vocab)
    assert set(PAINTERS) == set(STYLES)
    only = SynthConfig(n=1, seed=1, styles=["rothko", "pollock"], grounds=["dark"])
    picked = [plan_image(only, i).labels for i in range(40)]
    assert {p["style"] for p in picked} == {"rothko", "pollock"} and {p["ground"] for p in picked} == {"dark"}
    assert SynthConfig(styles=["pollock", "rothko", "pollock"]).styles == only.styles  # order and repeats do not matter
    with pytest.raises(ValueError, match="unknown style cubism"):
        SynthConfig(styles=["cubism"])


def test_captions_name_exactly_their_labels():
    cfg = SynthConfig(n=1, seed=2)
    captions = set()
    for index in range(400):
        plan = plan_image(cfg, index)
        assert labels_in_text(plan.caption) == plan.labels, plan.caption
        captions.add(plan.caption)
    assert len(captions) > 300  # templates and synonyms vary


def test_canonical_prompts_round_trip_for_every_label_set():
    prompts = set()
    for style, palette, ground in itertools.product(STYLES, PALETTES, GROUNDS):
        labels = {"style": style, "palette": palette, "ground": ground}
        prompt = canonical_prompt(labels)
        assert labels_in_text(prompt) == labels, prompt
        prompts.add(prompt)
    assert len(prompts) == len(STYLES) * len(PALETTES) * len(GROUNDS)
    assert canonical_prompt({"style": "rothko", "palette": "pastel", "ground": "light"}) == \
        "a pastel rothko colour field painting on a light ground"


@pytest.mark.parametrize("style", STYLES)
def test_light_and_dark_grounds_differ_in_luminance(style):
    light = [luminance(pixels(SynthConfig(n=1, size=24, seed=4, styles=[style], grounds=["light"]), i))
             for i in range(6)]
    dark = [luminance(pixels(SynthConfig(n=1, size=24, seed=4, styles=[style], grounds=["dark"]), i))
            for i in range(6)]
    assert min(light) > 0.4 and max(dark) < 0.65
    assert np.mean(light) - np.mean(dark) > 0.25


def test_palettes_have_distinct_mean_colours():
    means = {}
    for palette in PALETTES:
        cfg = SynthConfig(n=1, size=16, seed=5, palettes=[palette])
        means[palette] = np.mean([pixels(cfg, i).reshape(-1, 3).mean(0) for i in range(16)], axis=0)
    for a, b in itertools.combinations(PALETTES, 2):
        assert np.linalg.norm(means[a] - means[b]) > 0.03, (a, b)
    mono = means["monochrome"]
    assert mono.max() - mono.min() < 0.02  # greys carry no hue
    assert means["warm"][0] > means["warm"][2] + 0.2 and means["cool"][2] > means["cool"][0] + 0.15


@pytest.mark.parametrize("style", STYLES)
def test_every_image_shows_its_palette(style):
    """At least three of the image's paints (all of a three-paint palette) show, so the palette can be told."""
    for palette, index in itertools.product(PALETTES, range(2)):
        cfg = SynthConfig(n=1, size=16, seed=6, styles=[style], palettes=[palette])
        plan = plan_image(cfg, index)
        paints = make_paints(plan.rng, palette, plan.labels["ground"])
        canvas = Canvas(cfg.size, cfg.scale, paints.ground)
        PAINTERS[style](canvas, plan.rng, paints)
        drawn = np.asarray(canvas.image).reshape(-1, 3).astype(int)
        shown = sum(bool(np.any(np.abs(drawn - color).max(1) <= 24)) for color in paints.colors)
        assert shown >= min(3, len(paints.colors)), (palette, index, shown)


def test_dataset_layout_matches_prepare(tmp_path):
    result = generate_dataset(SynthConfig(out=tmp_path / "set", n=6, size=16, seed=9, workers=1, progress=False))
    records = read_manifest(tmp_path / "set")
    assert [r["index"] for r in records] == list(range(6)) and result.count == 6 and result.written == 6
    for record in records:
        with Image.open(tmp_path / "set" / record["image"]) as image:
            assert image.size == (16, 16) and image.mode == "RGB"
        assert record["image"].startswith("images/") and (record["width"], record["height"]) == (16, 16)
        assert record["caption_source"] == "synthetic" and record["seed"] == 9
        assert set(record["labels"]) == {"style", "palette", "ground"} and record["caption"]
    assert sum(result.styles.values()) == 6


def test_labels_and_pixels_do_not_depend_on_n(tmp_path):
    small = generate_dataset(SynthConfig(out=tmp_path / "a", n=5, size=16, workers=1, progress=False))
    large = generate_dataset(SynthConfig(out=tmp_path / "b", n=10, size=16, workers=1, progress=False))
    assert read_manifest(small.out)[3] == read_manifest(large.out)[3]
    assert (small.out / "images/000003.png").read_bytes() == (large.out / "images/000003.png").read_bytes()


def test_rerun_resumes_and_a_new_n_extends_or_trims(tmp_path):
    cfg = dict(out=tmp_path / "set", size=16, seed=1, workers=1, progress=False)
    generate_dataset(SynthConfig(n=6, **cfg))
    before = (tmp_path / "set/images/000002.png").read_bytes()
    (tmp_path / "set/images/000004.png").unlink()  # as if interrupted
    again = generate_dataset(SynthConfig(n=6, **cfg))
    assert (again.written, again.reused) == (1, 5)
    assert (tmp_path / "set/images/000002.png").read_bytes() == before
    assert generate_dataset(SynthConfig(n=8, **cfg)).written == 2
    trimmed = generate_dataset(SynthConfig(n=3, **cfg))
    assert trimmed.written == 0 and len(list((tmp_path / "set/images").iterdir())) == 3


def test_refuses_foreign_folders_and_changed_options(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not made by `artdiff synth`"):
        generate_dataset(SynthConfig(out=tmp_path / "mine", n=2, size=16, progress=False))
    generate_dataset(SynthConfig(out=tmp_path / "set", n=2, size=16, workers=1, progress=False))
    with pytest.raises(UserError, match="other options"):
        generate_dataset(SynthConfig(out=tmp_path / "set", n=2, size=24, progress=False))
    with pytest.raises(ValueError, match="--n"):
        SynthConfig(n=0)


def test_two_workers_write_the_same_set_as_one(tmp_path):
    one = generate_dataset(SynthConfig(out=tmp_path / "a", n=16, size=16, workers=1, progress=False))
    two = generate_dataset(SynthConfig(out=tmp_path / "b", n=16, size=16, workers=2, progress=False))
    assert read_manifest(one.out) == read_manifest(two.out)
    for i in range(16):
        assert (one.out / f"images/{i:06d}.png").read_bytes() == (two.out / f"images/{i:06d}.png").read_bytes()


def test_cli_json_summary(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", str(out), "--n", "4", "--size", "32", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["count"] == 4 and summary["manifest"] == str(out / "manifest.jsonl")
    assert sum(summary["styles"].values()) == 4 and "elapsed_s" in summary
    assert main(["synth", str(out), "--n", "4", "--size", "32"]) == 0
    assert "0 images (4 reused)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [(["--n", "0"], "--n must be at least 1"),
                                           (["--size", "4"], "--size must be between 8")])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["synth", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_cli_unknown_style_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(tmp_path / "out"), "--style", "cubism"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_cli_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "photo.jpg").write_bytes(b"x")
    assert main(["synth", str(tmp_path), "--n", "2", "--size", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not made by `artdiff synth`" in err and len(err.splitlines()) == 1
