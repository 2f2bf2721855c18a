"""Bounds on the numbers in the config.json and scheduler_config.json files artdiff reads, checked before building.

A damaged or hostile config (layers_per_block 10^6, a negative width, beta_end 5) would otherwise hang, exhaust
memory or sample garbage; here it is one line naming the file, the key and the range. The bounds are far above
every published architecture (SD 1.x/2.x/XL, CLIP ViT-bigG), so real models never meet them.
"""

from __future__ import annotations

from typing import Any

from artdiff.errors import UserError

# key -> (lowest, highest) for every integer (or list of integers) a diffusers or transformers config may hold.
INT_LIMITS: dict[str, tuple[int, int]] = {
    # diffusers UNet2DConditionModel / AutoencoderKL
    "layers_per_block": (1, 32), "block_out_channels": (1, 16384), "in_channels": (1, 1024),
    "out_channels": (1, 1024), "latent_channels": (1, 1024), "cross_attention_dim": (1, 16384),
    "attention_head_dim": (1, 16384), "num_attention_heads": (1, 1024), "norm_num_groups": (1, 4096),
    "sample_size": (1, 16384), "transformer_layers_per_block": (1, 64), "encoder_hid_dim": (1, 16384),
    "time_embedding_dim": (1, 65536), "num_class_embeds": (1, 1_000_000), "attn_norm_num_groups": (1, 4096),
    "downsample_padding": (0, 16),
    # transformers CLIP text and vision towers
    "hidden_size": (1, 65536), "intermediate_size": (1, 262144), "num_hidden_layers": (1, 256),
    "vocab_size": (1, 1_000_000), "max_position_embeddings": (1, 65536), "image_size": (1, 16384),
    "patch_size": (1, 4096), "projection_dim": (1, 65536), "num_channels": (1, 64),
}
MAX_LEVELS = 16  # entries of block_out_channels / down_block_types (SD has 4)
MAX_PARAMETERS = 20e9  # ten times SDXL's UNet; above it a config is damaged, not a model to load
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
MAX_TRAIN_TIMESTEPS = 100_000
# OpenAI improved/guided-diffusion flags (models/pixel/openai_flags.py): name -> (lowest, highest); -1 is also
# allowed where the codebases use it for "not set". Far above the published 512 px models (256 channels, 3 blocks).
FLAG_LIMITS: dict[str, tuple[int, int]] = {
    "image_size": (8, 4096), "num_channels": (32, 4096), "num_res_blocks": (1, 32), "num_heads": (1, 1024),
    "num_heads_upsample": (1, 1024), "num_head_channels": (1, 16384), "diffusion_steps": (2, MAX_TRAIN_TIMESTEPS),
    "attention_resolutions": (1, 4096), "channel_mult": (1, 64),
}
FLAGS_UNSET_ALLOWED = ("num_heads_upsample", "num_head_channels")


def check_config(config: dict[str, Any], *, where: str, bytes_per_parameter: int = 4) -> None:
    """Refuse out-of-range sizes, and a model whose estimated size exceeds MAX_PARAMETERS or the free memory."""
    _check_ints(config, where)
    parameters = estimate_parameters(config)
    if parameters > MAX_PARAMETERS:
        raise UserError(f"{where} describes a model of about {parameters / 1e9:,.0f}B parameters (artdiff loads at "
                        f"most {MAX_PARAMETERS / 1e9:.0f}B); the file is damaged or not this model's config")
    needed, free = parameters * bytes_per_parameter, available_memory()
    if free is not None and needed > free:
        raise UserError(f"{where} describes a model of at least {needed / 2**30:.1f} GiB but only "
                        f"{free / 2**30:.1f} GiB of memory is free; free memory, load it in fp16, or check the file")


def _check_ints(config: dict[str, Any], where: str) -> None:
    for key, value in config.items():
        if isinstance(value, dict) and key.endswith("_config"):  # CLIPConfig's text_config and vision_config
            _check_ints(value, f"{where} {key}")
            continue
        if key in ("block_out_channels", "down_block_types", "up_block_types") and isinstance(value, list) \
                and not 1 <= len(value) <= MAX_LEVELS:
            raise UserError(f"{where}: {key} has {len(value)} entries (1 to {MAX_LEVELS} expected); the file is "
                            "damaged: restore it from the original model")
        if key in INT_LIMITS and value is not None:
            low, high = INT_LIMITS[key]
            for item in _flatten(value):
                if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
                    raise UserError(f"{where}: {key} {_short(value)} is not a whole number from {low} to {high:,}; the "
                                    "file is damaged: restore it from the original model")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [item for part in value for item in _flatten(part)] or [None]
    return [value]


def _largest(value: Any, default: int) -> int:
    items = [item for item in _flatten(value) if isinstance(item, int)]
    return max(items) if items else default


def estimate_parameters(config: dict[str, Any]) -> int:
    """A lower bound on the parameter count a config builds (UNet/VAE convolutions, transformer layers)."""
    total = sum(estimate_parameters(value) for key, value in config.items()
                if isinstance(value, dict) and key.endswith("_config"))
    channels = [c for c in _flatten(config.get("block_out_channels")) if isinstance(c, int)]
    if channels:
        # Each level has at least 2 * layers_per_block ResNet blocks (down and up path) of two 3x3 convolutions.
        total += 36 * _largest(config.get("layers_per_block"), 1) * sum(c * c for c in channels)
    hidden = config.get("hidden_size")
    if isinstance(hidden, int):
        layers = _largest(config.get("num_hidden_layers"), 1)
        inner = _largest(config.get("intermediate_size"), 4 * hidden)
        total += layers * (4 * hidden * hidden + 2 * hidden * inner)  # attention q, k, v, out and the MLP
        total += _largest(config.get("vocab_size"), 0) * hidden + _largest(config.get("max_position_embeddings"),
                                                                           0) * hidden
        patch = _largest(config.get("patch_size"), 0)
        if patch:
            total += (_largest(config.get("image_size"), 0) // patch) ** 2 * hidden
    return total


def available_memory() -> int | None:
    """Bytes of CPU memory free for new allocations (within any container limit), or None where it cannot be read.

    Weights are read into CPU memory first, whatever device the model then moves to.
    """
    from artdiff.utils.memory import available_bytes

    return available_bytes("cpu")


def flag_problem(name: str, value: Any) -> str | None:
    """What is out of range in one OpenAI flag's value (an int or a tuple of them), or None."""
    if name not in FLAG_LIMITS:
        return None
    low, high = FLAG_LIMITS[name]
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (list, tuple)) and not 1 <= len(items) <= MAX_LEVELS:
        return f"--{name} has {len(items)} entries (1 to {MAX_LEVELS} expected)"
    for item in items:
        if name in FLAGS_UNSET_ALLOWED and item == -1:
            continue
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not low <= item <= high:
            unset = " (or -1 for not set)" if name in FLAGS_UNSET_ALLOWED else ""
            return f"--{name} {_short(value)} is not a number from {low} to {high:,}{unset}"
    return None


def check_scheduler(config: dict[str, Any], *, where: str) -> None:
    """Refuse a diffusers scheduler config whose schedule is not a valid DDPM one (betas in (0, 1), known names)."""
    problem = scheduler_problem(config)
    if problem:
        raise UserError(f"{where}: {problem}; restore scheduler_config.json from the original model")


def scheduler_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with a discrete schedule (diffusers scheduler keys), or None."""
    steps = config.get("num_train_timesteps", 1000)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= MAX_TRAIN_TIMESTEPS:
        return f"num_train_timesteps {steps!r} is not a whole number from 2 to {MAX_TRAIN_TIMESTEPS:,}"
    schedule = config.get("beta_schedule", "scaled_linear")
    if schedule not in BETA_SCHEDULES:
        return f"beta_schedule {schedule!r} is not one of {', '.join(BETA_SCHEDULES)}"
    start, end = config.get("beta_start", 0.00085), config.get("beta_end", 0.012)
    for name, beta in (("beta_start", start), ("beta_end", end)):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < 1:
            return f"{name} {beta!r} is not a number between 0 and 1 (exclusive)"
    if schedule != "squaredcos_cap_v2" and not start < end:
        return f"beta_start {start} is not below beta_end {end}"
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        return f"prediction_type {prediction!r} is not one of {', '.join(PREDICTION_TYPES)}"
    spacing = config.get("timestep_spacing", "leading")
    if spacing not in TIMESTEP_SPACINGS:
        return f"timestep_spacing {spacing!r} is not one of {', '.join(TIMESTEP_SPACINGS)}"
    offset = config.get("steps_offset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < steps:
        return f"steps_offset {offset!r} is not a whole number from 0 to num_train_timesteps - 1"
    return None
