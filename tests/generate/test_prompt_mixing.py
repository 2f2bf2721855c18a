"""Prompt weights are relative to --cfg by default (the raw CCLD sum with --raw-weights), and said so."""

import numpy as np
import pytest
from PIL import Image

import artdiff.generate.embedding_generate as module
from artdiff.errors import UserError
from artdiff.generate.any_model import generate
from artdiff.generate.embedding_generate import mixing_weights
from artdiff.generate.options import GenerateOptions
from artdiff.generate.prompts import Prompt
from artdiff.utils.pngmeta import read_parameters, read_sidecar

from model_fixtures import tiny_embedding_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_embedding_model(tmp_path_factory.mktemp("mix"), steps=2)


def terms(*weights):
    return [Prompt("text", f"t{i}", w) for i, w in enumerate(weights)]


def test_weights_are_divided_by_the_positive_sum_unless_raw():
    assert mixing_weights(terms(3, 1), raw=False) == [0.75, 0.25]
    assert mixing_weights(terms(3, 1, -2), raw=False) == [0.75, 0.25, -0.5]  # a negative weight still pushes away
    assert mixing_weights(terms(-2), raw=False) == [-1.0]
    assert mixing_weights(terms(3, 1), raw=True) == [3, 1]
    with pytest.raises(UserError, match="every prompt weight is 0"):
        mixing_weights(terms(0, 0), raw=False)


def guidance_of(model, tmp_path, monkeypatch, **kwargs):
    """The (cfg_scale, weights) the sampler is handed, and the result."""
    seen = {}
    real = module.sample_from_embeddings

    def spy(*args, cfg_scale, **rest):
        seen["scale"] = cfg_scale * sum(w for _, w in args[4][0] if w > 0)  # what multiplies (cond - uncond)
        return real(*args, cfg_scale=cfg_scale, **rest)

    monkeypatch.setattr(module, "sample_from_embeddings", spy)
    result = generate(GenerateOptions(model=str(model), prompts=["a rothko:3", "dark ground:1"], cfg=3, steps=2,
                                      n=1, seed=0, out=tmp_path, **kwargs))
    return seen["scale"], result


def test_relative_weights_guide_at_cfg_and_raw_weights_at_cfg_times_the_sum(model, tmp_path, monkeypatch):
    scale, relative = guidance_of(model, tmp_path / "rel", monkeypatch)
    assert scale == pytest.approx(3.0) and relative.cfg == 3.0
    sidecar = read_sidecar(relative.paths[0])
    assert sidecar["mixing_weights"] == [0.75, 0.25] and sidecar["effective_cfg"] == 3.0
    assert "Prompt weights: relative" in read_parameters(relative.paths[0])
    scale, raw = guidance_of(model, tmp_path / "raw", monkeypatch, raw_weights=True)
    assert scale == pytest.approx(12.0) and raw.cfg == 12.0
    assert read_sidecar(raw.paths[0])["effective_cfg"] == 12.0
    assert "Effective CFG scale: 12" in read_parameters(raw.paths[0])
    a = np.asarray(Image.open(relative.paths[0])).astype(int)
    assert np.abs(a - np.asarray(Image.open(raw.paths[0]))).max() > 0


def test_one_unweighted_prompt_is_unchanged_by_the_mode(model, tmp_path):
    common = dict(model=str(model), prompts=["rothko"], steps=2, n=1, seed=0)
    one = generate(GenerateOptions(**common, out=tmp_path / "a"))
    two = generate(GenerateOptions(**common, raw_weights=True, out=tmp_path / "b"))
    assert np.array_equal(np.asarray(Image.open(one.paths[0])), np.asarray(Image.open(two.paths[0])))
