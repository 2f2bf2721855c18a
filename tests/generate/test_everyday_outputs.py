"""Outputs a user can trust: A1111 names that never replace a file, random seeds, batches, YAML prompts, --out."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from artdiff.cli.main import main
from artdiff.errors import NonFiniteError, UserError
from artdiff.generate.any_model import generate
from artdiff.generate.options import GenerateOptions
from artdiff.utils.pngmeta import read_sidecar

from model_fixtures import tiny_embedding_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_embedding_model(tmp_path_factory.mktemp("gen"), steps=2)


def request(model, out, **kwargs):
    return GenerateOptions(**{"model": str(model), "out": out, "steps": 2, "n": 2, "prompts": ["rothko"], **kwargs})


def test_a_second_run_numbers_on_and_replaces_nothing(model, tmp_path):
    out = tmp_path / "out"
    first = generate(request(model, out, seed=3))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    second = generate(request(model, out, seed=3, prompts=["pollock"]))
    assert [p.name for p in first.paths] == ["00000-3.png", "00001-4.png"]
    assert [p.name for p in second.paths] == ["00002-3.png", "00003-4.png"]
    assert all((out / name).read_bytes() == data for name, data in before.items())  # nothing was replaced
    (out / "00041-9.png").write_bytes(b"a user's file")
    assert [p.name for p in generate(request(model, out, seed=3, n=1)).paths] == ["00042-3.png"]
    assert (out / "00041-9.png").read_bytes() == b"a user's file"


def test_seed_minus_one_is_the_default_and_the_sidecar_records_the_seed_and_cfg_used(model, tmp_path):
    assert GenerateOptions().seed == -1
    result = generate(request(model, tmp_path / "a", seed=-1))
    sidecar = read_sidecar(result.paths[1])
    seed = sidecar["request"]["seed"]
    assert 0 <= seed <= 2**32 - 1 and result.seed == seed and sidecar["seed"] == seed + 1
    assert sidecar["request"]["cfg"] == 3.0 and result.paths[0].name == f"00000-{seed}.png"
    again = generate(request(model, tmp_path / "b", seed=seed))  # the recorded seed reproduces the images
    assert all(np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
               for a, b in zip(result.paths, again.paths))


def test_image_i_does_not_depend_on_the_batch_size_and_each_batch_reports_progress(model, tmp_path):
    steps_seen = []
    import artdiff.generate.outputs as outputs

    class Bar:  # records what the bar is told
        def __init__(self, **kwargs):
            steps_seen.append(("total", kwargs["total"]))

        def update(self, n=1):
            steps_seen.append(("update", n))

        describe = status = lambda self, *a, **k: None  # noqa: E731
        __enter__ = lambda self: self  # noqa: E731
        __exit__ = lambda self, *exc: None  # noqa: E731

    one = generate(request(model, tmp_path / "one", seed=5, n=3, batch_size=1))
    original, outputs.ProgressBar = outputs.ProgressBar, Bar
    try:
        two = generate(request(model, tmp_path / "two", seed=5, n=3, batch_size=2))
    finally:
        outputs.ProgressBar = original
    for a, b in zip(one.paths, two.paths):
        assert np.abs(np.asarray(Image.open(a)).astype(int) - np.asarray(Image.open(b))).max() <= 1
    assert steps_seen[0] == ("total", 6) and sum(n for kind, n in steps_seen if kind == "update") == 6


def test_images_are_written_as_each_batch_finishes(model, tmp_path, monkeypatch, capsys):
    import artdiff.generate.embedding_generate as module

    calls = []
    real = module.sample_from_embeddings

    def failing_second_batch(*args, **kwargs):
        calls.append(kwargs["seed"])
        if len(calls) == 2:
            raise NonFiniteError("sampling, at step 1 of 2")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "sample_from_embeddings", failing_second_batch)
    out = tmp_path / "out"
    with pytest.raises(NonFiniteError):
        generate(request(model, out, seed=0, n=5, batch_size=2))
    assert sorted(p.name for p in out.glob("*.png")) == ["00000-0.png", "00001-1.png"]  # the first batch only
    assert not list(out.glob(".*"))  # nothing half-written
    assert "2 images were written" in capsys.readouterr().err


def test_non_finite_decoded_images_are_refused_not_saved_black(model, tmp_path, monkeypatch):
    import torch

    import artdiff.generate.embedding_generate as module

    monkeypatch.setattr(module, "sample_from_embeddings", lambda *a, **k: torch.full((1, 3, 16, 16), float("nan")))
    with pytest.raises(NonFiniteError, match="decoding"):
        generate(request(model, tmp_path / "out", seed=0, n=1))
    assert not (tmp_path / "out").exists()


def test_config_prompts_are_used(model, tmp_path, capsys):
    config = tmp_path / "opts.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["a pastel rothko:2"], "steps": 2, "n": 1, "seed": 1}))
    assert main(["generate", "--config", str(config), "--model", str(model), "--out", str(tmp_path / "o"),
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["prompt"] == "a pastel rothko:2" and len(printed["images"]) == 1
    assert main(["generate", "dark ground", "--config", str(config), "--model", str(model), "--out",
                 str(tmp_path / "p"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt"] == "dark ground:1"  # the command line wins


def test_out_naming_a_file_is_one_line(model, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(UserError, match="is a file; pass a folder"):
        generate(request(model, tmp_path / "taken"))
    assert main(["generate", "rothko", "--model", str(model), "--out", str(tmp_path / "taken" / "sub")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
