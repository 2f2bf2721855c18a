"""Feature caches are computed once and rebuilt when the data or what computes them changes."""

import torch

from artdiff.data.cache import cached_features, fingerprint_files
from artdiff.data.manifest import write_manifest


def make_dataset(folder, count):
    write_manifest(folder, [{"image": f"images/{i}.png", "caption": str(i)} for i in range(count)])
    return folder


def test_computed_once_then_read(tmp_path):
    data = make_dataset(tmp_path / "d", 5)
    calls = []

    def compute(indices):
        calls.append(indices)
        return {"latents": torch.tensor(indices, dtype=torch.float32)[:, None] * 2}

    first = cached_features(data, {"encoder": "a"}, compute, 5, batch_size=2, show_progress=False)
    again = cached_features(data, {"encoder": "a"}, compute, 5, batch_size=2, show_progress=False)
    assert calls == [[0, 1], [2, 3], [4]] and torch.equal(first["latents"], again["latents"])
    assert first["latents"].squeeze(1).tolist() == [0, 2, 4, 6, 8]


def test_changes_invalidate(tmp_path):
    data = make_dataset(tmp_path / "d", 3)
    calls = []

    def compute(indices):
        calls.append(1)
        return {"x": torch.zeros(len(indices))}

    cached_features(data, {"encoder": "a", "preprocessing": {"antialias": True}}, compute, 3, show_progress=False)
    cached_features(data, {"encoder": "a", "preprocessing": {"antialias": False}}, compute, 3, show_progress=False)
    cached_features(data, {"encoder": "b", "preprocessing": {"antialias": False}}, compute, 3, show_progress=False)
    make_dataset(data, 4)  # the data changed
    cached_features(data, {"encoder": "b", "preprocessing": {"antialias": False}}, compute, 4, show_progress=False)
    assert len(calls) == 4


def test_fingerprint_follows_contents(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"abc")
    before = fingerprint_files([tmp_path / "w.safetensors"])
    (tmp_path / "w.safetensors").write_bytes(b"abd")
    assert fingerprint_files([tmp_path / "w.safetensors"]) != before
