"""The peak-memory estimate of pixel sampling (UNet2DModel at full resolution) and its refusals."""

import pytest

from artdiff.errors import UserError
from artdiff.utils import memory

GB = 2**30
# guided-diffusion's 256x256_diffusion_uncond.pt as a diffusers UNet2DModel (checkpoint-formats.md §3.4)
GUIDED_256 = {"in_channels": 3, "out_channels": 6, "layers_per_block": 2,
              "block_out_channels": [256, 256, 512, 512, 1024, 1024],
              "down_block_types": ["ResnetDownsampleBlock2D"] * 3 + ["AttnDownBlock2D"] * 3, "attention_head_dim": 64}
# improved-diffusion's lsun_uncond_100M_1200K_bs128.pt
LSUN_256 = {"in_channels": 3, "out_channels": 6, "layers_per_block": 2,
            "block_out_channels": [128, 128, 256, 256, 512, 512],
            "down_block_types": ["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"], "attention_head_dim": 512}


def need(config: dict, side: int, batch: int = 1, dtype_bytes: int = 4) -> int:
    return memory.pixel_sampling_peak_bytes(config, batch=batch, height=side, width=side, dtype_bytes=dtype_bytes)


def test_the_published_models_pass_at_their_size_and_the_estimate_grows():
    assert need(GUIDED_256, 256) * memory.MARGIN < 4 * GB  # the 552M model, one fp32 image on an 8 GB machine
    assert need(LSUN_256, 256) * memory.MARGIN < 2 * GB
    assert need(LSUN_256, 256) < need(GUIDED_256, 256)  # twice the channels at every level
    assert need(GUIDED_256, 256) < need(GUIDED_256, 512) < need(GUIDED_256, 1024)
    assert need(GUIDED_256, 256) < need(GUIDED_256, 256, batch=2) and need(GUIDED_256, 256, dtype_bytes=2) < \
        need(GUIDED_256, 256)
    assert need(GUIDED_256, 100000) > 1000 * GB


def test_full_resolution_dominates_and_unfused_attention_counts_its_score_matrices():
    # a resnet level at full resolution: 24 live tensors of its channels, far above one image of 3 channels
    unet = memory.pixel_unet_peak_bytes(GUIDED_256, batch=1, height=256, width=256, dtype_bytes=4)
    assert unet > memory.PIXEL_WORKING * 256 * 256 * 256 * 4
    maps = memory.pixel_unet_peak_bytes(GUIDED_256, batch=1, height=256, width=256, dtype_bytes=4,
                                        attention_maps=True)
    assert maps == unet  # attention at 32x32 and below: its 16 heads' (1024, 1024) maps stay under the resnets'
    at_64 = {**GUIDED_256, "down_block_types": ["ResnetDownsampleBlock2D"] + ["AttnDownBlock2D"] * 5}
    assert memory.pixel_unet_peak_bytes(at_64, batch=1, height=512, width=512, dtype_bytes=4,
                                        attention_maps=True) > \
        memory.pixel_unet_peak_bytes(at_64, batch=1, height=512, width=512, dtype_bytes=4)


def test_an_oversized_request_names_the_largest_size_that_fits(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2 * GB)
    with pytest.raises(UserError, match=r"4096x4096 needs .*largest size that fits is (\d+)x\1 \(--size \1\)") \
            as caught:
        memory.check_pixel_sampling_fits(LSUN_256, device="cpu", batch=1, height=4096, width=4096, dtype_bytes=4)
    side = int(str(caught.value).split("--size ")[1].rstrip(")"))
    assert side % memory.GRANULARITY == 0
    assert need(LSUN_256, side) * memory.MARGIN <= 2 * GB < need(LSUN_256, side + memory.GRANULARITY) * memory.MARGIN
    memory.check_pixel_sampling_fits(LSUN_256, device="cpu", batch=1, height=side, width=side, dtype_bytes=4)


def test_a_batch_too_large_names_the_batch_that_fits(monkeypatch):
    budget = int(need(LSUN_256, 256) * memory.MARGIN * 3.5)
    monkeypatch.setattr(memory, "available_bytes", lambda device: budget)
    with pytest.raises(UserError, match=r"16 images of 256x256 need .*--batch-size (\d+)") as caught:
        memory.check_pixel_sampling_fits(LSUN_256, device="cpu", batch=16, height=256, width=256, dtype_bytes=4)
    batch = int(str(caught.value).split("--batch-size ")[1].split(")")[0])
    assert 2 <= batch < 16
    assert need(LSUN_256, 256, batch) * memory.MARGIN <= budget < need(LSUN_256, 256, batch + 1) * memory.MARGIN


def test_nothing_is_refused_where_free_memory_cannot_be_told(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    memory.check_pixel_sampling_fits(GUIDED_256, device="cpu", batch=64, height=16384, width=16384, dtype_bytes=4)
