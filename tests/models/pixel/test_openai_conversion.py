"""An improved/guided-diffusion state dict becomes a UNet2DModel that computes the same function (float32)."""

import pytest
import torch
from openai_unet_reference import OpenAIUNet, randomize

from artdiff.models.pixel.openai_checkpoint import build_unet
from artdiff.models.pixel.openai_flags import parse_flags
from artdiff.models.pixel.openai_unet_keys import split_qkv

SMALL = "--num_channels 32 --image_size 16 --channel_mult 1,2"
LAYOUTS = {
    # improved-diffusion: conv resampling, h + emb, heads by count, its own channel_mult for 32 px
    "improved": "--codebase improved --image_size 32 --num_channels 32 --num_res_blocks 1 --num_heads 2 "
                "--attention_resolutions 16,8 --use_scale_shift_norm False --learn_sigma True",
    # guided-diffusion 256-style: residual-block resampling, scale-shift, heads by channels
    "guided": f"{SMALL} --num_res_blocks 2 --num_head_channels 32 --attention_resolutions 8 --resblock_updown True "
              "--use_scale_shift_norm True",
    # one head at two attention widths (UNet2DModel's attention_head_dim None)
    "one-head-two-widths": f"{SMALL} --num_res_blocks 1 --num_heads 1 --attention_resolutions 16,8 "
                           "--use_scale_shift_norm False",
    "class-conditional": f"{SMALL} --num_res_blocks 1 --num_heads 2 --attention_resolutions 8 --class_cond True "
                         "--learn_sigma True",
    "qkv-major": f"{SMALL} --num_res_blocks 1 --num_heads 2 --attention_resolutions 8 --use_new_attention_order True",
}


def pair(text, seed=1):
    flags = parse_flags(text)
    reference = randomize(OpenAIUNet(flags), seed)
    return flags, reference, build_unet(reference.state_dict(), flags, where="test.pt")


def outputs(flags, reference, unet, *, dtype=torch.float32):
    x = torch.randn(2, 3, flags.image_size, flags.image_size, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([3, 700])
    y = torch.tensor([5, 999]) if flags.class_cond else None
    with torch.no_grad():
        return reference(x, t, y), unet(x.to(dtype), t, class_labels=y).sample.float()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_converted_network_equals_the_original(layout):
    flags, reference, unet = pair(LAYOUTS[layout])
    expected, got = outputs(flags, reference, unet)
    assert got.shape == (2, 6 if flags.learn_sigma else 3, flags.image_size, flags.image_size)
    assert expected.abs().max() > 0.5  # random weights everywhere, so every layer shapes the output
    assert (expected - got).abs().max() < 2e-5


def test_the_layouts_differ_where_the_tests_claim():
    config = {name: pair(text)[2].config for name, text in LAYOUTS.items()}
    assert config["improved"].downsample_type == "conv" and config["improved"].resnet_time_scale_shift == "default"
    assert config["guided"].downsample_type == "resnet" and config["guided"].resnet_time_scale_shift == "scale_shift"
    assert config["improved"].attention_head_dim == 32 and config["guided"].attention_head_dim == 32
    assert config["one-head-two-widths"].attention_head_dim is None
    assert config["class-conditional"].num_class_embeds == 1000 and config["improved"].out_channels == 6
    assert config["guided"].attn_norm_num_groups == 32  # without it the middle attention would lose its GroupNorm


def test_a_qkv_major_split_of_a_head_major_file_would_be_wrong():
    # the negative control: the head-major split is what makes the multi-head layouts equal
    packed = torch.arange(12.0)  # 2 heads of width 2: [h0 q q k k v v | h1 q q k k v v]
    q, k, v = split_qkv(packed, 2, head_major=True)
    assert q.tolist() == [0, 1, 6, 7] and k.tolist() == [2, 3, 8, 9] and v.tolist() == [4, 5, 10, 11]
    q, k, v = split_qkv(packed, 2, head_major=False)
    assert q.tolist() == [0, 1, 2, 3] and v.tolist() == [8, 9, 10, 11]
    flags, reference, unet = pair(LAYOUTS["guided"])
    state = reference.state_dict()
    for key in [k for k in state if k.endswith("qkv.weight") and state[k].shape[0] > 96]:
        state[key] = state[key].reshape(2, 3, 32, -1, 1).transpose(0, 1).reshape(state[key].shape)
    wrong = build_unet(state, flags, where="test.pt")
    expected, got = outputs(flags, reference, wrong)
    assert (expected - got).abs().max() > 1e-2


def test_fp16_weights_load_into_float32_and_fp16():
    flags, reference, _ = pair(LAYOUTS["guided"])
    half = {key: value.half() for key, value in reference.state_dict().items()}
    unet = build_unet(half, flags, where="test.pt")
    assert all(p.dtype == torch.float32 for p in unet.parameters())
    expected, got = outputs(flags, reference, unet)
    assert (expected - got).abs().max() < 5e-2
    kept = build_unet(half, flags, where="test.pt", dtype=torch.float16)
    assert all(p.dtype == torch.float16 for p in kept.parameters())


def test_converted_weights_are_ordinary_trainable_parameters():
    _, _, unet = pair(LAYOUTS["class-conditional"])
    assert all(p.requires_grad and not p.is_meta for p in unet.parameters())
    assert not any(b.is_meta for b in unet.buffers())
