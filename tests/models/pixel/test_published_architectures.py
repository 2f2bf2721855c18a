"""Full-size published architectures (shapes only, on the meta device): our key map covers every tensor."""

import pytest
import torch
from diffusers import UNet2DModel
from openai_unet_reference import OpenAIUNet

from artdiff.models.pixel.openai_flags import parse_flags, unet2d_config
from artdiff.models.pixel.openai_unet_keys import key_entries, original_shape

# guided-diffusion README: the class-conditional 64 px model (qkv-major attention) and the 256 px one
GUIDED_64 = ("--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --dropout 0.1 --image_size 64 "
             "--learn_sigma True --noise_schedule cosine --num_channels 192 --num_head_channels 64 --num_res_blocks 3 "
             "--resblock_updown True --use_new_attention_order True --use_fp16 True --use_scale_shift_norm True")
GUIDED_256_COND = ("--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --image_size 256 "
                   "--learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 "
                   "--num_res_blocks 2 --resblock_updown True --use_fp16 True --use_scale_shift_norm True")
# research/checkpoint-formats.md §3.1 (counted from the released files)
PUBLISHED_PARAMETERS = {"lsun-uncond-256": 113_676_678, "openai-256-uncond": 552_814_086,
                        "clip-diffusion-art-256": 113_676_678}


@pytest.mark.parametrize("flags", [*PUBLISHED_PARAMETERS, GUIDED_64, GUIDED_256_COND])
def test_key_map_covers_the_original_layout_exactly(flags):
    parsed = parse_flags(flags)
    with torch.device("meta"):
        reference, unet = OpenAIUNet(parsed), UNet2DModel(**unet2d_config(parsed))
    shapes = {name: tuple(t.shape) for name, t in unet.state_dict().items()}
    expected = {entry.original: original_shape(entry, shapes) for entry in key_entries(parsed, shapes)}
    assert expected == {name: tuple(t.shape) for name, t in reference.state_dict().items()}
    if flags in PUBLISHED_PARAMETERS:
        assert sum(p.numel() for p in unet.parameters()) == PUBLISHED_PARAMETERS[flags]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["lsun-uncond-256", "openai-256-uncond"])
def test_full_size_random_networks_convert_equal(preset):
    # about 10 s and 35 s on one CPU thread; a 64 px input keeps the 256 px architectures affordable
    from openai_unet_reference import randomize

    from artdiff.models.pixel.openai_checkpoint import build_unet

    flags = parse_flags(preset)
    reference = randomize(OpenAIUNet(flags), 0)
    unet = build_unet(reference.state_dict(), flags, where=preset)
    x, t = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    with torch.no_grad():
        assert (reference(x, t) - unet(x, t).sample).abs().max() < 2e-5
