"""artdiff.json round-trips, keeps unknown fields, and names the file in its errors."""

import json

import pytest

from artdiff.errors import UserError
from artdiff.models.factory import read_model_info, write_model_info
from artdiff.models.model_info import ModelInfo


def test_round_trip_keeps_extra_fields(tmp_path):
    info = ModelInfo(kind="embedding-ldm", parameterization="v", schedule={"type": "cosine"},
                     conditioning={"type": "joint-embedding", "dim": 128, "null": "zeros"},
                     preprocessing={"size": 64, "kernel": "bicubic", "antialias": False}, latent_scale=0.71,
                     extra={"objective": "cloob"})
    write_model_info(tmp_path, info)
    assert json.loads((tmp_path / "artdiff.json").read_text())["objective"] == "cloob"
    assert read_model_info(tmp_path) == info


@pytest.mark.parametrize("data,message", [
    ({"kind": "painting"}, "kind 'painting'"),
    ({"kind": "vae", "parameterization": "score"}, "parameterization 'score'"),
    ({"kind": "vae", "latent_scale": -1}, "latent_scale"),
    ({"name": "x"}, "no 'kind'"),
])
def test_bad_files_are_one_line_errors(tmp_path, data, message):
    (tmp_path / "artdiff.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=message):
        read_model_info(tmp_path)
    with pytest.raises(UserError, match="no artdiff.json"):
        read_model_info(tmp_path / "missing")
