"""A damaged feature cache is rebuilt (with one line saying so), never a reason for training to stop."""

import pytest
import torch

from artdiff.data.cache import cached_features
from artdiff.data.manifest import write_manifest

DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "junk": lambda data: b"\xff" * 64,
    "header only": lambda data: data[:8],
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_cache_is_rebuilt(tmp_path, kind, capsys):
    write_manifest(tmp_path / "d", [{"image": f"images/{i}.png"} for i in range(4)])
    calls = []

    def compute(indices):
        calls.append(indices)
        return {"latents": torch.tensor(indices, dtype=torch.float32)[:, None]}

    first = cached_features(tmp_path / "d", {"vae": "a"}, compute, 4, show_progress=False)
    (path,) = (tmp_path / "d" / ".cache").glob("features-*.safetensors")
    path.write_bytes(DAMAGE[kind](path.read_bytes()))
    again = cached_features(tmp_path / "d", {"vae": "a"}, compute, 4, show_progress=False)
    assert len(calls) == 2 and torch.equal(first["latents"], again["latents"])
    err = capsys.readouterr().err
    assert str(path) in err and "rebuilding" in err and len(err.strip().splitlines()) == 1
    assert torch.equal(cached_features(tmp_path / "d", {"vae": "a"}, compute, 4, show_progress=False)["latents"],
                       first["latents"]) and len(calls) == 2  # the rebuilt file is read again


def test_a_cache_with_the_wrong_row_count_is_rebuilt(tmp_path):
    write_manifest(tmp_path / "d", [{"image": f"images/{i}.png"} for i in range(3)])
    calls = []

    def compute(indices):
        calls.append(1)
        return {"x": torch.zeros(len(indices), 2)}

    cached_features(tmp_path / "d", {"vae": "a"}, compute, 3, show_progress=False)
    assert cached_features(tmp_path / "d", {"vae": "a"}, compute, 2, show_progress=False)["x"].shape == (2, 2)
    assert len(calls) == 2
