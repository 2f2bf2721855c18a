"""artdiff convert: an fp16 copy of a model directory that loads as float32 with the same outputs."""

import subprocess
import sys

import pytest
import torch

from artdiff.errors import UserError
from artdiff.models.convert_dtype import convert_model_dtype
from artdiff.models.factory import load_vae

from model_fixtures import tiny_vae


def test_fp16_copy_halves_the_weights_and_loads_as_float32(tmp_path):
    source = tiny_vae(tmp_path / "vae")
    result = convert_model_dtype(source, tmp_path / "half", "fp16")
    assert result.files == 1 and result.bytes_after < 0.6 * result.bytes_before
    assert (tmp_path / "half" / "artdiff.json").read_text() == (source / "artdiff.json").read_text()
    full, _ = load_vae(source)
    half, scale = load_vae(tmp_path / "half")
    assert half.dtype == torch.float32 and scale == 1.0
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(full(x).sample, half(x).sample, atol=5e-3)


def test_bad_requests(tmp_path):
    source = tiny_vae(tmp_path / "vae")
    with pytest.raises(UserError, match="new folder"):
        convert_model_dtype(source, source, "fp16")
    with pytest.raises(UserError, match="unknown dtype"):
        convert_model_dtype(source, tmp_path / "x", "int8")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "w.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="not a readable"):
        convert_model_dtype(tmp_path / "broken", tmp_path / "y", "fp16")
    assert not (tmp_path / "y").exists() and not (tmp_path / ".y.tmp").exists()


def test_cli(tmp_path):
    source = tiny_vae(tmp_path / "vae")
    done = subprocess.run([sys.executable, "-m", "artdiff", "convert", str(source), str(tmp_path / "half")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "MB ->" in done.stdout and (tmp_path / "half" / "config.json").is_file()


def test_an_existing_output_is_never_replaced(tmp_path, capsys):
    from artdiff.cli.main import main

    source = tiny_vae(tmp_path / "vae")
    (tmp_path / "paintings").mkdir()
    (tmp_path / "paintings" / "mine.png").write_bytes(b"not to be lost")
    (tmp_path / "a-file").write_text("x")
    for out in ("paintings", "a-file"):
        assert main(["convert", str(source), str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "already exists" in err
    assert (tmp_path / "paintings" / "mine.png").read_bytes() == b"not to be lost"
    (tmp_path / "empty").mkdir()
    assert main(["convert", str(source), str(tmp_path / "empty")]) == 0 and (tmp_path / "empty" / "config.json").is_file()
