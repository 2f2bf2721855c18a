"""What an OpenAI UNet's flags mean in diffusers: the UNet2DModel config and the artdiff.json of the model directory.

UNet2DModel has the same block topology as improved/guided-diffusion's UNetModel (research/checkpoint-formats.md
§3.4): positional timestep embedding cat(cos, sin) (flip_sin_to_cos, freq_shift 0), GroupNorm(32, eps 1e-5),
conv or residual-block resampling, "default" (h + emb) or "scale_shift" (FiLM) time conditioning. Two limits:
one head width for all attention layers, and the sinusoid sized by the first level's width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from artdiff.errors import UserError
from artdiff.models.model_info import ModelInfo

if TYPE_CHECKING:  # openai_flags re-exports this module's functions, so it is imported only for types
    from artdiff.models.pixel.openai_flags import OpenAIFlags

GROUPS = 32  # GroupNorm32 of both codebases (nn.normalization)
PIXEL_RANGE = [-1, 1]


def level_widths(flags: OpenAIFlags) -> list[int]:
    """Channels of each level: int(mult * num_channels), as UNetModel computes them."""
    return [int(mult * flags.num_channels) for mult in flags.channel_mult]


def attention_levels(flags: OpenAIFlags) -> list[bool]:
    """Whether each level has self-attention: its downsampling rate 2^level is image_size / some resolution."""
    rates = {flags.image_size // resolution for resolution in flags.attention_resolutions}
    return [2**level in rates for level in range(len(flags.channel_mult))]


def attention_heads(flags: OpenAIFlags, width: int, *, upsampling: bool = False) -> int:
    """Heads of an attention layer of `width` channels (AttentionBlock: num_head_channels wins over num_heads)."""
    if flags.num_head_channels != -1:
        return width // flags.num_head_channels
    if upsampling and flags.num_heads_upsample != -1:
        return flags.num_heads_upsample
    return flags.num_heads


def _head_dim(flags: OpenAIFlags, widths: list[int], attention: list[bool]) -> int | None:
    """UNet2DModel's one attention_head_dim (None: one head per layer), or a one-line refusal."""
    attended = sorted({w for w, a in zip(widths, attention) if a} | {widths[-1]})  # the middle block always attends
    if flags.num_head_channels != -1:
        for width in attended:
            if width % flags.num_head_channels:
                raise UserError(f"attention width {width} is not divisible by --num_head_channels "
                                f"{flags.num_head_channels}; the flags do not describe a buildable model")
        return flags.num_head_channels
    up_heads = flags.num_heads_upsample if flags.num_heads_upsample != -1 else flags.num_heads
    if up_heads != flags.num_heads and any(attention):
        raise UserError(f"--num_heads_upsample {up_heads} differs from --num_heads {flags.num_heads}; a diffusers "
                        "UNet2DModel has one head count per width, so this model cannot be converted")
    for width in attended:
        if width % flags.num_heads:
            raise UserError(f"attention width {width} is not divisible by --num_heads {flags.num_heads}")
    if len(attended) == 1:
        return attended[0] // flags.num_heads
    if flags.num_heads == 1:
        return None  # UNet2DModel then gives every attention layer one head of its full width
    raise UserError(f"--num_heads {flags.num_heads} at attention widths {', '.join(map(str, attended))} gives heads of "
                    "different sizes, and a diffusers UNet2DModel has one head size (attention_head_dim); this model "
                    "cannot be converted (models with --num_heads 1 or --num_head_channels can)")


def unet2d_config(flags: OpenAIFlags) -> dict[str, Any]:
    """The diffusers UNet2DModel config of the network the flags build (spec §3.4, checked on diffusers 0.42)."""
    widths, attention = level_widths(flags), attention_levels(flags)
    if flags.channel_mult[0] != 1:
        raise UserError(f"--channel_mult starting with {flags.channel_mult[0]} (guided-diffusion's 512 px default) has "
                        "no UNet2DModel equivalent: diffusers sizes the timestep embedding by the first level's width")
    narrow = [w for w in widths if w % GROUPS]
    if narrow:
        raise UserError(f"level width {narrow[0]} (--num_channels {flags.num_channels} x --channel_mult) is not a "
                        f"multiple of {GROUPS}, which GroupNorm's {GROUPS} groups need")
    updown = flags.resblock_updown
    down = ["AttnDownBlock2D" if a else ("ResnetDownsampleBlock2D" if updown else "DownBlock2D") for a in attention]
    up = ["AttnUpBlock2D" if a else ("ResnetUpsampleBlock2D" if updown else "UpBlock2D") for a in attention[::-1]]
    return {
        "sample_size": flags.image_size, "in_channels": 3, "out_channels": 6 if flags.learn_sigma else 3,
        "center_input_sample": False, "time_embedding_type": "positional", "flip_sin_to_cos": True, "freq_shift": 0,
        "down_block_types": down, "mid_block_type": "UNetMidBlock2D", "up_block_types": up,
        "block_out_channels": widths, "layers_per_block": flags.num_res_blocks, "mid_block_scale_factor": 1,
        "downsample_padding": 1, "downsample_type": "resnet" if updown else "conv",
        "upsample_type": "resnet" if updown else "conv", "dropout": flags.dropout, "act_fn": "silu",
        "attention_head_dim": _head_dim(flags, widths, attention), "norm_num_groups": GROUPS,
        # Required: with scale_shift and None, UNetMidBlock2D builds its attention without a GroupNorm.
        "attn_norm_num_groups": GROUPS, "norm_eps": 1e-5,
        "resnet_time_scale_shift": "scale_shift" if flags.use_scale_shift_norm else "default",
        "add_attention": True, "class_embed_type": None, "num_class_embeds": flags.num_classes,
    }


def schedule_of(noise_schedule: str, diffusion_steps: int) -> dict[str, Any]:
    """The betas as diffusers names them: linear 1e-4..0.02 scaled by 1000/T (gaussian_diffusion.py), or cosine.

    Converted files (their flags) and models trained from scratch (their options) both record it through here.
    """
    if noise_schedule == "cosine":  # Nichol & Dhariwal's alpha-bar cosine, betas capped at 0.999
        return {"type": "discrete", "beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": diffusion_steps}
    if noise_schedule != "linear":
        raise UserError(f"noise schedule {noise_schedule!r} is not linear or cosine")
    scale = 1000 / diffusion_steps
    return {"type": "discrete", "beta_schedule": "linear", "beta_start": scale * 0.0001, "beta_end": scale * 0.02,
            "num_train_timesteps": diffusion_steps}


def variance_of(flags: OpenAIFlags) -> str:
    """How the sampler gets the reverse-step variance (ModelVarType of create_gaussian_diffusion)."""
    if flags.learn_sigma:
        return "learned_range"
    return "fixed_small" if flags.sigma_small else "fixed_large"


def pixel_model_info(flags: OpenAIFlags, *, source: dict[str, Any] | None = None,
                     recipe: dict[str, Any] | None = None) -> ModelInfo:
    """The artdiff.json of an `unconditional` model directory built from these flags.

    `source` ({"file", "sha256"} of a converted file) gains the format and the resolved flags; `recipe` is the
    training config of a trained model.
    """
    conditioning = ({"type": "class-label", "num_classes": flags.num_classes} if flags.class_cond
                    else {"type": "none"})
    extra: dict[str, Any] = {"image_size": flags.image_size, "variance": variance_of(flags),
                             "rescale_timesteps": flags.rescale_timesteps, "pixel_range": list(PIXEL_RANGE)}
    if source is not None:
        extra["source"] = {"format": flags.codebase, **source, "flags": flags.to_dict()}
    return ModelInfo(kind="unconditional", parameterization="x0" if flags.predict_xstart else "eps",
                     schedule=schedule_of(flags.noise_schedule, flags.diffusion_steps), conditioning=conditioning,
                     recipe=recipe, extra=extra)
