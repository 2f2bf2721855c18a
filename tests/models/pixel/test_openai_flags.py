"""OpenAI flags: both codebases' defaults, README strings, clip-diffusion-art's YAML quirks, presets, bad flags."""

import pytest

from artdiff.errors import UserError
from artdiff.models.pixel.openai_flags import (
    PRESETS,
    OpenAIFlags,
    parse_flags,
    pixel_model_info,
    unet2d_config,
)

LSUN_README = ('MODEL_FLAGS="--image_size 256 --num_channels 128 --num_res_blocks 2 --num_heads 1 --learn_sigma True '
               '--use_scale_shift_norm False --attention_resolutions 16"\n'
               'DIFFUSION_FLAGS="--diffusion_steps 1000 --noise_schedule linear --rescale_learned_sigmas False '
               '--rescale_timesteps False"')
GUIDED_UNCOND_README = ("--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --image_size 256 "
                        "--learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 "
                        "--num_res_blocks 2 --resblock_updown True --use_fp16 True --use_scale_shift_norm True")
# clip-diffusion-art's configs/256x256_clip_diffusion_art.yaml as published, quirks included
CLIP_DIFFUSION_ART_YAML = """model_config:
  'attention_resolutions': '16'
  'class_cond': False
  'rescale_timesteps': True
  'rescale_learned_sigmas': True
  'image_size': 256
  'learn_sigma': True
  'noise_schedule': 'linear'
  'num_channels': 128
  # 'num_head_channels': 64,
  'num_heads': 1
  'num_res_blocks': 2
  # 'resblock_updown': True
  'use_checkpoint': False
  'use_fp16': True,
  'use_scale_shift_norm': False
"""


def test_omitted_flags_take_each_codebases_defaults():
    improved = parse_flags("--image_size 64 --diffusion_steps 4000", codebase="improved-diffusion")
    guided = parse_flags("--image_size 64 --diffusion_steps 4000", codebase="guided-diffusion")
    assert improved.rescale_timesteps and improved.rescale_learned_sigmas
    assert not guided.rescale_timesteps and not guided.rescale_learned_sigmas
    assert improved.num_heads == guided.num_heads == 4 and improved.use_scale_shift_norm and guided.use_scale_shift_norm
    assert parse_flags("--image_size 32", codebase="improved").channel_mult == (1, 2, 2, 2)
    assert parse_flags("--image_size 128", codebase="guided").channel_mult == (1, 1, 2, 3, 4)
    with pytest.raises(UserError, match="improved-diffusion derives channel_mult only for image_size 256/64/32"):
        parse_flags("--image_size 128", codebase="improved")
    with pytest.raises(UserError, match="pass --channel_mult"):
        parse_flags("--image_size 48", codebase="guided")
    assert parse_flags("--image_size 48 --channel_mult 1,2,2").channel_mult == (1, 2, 2)


def test_the_codebase_is_inferred_from_the_flags_or_refused_when_it_matters():
    assert parse_flags("--image_size 64 --num_head_channels 64").codebase == "guided-diffusion"
    assert parse_flags("--image_size 64 --sigma_small True").codebase == "improved-diffusion"
    assert parse_flags("--image_size 32").codebase == "improved-diffusion"  # only improved builds 32 px
    assert parse_flags("--codebase improved --image_size 64").rescale_timesteps
    assert parse_flags("--image_size 64").codebase == "guided-diffusion"  # T = 1000: both codebases agree
    with pytest.raises(UserError, match="fit both improved-diffusion and guided-diffusion"):
        parse_flags("--image_size 64 --diffusion_steps 4000")
    with pytest.raises(UserError, match="no checkpoint has both"):
        parse_flags("--num_head_channels 64 --sigma_small True")
    with pytest.raises(UserError, match="flag of guided-diffusion, not of improved-diffusion"):
        parse_flags("--resblock_updown True", codebase="improved-diffusion")


@pytest.mark.parametrize("flags,codebase", [("--use_fp16 True", "improved-diffusion"),
                                            ("--use_fp16 True --sigma_small True", None)])
def test_use_fp16_is_an_improved_diffusion_training_script_flag(flags, codebase):
    with pytest.raises(UserError) as caught:
        parse_flags(f"--image_size 64 {flags}", codebase=codebase)
    message = str(caught.value)
    assert message.startswith("--use_fp16 is a flag of improved-diffusion's training script, not of its model")
    assert "flag of guided-diffusion" not in message
    assert parse_flags("--image_size 64 --use_fp16 True").codebase == "guided-diffusion"  # a model flag there


def test_flag_syntax_of_argparse_and_str2bool():
    flags = parse_flags("--image_size=64 --learn_sigma 1 --class_cond yes --use_scale_shift_norm F --dropout 0.1 "
                        "--attention_resolutions '32, 16'")
    assert (flags.image_size, flags.learn_sigma, flags.class_cond, flags.use_scale_shift_norm) == (64, True, True, False)
    assert flags.dropout == 0.1 and flags.attention_resolutions == (32, 16)
    assert parse_flags("--image_size 64 --image_size 32", codebase="improved").image_size == 32  # the last one wins


def test_presets_equal_the_published_flags():
    assert parse_flags("lsun-uncond-256") == parse_flags(LSUN_README, codebase="improved-diffusion")
    assert parse_flags("openai-256-uncond") == parse_flags(GUIDED_UNCOND_README, codebase="guided-diffusion")
    yaml_flags = parse_flags(CLIP_DIFFUSION_ART_YAML)
    assert yaml_flags == parse_flags("clip-diffusion-art-256")
    assert yaml_flags.codebase == "clip-diffusion-art" and yaml_flags.use_fp16 is True  # 'True,' read as True
    assert yaml_flags.rescale_timesteps and yaml_flags.num_heads == 1 and yaml_flags.attention_resolutions == (16,)
    assert set(PRESETS) == {"lsun-uncond-256", "openai-256-uncond", "clip-diffusion-art-256"}


def test_a_flags_file_with_the_readme_lines(tmp_path):
    (tmp_path / "lsun.txt").write_text(LSUN_README + "  # from the README\n")
    assert parse_flags(str(tmp_path / "lsun.txt"), codebase="improved") == parse_flags("lsun-uncond-256")


def test_yaml_attention_resolutions_with_spaces_and_a_yaml_file(tmp_path):
    file = tmp_path / "256x256_diffusion_uncond.yaml"
    file.write_text("model_config:\n  'attention_resolutions': '32, 16, 8'\n  'image_size': 256\n"
                    "  'num_head_channels': 64\n  'use_fp16': True\n  'resblock_updown': True\n")
    flags = parse_flags(str(file))
    assert flags.attention_resolutions == (32, 16, 8) and flags.num_head_channels == 64 and flags.resblock_updown


def test_published_architectures_in_diffusers_terms():
    lsun = unet2d_config(parse_flags("lsun-uncond-256"))
    assert lsun["block_out_channels"] == [128, 128, 256, 256, 512, 512] and lsun["out_channels"] == 6
    assert lsun["down_block_types"] == ["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"]
    assert lsun["up_block_types"] == ["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4
    assert lsun["attention_head_dim"] == 512 and lsun["resnet_time_scale_shift"] == "default"
    guided = unet2d_config(parse_flags("openai-256-uncond"))
    assert guided["block_out_channels"] == [256, 256, 512, 512, 1024, 1024]
    assert guided["down_block_types"] == ["ResnetDownsampleBlock2D"] * 3 + ["AttnDownBlock2D"] * 3
    assert guided["up_block_types"] == ["AttnUpBlock2D"] * 3 + ["ResnetUpsampleBlock2D"] * 3
    assert guided["attention_head_dim"] == 64 and guided["downsample_type"] == guided["upsample_type"] == "resnet"
    assert guided["attn_norm_num_groups"] == 32 and guided["resnet_time_scale_shift"] == "scale_shift"


def test_model_info_records_schedule_variance_and_source():
    info = pixel_model_info(parse_flags("clip-diffusion-art-256"), source={"file": "a.pt", "sha256": "ab"})
    data = info.to_dict()
    assert data["kind"] == "unconditional" and data["parameterization"] == "eps"
    assert data["schedule"] == {"type": "discrete", "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
                                "num_train_timesteps": 1000}
    assert data["variance"] == "learned_range" and data["rescale_timesteps"] is True
    assert data["image_size"] == 256 and data["pixel_range"] == [-1, 1] and data["conditioning"] == {"type": "none"}
    assert data["source"]["format"] == "clip-diffusion-art" and data["source"]["flags"]["num_heads"] == 1
    cosine = pixel_model_info(parse_flags("--codebase improved --image_size 64 --diffusion_steps 4000 "
                                          "--noise_schedule cosine --sigma_small True --predict_xstart True "
                                          "--class_cond True")).to_dict()
    assert cosine["schedule"] == {"type": "discrete", "beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 4000}
    assert cosine["variance"] == "fixed_small" and cosine["parameterization"] == "x0"
    assert cosine["conditioning"] == {"type": "class-label", "num_classes": 1000}
    scaled = pixel_model_info(parse_flags("--image_size 64 --diffusion_steps 4000", codebase="improved")).schedule
    assert scaled["beta_start"] == pytest.approx(2.5e-5) and scaled["beta_end"] == pytest.approx(0.005)
    assert pixel_model_info(parse_flags("--image_size 64")).extra["variance"] == "fixed_large"


@pytest.mark.parametrize("text,message", [
    ("--image_size 64 --num_chanels 128", "unknown flag --num_chanels for guided-diffusion; did you mean --num_channels"),
    ("--batch_size 4", "--batch_size is a flag of the sampling or training scripts"),
    ("--image_size", "flag --image_size has no value"),
    ("--image_size big", "--image_size expects a whole number, not 'big'"),
    ("--learn_sigma maybe", "--learn_sigma expects True or False"),
    ("--attention_resolutions 16,x", "--attention_resolutions expects comma-separated whole numbers"),
    ("--noise_schedule sqrt", "--noise_schedule 'sqrt' is not linear or cosine"),
    ("--num_channels 100000", "--num_channels 100000 is not a number from 32"),
    ("--codebase guided --diffusion_steps 10", "betas of 1 or more"),
    ("$MODEL_FLAGS", "neither a preset name"),
    ("python image_sample.py --image_size 64", "unexpected 'python'"),
    ("--image_size '64", "check the quotes"),
    ("lsun-uncond", "neither a preset name (lsun-uncond-256"),
    ("", "--flags is empty"),
    ("missing.yaml", "flags file missing.yaml does not exist"),
])
def test_bad_flags_are_one_line(text, message):
    with pytest.raises(UserError) as error:
        parse_flags(text)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unconvertible_architectures_say_why():
    with pytest.raises(UserError, match="512 px default"):
        unet2d_config(parse_flags("--image_size 512"))
    with pytest.raises(UserError, match="heads of different sizes"):  # improved-diffusion's ImageNet-64 default
        unet2d_config(parse_flags("--image_size 64 --num_heads 4 --attention_resolutions 16,8"))
    with pytest.raises(UserError, match="multiple of 32"):
        unet2d_config(OpenAIFlags(image_size=64, num_channels=48))
    with pytest.raises(UserError, match="num_heads_upsample"):
        unet2d_config(parse_flags("--image_size 64 --num_heads 2 --num_heads_upsample 4 --attention_resolutions 8"))
