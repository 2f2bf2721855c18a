"""The demo prepares a folder of paintings and writes a contact sheet a person can open."""

import pytest
from PIL import Image

from artdiff.cli.main import main
from artdiff.errors import UserError
from artdiff.studio.contact_sheet import contact_sheet, label_lines
from artdiff.studio.demo import DemoConfig, run_demo

from helpers import pattern, save


def test_demo_on_a_folder_of_paintings(tmp_path):
    for i in range(3):
        save(pattern(120, 90, seed=i), tmp_path / "art" / f"painting_{i}.jpg", quality=90)
    result = run_demo(DemoConfig(out=tmp_path / "out", artworks=tmp_path / "art", size=64, progress=False,
                                 gallery=False))
    assert result.gallery is None
    assert result.dataset.outputs == 3 and result.sheet.is_file()
    assert len(list((result.dataset.dst / "focal-debug").glob("*.jpg"))) == 3


def test_demo_cli_prints_where_results_are(tmp_path, capsys):
    for i in range(2):
        save(pattern(100, 100, seed=i), tmp_path / "art" / f"p{i}.png")
    assert main(["demo", "--out", str(tmp_path / "out"), "--artworks", str(tmp_path / "art"), "--size", "48",
                 "--no-gallery"]) == 0
    assert f"contact sheet: {tmp_path / 'out' / 'dataset-contact-sheet.png'}" in capsys.readouterr().out


def test_contact_sheet_grid(tmp_path):
    paths = [save(pattern(50, 40, seed=i), tmp_path / f"{i}.png") for i in range(7)]
    sheet = Image.open(contact_sheet(paths, [f"caption {i}" for i in range(7)], tmp_path / "sheet.png",
                                     cell=60, columns=3))
    assert sheet.size == (180, 3 * (60 + 28))


def test_demo_without_paintings_uses_the_procedural_set(tmp_path):
    with pytest.raises(UserError, match="absent does not exist"):  # a folder asked for must be there
        run_demo(DemoConfig(out=tmp_path / "out", artworks=tmp_path / "absent", size=32, progress=False))
    result = run_demo(DemoConfig(out=tmp_path / "out", size=32, progress=False, gallery=False))
    records = [r for r in result.dataset.dst.joinpath("manifest.jsonl").read_text().splitlines()]
    assert result.dataset.outputs == 24 and len(records) == 24
    assert '"caption_source": "metadata"' in records[0]  # the synthetic captions came along


def test_demo_makes_a_gallery_when_given_a_model(tmp_path, capsys, monkeypatch):
    import artdiff.studio.demo as demo
    from artdiff.data.manifest import read_manifest

    monkeypatch.setattr(demo, "SHIPPED_PIXEL_MODEL", tmp_path / "absent")  # the pixel sheet has its own test
    from artdiff.train.embedding_ldm import EmbeddingLDMConfig, train_embedding_ldm

    from model_fixtures import tiny_encoder, tiny_synth, tiny_vae

    data = tiny_synth(tmp_path / "synth")
    encoder = tiny_encoder(tmp_path / "encoder", [r["caption"] for r in read_manifest(data)])
    model = train_embedding_ldm(EmbeddingLDMConfig(data=data, encoder=str(encoder), vae=tiny_vae(tmp_path / "vae"),
                                                   out=tmp_path / "run", preset="tiny", size=16, batch_size=4,
                                                   max_steps=1, warmup_steps=1, progress=False)).model_dir
    for i in range(2):
        save(pattern(60, 40, seed=i), tmp_path / "art" / f"painting_{i}.jpg", quality=90)
    result = run_demo(DemoConfig(out=tmp_path / "out", artworks=tmp_path / "art", size=32, progress=False,
                                 model=str(model), steps=2))
    gallery = Image.open(result.gallery)
    # 6 text rows + 2 image rows + 1 mix, 2 images each, 6 per row of the sheet: 3 sheet rows.
    assert len(list((tmp_path / "out" / "gallery" / "images").glob("*.png"))) == 18 and gallery.width == 6 * 128


def test_contact_sheet_labels_grow_to_four_lines_and_mark_a_cut(tmp_path):
    paths = [save(pattern(50, 40, seed=i), tmp_path / f"{i}.png") for i in range(2)]
    words = "image: a very long gallery label about a painting in oil with many many words"
    sheet = Image.open(contact_sheet(paths, ["short", words * 3], tmp_path / "sheet.png", cell=60, columns=2))
    assert sheet.size == (120, 60 + 4 + 4 * 12)
    lines = label_lines(words * 3, 60)
    assert len(lines) == 4 and lines[-1].endswith("...") and label_lines("short", 60) == ["short"]


@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory):
    from artdiff.train.unconditional import UnconditionalConfig, train_unconditional

    from model_fixtures import tiny_synth

    root = tmp_path_factory.mktemp("pixel")
    return train_unconditional(UnconditionalConfig(
        data=tiny_synth(root / "synth", n=8, size=16), out=root / "run", preset="pixel-tiny", batch_size=4,
        max_steps=1, warmup_steps=1, sample_every=0, sample_steps=1, progress=False)).model_dir


def test_pixel_sheet_shows_16_fixed_seed_samples_labelled_by_style(pixel_model, tmp_path):
    from artdiff.data.synthetic_labels import STYLES
    from artdiff.studio.pixel_sheet import pixel_sheet

    result = pixel_sheet(pixel_model, tmp_path / "pixel-samples", seeds=list(range(16)), steps=1)
    assert result.sheet == tmp_path / "pixel-samples.png" and len(result.images) == 16
    assert result.images[3].name == "003-3.png" and all(style in STYLES for style in result.styles)
    assert Image.open(result.sheet).width == 8 * 96  # 8 columns of 96 px cells, 2 rows
    again = pixel_sheet(pixel_model, tmp_path / "again", seeds=[3], steps=1)
    assert list(Image.open(again.images[0]).getdata()) == list(Image.open(result.images[3]).getdata())


def test_pixel_sheet_labels_the_8_bit_pixels_it_saves(pixel_model, tmp_path, monkeypatch):
    import numpy as np

    import artdiff.studio.pixel_sheet as sheet_module

    judge, seen = sheet_module.load_checked_judge(sheet_module.SHIPPED_JUDGE), []

    def predict(images):
        seen.append(images)
        return type(judge).predict(judge, images)

    monkeypatch.setattr(judge, "predict", predict)
    monkeypatch.setattr(sheet_module, "load_checked_judge", lambda path: judge)
    result = sheet_module.pixel_sheet(pixel_model, tmp_path / "sheet", seeds=[0, 1], steps=1)
    saved = np.stack([np.array(Image.open(path)) for path in result.images]).transpose(0, 3, 1, 2)
    assert np.array_equal(seen[0].numpy(), saved.astype(np.float32) / 255)  # as evaluate judges: rounded first


def test_demo_makes_the_pixel_sheet_or_says_why_not(pixel_model, tmp_path, monkeypatch, capsys):
    import artdiff.studio.demo as demo

    class Gallery:
        sheet = tmp_path / "gallery.png"

    monkeypatch.setattr(demo, "make_gallery", lambda *args, **kwargs: Gallery())  # the gallery has its own test
    monkeypatch.setattr(demo, "SHIPPED_PIXEL_MODEL", tmp_path / "artdiff-pixel-mini")  # an install without it
    save(pattern(40, 40, seed=0), tmp_path / "art" / "p.png")  # one painting: quicker than a procedural set
    argv = ["demo", "--out", str(tmp_path / "out"), "--artworks", str(tmp_path / "art"), "--size", "32",
            "--pixel-steps", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"pixel model samples: skipped, this install has no artdiff-pixel-mini ({tmp_path / 'artdiff-pixel-mini'})" in out
    assert not (tmp_path / "out" / "pixel-samples.png").exists()
    assert main([*argv, "--pixel-model", str(pixel_model)]) == 0
    assert f"labelled with the judge's style): {tmp_path / 'out' / 'pixel-samples.png'}" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "pixel-samples").glob("*.png"))) == 16
    assert main([*argv, "--pixel-model", str(tmp_path / "absent")]) == 2  # a model asked for must be there
