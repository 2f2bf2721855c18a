"""Compare an OpenAI UNet file's tensors with the ones its flags describe, and name the flag most likely wrong.

The first mismatching key in the network's own order (time_embed, label_emb, input_blocks, middle_block,
output_blocks, out) decides: a missing or extra label_emb is class_cond; attention where the flags put none
(or none where they put some) is attention_resolutions; a residual block where a strided conv is expected is
resblock_updown; emb_layers twice as wide is use_scale_shift_norm; other widths are num_channels or channel_mult;
out with 6 instead of 3 channels is learn_sigma. Head counts (num_heads, num_head_channels) leave no trace in
shapes, so no check can find them: wrong heads only change the outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from artdiff.errors import UserError

if TYPE_CHECKING:
    from artdiff.models.pixel.openai_flags import OpenAIFlags

Shapes = dict[str, tuple[int, ...]]
SECTIONS = {"time_embed": 0, "label_emb": 1, "input_blocks": 2, "middle_block": 3, "output_blocks": 4, "out": 5}
MODULE_ORDER = {"in_layers": 0, "emb_layers": 1, "out_layers": 2, "skip_connection": 3, "norm": 0, "qkv": 1,
                "proj_out": 2, "op": 0, "conv": 0, "weight": 0, "bias": 1}


def natural_order(key: str) -> tuple:
    """Sort key following the order in which UNetModel registers its modules."""
    parts = key.split(".")
    return (SECTIONS.get(parts[0], 9), *((0, int(p), "") if p.isdigit() else (1, MODULE_ORDER.get(p, 50), p)
                                         for p in parts[1:]))


def check_shapes(file: Shapes, expected: Shapes, flags: OpenAIFlags, *, where: str) -> None:
    """Raise one line naming the first key whose presence or shape differs, and the flag that most likely does."""
    if "time_embed.0.weight" not in file and "input_blocks.0.0.weight" not in file:
        first = next(iter(file), "none")
        kind = (" (a latent-diffusion or Stable Diffusion checkpoint)" if first.startswith("model.diffusion_model.")
                else "")
        raise UserError(f"{where} is not an improved/guided-diffusion UNet state dict{kind}: it has no time_embed or "
                        f"input_blocks tensors (first key: {first})")
    mismatches = [k for k in {*file, *expected} if file.get(k) != expected.get(k)]
    if not mismatches:
        return
    key = min(mismatches, key=natural_order)
    if key.split(".")[0] not in SECTIONS:  # sorted last: everything of the UNet itself matched
        raise UserError(f"{where} also holds {key}, which no improved/guided-diffusion UNet has; it is another kind "
                        "of checkpoint (or a training state): pass the file of the model's weights alone")
    if key not in file:
        what = "is missing from the file"
    elif key not in expected:
        what = f"(shape {list(file[key])}) is in the file but not in the model the flags describe"
    else:
        what = f"has shape {list(file[key])} in the file, {list(expected[key])} from the flags"
    flag, hint = _suspect(key, file, expected, flags)
    raise UserError(f"{where} does not match the flags: {key} {what}; most likely --{flag} is wrong ({hint})")


def _suspect(key: str, file: Shapes, expected: Shapes, flags: OpenAIFlags) -> tuple[str, str]:
    """The flag most likely wrong for a mismatch at `key`, with what the file says instead."""
    if key.startswith("label_emb."):
        if key in file and key not in expected:
            return "class_cond", f"the file is class-conditional ({file[key][0]} classes): pass --class_cond True"
        if key in expected and key not in file:
            return "class_cond", "the file has no label_emb, so it is unconditional: pass --class_cond False"
        return "class_cond", f"the file has {file[key][0]} classes; OpenAI's class-conditional models have 1000"
    if key.startswith(("time_embed.", "input_blocks.0.")):
        if key == "input_blocks.0.0.weight" and key in file and len(file[key]) == 4 and file[key][1] != 3:
            return "image_size", f"the file's model takes {file[key][1]} input channels, not 3: it is not an RGB model"
        base = file.get("time_embed.0.weight", file.get("input_blocks.0.0.weight", (0, 0)))
        channels = base[1] if key.startswith("time_embed.") or "time_embed.0.weight" in file else base[0]
        return "num_channels", f"the file's model has {channels} base channels: --num_channels {channels}"
    if key.startswith("out."):
        if key.startswith("out.2.") and key in file and key in expected and file[key][0] in (3, 6):
            sigma = file[key][0] == 6
            predicts = "the noise and its variance (6 channels)" if sigma else "only the noise (3 channels)"
            return "learn_sigma", f"the file predicts {predicts}: pass --learn_sigma {sigma}"
        return "channel_mult", "the output width differs: check --num_channels and --channel_mult"
    return _block_suspect(key, file, expected, flags)


def _block_type(keys: Shapes, prefix: str) -> str | None:
    for suffix, kind in ((".qkv.weight", "attention"), (".in_layers.0.weight", "resblock"),
                         (".op.weight", "downsample"), (".conv.weight", "upsample")):
        if prefix + suffix in keys:
            return kind
    return "other" if any(k.startswith(prefix + ".") for k in keys) else None


def _block_suspect(key: str, file: Shapes, expected: Shapes, flags: OpenAIFlags) -> tuple[str, str]:
    layout = _block_layout(file, flags)
    if layout is not None:
        return layout
    parts = key.split(".")
    prefix = ".".join(parts[:2] if parts[0] == "middle_block" else parts[:3])
    in_file, in_flags = _block_type(file, prefix), _block_type(expected, prefix)
    if in_file != in_flags:
        if "attention" in (in_file, in_flags):
            return "attention_resolutions", _attention_hint(file, flags)
        file_convs = any(k.endswith(".op.weight") for k in file)
        if flags.resblock_updown and file_convs:
            return "resblock_updown", "the file resamples with a strided conv (op): pass --resblock_updown False"
        if not flags.resblock_updown and not file_convs:
            return "resblock_updown", "the file resamples with residual blocks: pass --resblock_updown True"
    if key.endswith(("emb_layers.1.weight", "emb_layers.1.bias")) and key in file and key in expected:
        if file[key][0] == 2 * expected[key][0]:
            return "use_scale_shift_norm", ("the file's time embedding gives a scale and a shift: pass "
                                            "--use_scale_shift_norm True")
        if 2 * file[key][0] == expected[key][0]:
            return "use_scale_shift_norm", ("the file's time embedding is added, not a scale and shift: pass "
                                            "--use_scale_shift_norm False")
    return "channel_mult", ("the block widths differ (num_channels x channel_mult per level; image_size picks the "
                            "default channel_mult): check --channel_mult, --num_channels and --image_size")


def _attention_hint(file: Shapes, flags: OpenAIFlags) -> str:
    """Where the file has attention, read through the flags' block layout."""
    from artdiff.models.pixel.openai_unet_keys import unet_parts

    levels = set()
    for part in unet_parts(flags):
        name = part.diffusers.split(".")
        if part.kind == "resblock" and name[0] == "down_blocks":
            block = part.original.rsplit(".", 1)[0]
            if f"{block}.1.qkv.weight" in file:
                levels.add(int(name[1]))
    given = ",".join(map(str, flags.attention_resolutions))
    if not levels:
        return f"the file has no attention where the flags put it (--attention_resolutions {given})"
    found = ",".join(str(flags.image_size // 2**level) for level in sorted(levels, reverse=True))
    return f"the file has attention at resolution {found}, the flags at {given}: --attention_resolutions {found}"


def _block_layout(file: Shapes, flags: OpenAIFlags) -> tuple[str, str] | None:
    """When the file has another number of input blocks: levels (channel_mult) or res blocks per level differ."""
    count = 1 + max((int(k.split(".")[1]) for k in file if k.startswith("input_blocks.")), default=0)
    levels, blocks = len(flags.channel_mult), flags.num_res_blocks
    if count == levels * (blocks + 1):
        return None
    ops = sorted(int(k.split(".")[1]) for k in file if k.startswith("input_blocks.") and k.endswith(".0.op.weight"))
    if ops:  # conv resampling shows the layout exactly: the first downsampler follows level 0's res blocks
        file_levels, file_blocks = len(ops) + 1, ops[0] - 1
    elif count % (blocks + 1) == 0:
        file_levels, file_blocks = count // (blocks + 1), blocks
    elif count % levels == 0:
        file_levels, file_blocks = levels, count // levels - 1
    else:
        file_levels, file_blocks = 0, 0
    said = f"the file has {count} input blocks, the flags give {levels * (blocks + 1)}"
    if file_levels and file_blocks != blocks:
        return "num_res_blocks", f"{said}: {file_blocks} res blocks per level, --num_res_blocks {file_blocks}"
    if file_levels:
        return "channel_mult", (f"{said}: {file_levels} levels, the flags {levels} (--channel_mult, or --image_size "
                                "which picks the default one)")
    return "num_res_blocks", f"{said}; check --num_res_blocks and --channel_mult"
