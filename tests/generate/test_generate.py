"""`artdiff generate` and `artdiff embed` on a tiny trained embedding-ldm: prompts, seeds, metadata, errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from artdiff.cli.main import main
from artdiff.errors import UserError
from artdiff.generate.any_model import generate
from artdiff.generate.options import GenerateOptions
from artdiff.utils.pngmeta import read_parameters, read_sidecar

from model_fixtures import tiny_embedding_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_embedding_model(tmp_path_factory.mktemp("gen"), steps=2)


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "ref.png"
    Image.fromarray((np.random.default_rng(0).random((20, 28, 3)) * 255).astype(np.uint8)).save(path)
    return path


def options(model, out, **kwargs):
    return GenerateOptions(**{"model": str(model), "out": out, "steps": 3, "n": 2, **kwargs})


def test_text_image_and_mixed_prompts_write_images_with_metadata(model, reference, tmp_path):
    result = generate(options(model, tmp_path / "out", prompts=["a pastel rothko:3", "dark ground:-1"],
                              images=[f"{reference}:2"], seed=7))
    assert [p.name for p in result.paths] == ["00000-7.png", "00001-8.png"]
    image = Image.open(result.paths[0])
    assert image.size == (16, 16) and image.mode == "RGB"
    parameters = read_parameters(result.paths[1])
    assert parameters.startswith("a pastel rothko:3 | dark ground:-1 | image=") and "Seed: 8" in parameters
    assert "Steps: 3, Sampler: DPM++ 2M, CFG scale: 3" in parameters
    sidecar = read_sidecar(result.paths[1])
    assert sidecar["seed"] == 8 and sidecar["request"]["prompts"] == ["a pastel rothko:3", "dark ground:-1"]
    assert sidecar["preprocessing"]["size"] == 32


def test_image_i_does_not_depend_on_n(model, tmp_path):
    three = generate(options(model, tmp_path / "a", prompts=["rothko"], n=3, seed=10))
    alone = generate(options(model, tmp_path / "b", prompts=["rothko"], n=1, seed=12))
    assert np.array_equal(np.asarray(Image.open(three.paths[2])), np.asarray(Image.open(alone.paths[0])))


def test_weights_change_the_result(model, tmp_path):
    one = generate(options(model, tmp_path / "a", prompts=["rothko:1"], n=1))
    five = generate(options(model, tmp_path / "b", prompts=["rothko:5"], n=1))
    assert not np.array_equal(np.asarray(Image.open(one.paths[0])), np.asarray(Image.open(five.paths[0])))


def test_embed_then_use_as_embedding(model, tmp_path, capsys):
    folder = tmp_path / "style"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((24, 30, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    assert main(["embed", str(folder), "--out", str(tmp_path / "style.safetensors"), "--model", str(model),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 3 and len(summary["skipped"]) == 1
    argv = ["generate", "--model", str(model), "--embedding", f"{tmp_path / 'style.safetensors'}:2", "-n", "1",
            "--steps", "2", "--out", str(tmp_path / "out"), "--json"]
    assert main(argv) == 0
    assert len(json.loads(capsys.readouterr().out)["images"]) == 1


@pytest.mark.parametrize("case,message", [
    ("kind", "is a vae model directory"),
    ("image", "cannot be read"),
    ("weight", "malformed weight"),
    ("size", "multiples of"),
    ("dim", "dimensions"),
    ("nothing", "nothing to generate"),
])
def test_bad_input_is_one_line_and_writes_nothing(model, tmp_path, case, message):
    out = tmp_path / "out"
    kwargs = {"prompts": ["rothko"], "model": str(model)}
    if case == "kind":
        kwargs["model"] = str(model / "vae")
    elif case == "image":
        (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
        kwargs["images"] = [str(tmp_path / "bad.png")]
    elif case == "weight":
        kwargs["prompts"] = ["text:abc"]
    elif case == "size":
        kwargs["size"] = 18
    elif case == "dim":
        save_file({"embedding": torch.zeros(7)}, str(tmp_path / "e.safetensors"))
        kwargs["embeddings"] = [str(tmp_path / "e.safetensors")]
    else:
        kwargs["prompts"] = []
    with pytest.raises(UserError, match=message):
        generate(GenerateOptions(**{"out": out, "steps": 2, "n": 1, **kwargs}))
    assert not out.exists()


def test_batched_sampling_equals_one_at_a_time(model, tmp_path):
    from artdiff.generate.embedding_generate import build_prompt_set, load_embedding_model
    from artdiff.generate.prompts import parse_prompt
    from artdiff.generate.sample import sample_from_embeddings

    loaded = load_embedding_model(str(model))
    sets = [build_prompt_set(loaded, [parse_prompt(t)]) for t in ("rothko", "pollock", "mondrian")]
    kwargs = dict(cfg_scale=3.0, steps=3, seed=4, latent_size=8, sampler="euler_a")
    together = sample_from_embeddings(loaded.unet, loaded.latents, loaded.info.schedule, "v", sets, **kwargs)
    apart = sample_from_embeddings(loaded.unet, loaded.latents, loaded.info.schedule, "v", sets, batch_size=1,
                                   **kwargs)
    # batched kernels may round differently; 1e-4 is far below one 8-bit level (0.004)
    assert torch.allclose(together, apart, atol=1e-4)


def test_an_embedding_model_records_the_resolved_sampler_and_steps(model, tmp_path):
    """generate resolves the embedding kind's own sampler and steps; the pixel-only options stay unset."""
    result = generate(GenerateOptions(model=str(model), prompts=["rothko"], n=1, seed=1, steps=2,
                                      out=tmp_path / "out"))
    assert (result.sampler, result.steps) == ("dpm++2m", 2)
    request = read_sidecar(result.paths[0])["request"]
    assert (request["sampler"], request["respacing"], request["skip_steps"]) == ("dpm++2m", None, 0)
    assert "Steps: 2, Sampler: DPM++ 2M" in read_parameters(result.paths[0])
