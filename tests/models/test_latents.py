"""Latents: encode/decode shapes and range, size checks, and tiled decoding of large images."""

import pytest
import torch

from artdiff.models.latents import Latents
from artdiff.models.vae_specs import build_vae, vae_preset


@pytest.fixture
def latents():
    torch.manual_seed(0)
    return Latents(build_vae(vae_preset("tiny")).eval(), scale=0.5)


def test_round_trip_shapes_and_range(latents):
    images = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        z = latents.encode(images, sample=False)
        out = latents.decode(z)
    assert z.shape == (2, 4, 8, 12) and out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match="multiples of 2"):
        latents.encode(torch.rand(1, 3, 15, 16))


def test_large_outputs_decode_in_tiles(latents, monkeypatch):
    calls = []
    tiled = latents.vae.tiled_decode
    monkeypatch.setattr(latents.vae, "tiled_decode", lambda *a, **k: calls.append(1) or tiled(*a, **k))
    z = torch.randn(1, 4, 40, 40)
    with torch.no_grad():
        whole, in_tiles = latents.decode(z, tiled=False), latents.decode(z, tiled=True)
    assert calls and whole.shape == in_tiles.shape == (1, 3, 80, 80)
    assert (whole - in_tiles).abs().mean() < 0.1  # tiles are blended: close to the whole decode
    assert not latents.vae.use_tiling  # switched back off afterwards
