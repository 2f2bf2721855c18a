"""The state-dict key map from improved/guided-diffusion's UNetModel to diffusers' UNet2DModel.

The original layout (research/checkpoint-formats.md §3.2): `time_embed.{0,2}`, `label_emb`, `input_blocks.N.M`
(N counts conv_in, then each level's res blocks and its downsampler; M is the res block, attention or resampler
inside), `middle_block.{0,1,2}`, `output_blocks.N.M` (three per level from the lowest resolution up, the last of
each level carrying the upsampler), `out.{0,2}`. Attention projections are Conv1d (a trailing 1 in the shape);
`qkv` packs q, k and v head-major ([h0: q k v | h1: q k v | ...], QKVAttentionLegacy) unless
use_new_attention_order packs them qkv-major ([q | k | v], QKVAttention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from artdiff.models.pixel.openai_unet_config import attention_heads, attention_levels, level_widths

if TYPE_CHECKING:
    from artdiff.models.pixel.openai_flags import OpenAIFlags

# diffusers ResnetBlock2D name -> OpenAI ResBlock name (in_layers = GN, SiLU, conv; out_layers = GN, SiLU, drop, conv)
RESBLOCK = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
            "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
QKV = ("to_q", "to_k", "to_v")


@dataclass(frozen=True)
class Part:
    """One module of the network under its two names."""

    original: str  # e.g. "input_blocks.1.0"
    diffusers: str  # e.g. "down_blocks.0.resnets.0"
    kind: str  # "plain" | "resblock" | "attention" | "downsample" | "upsample"
    heads: int = 1  # attention only


@dataclass(frozen=True)
class Entry:
    """One tensor of the original file and the diffusers tensor(s) it becomes."""

    original: str
    targets: tuple[str, ...]
    transform: str  # "copy" | "squeeze" (Conv1d -> Linear) | "qkv" (split into to_q, to_k, to_v)
    heads: int = 1
    head_major: bool = True


def unet_parts(flags: OpenAIFlags) -> list[Part]:
    """Every module in UNetModel's order (its __init__), with the name UNet2DModel gives it."""
    widths, attention, levels = level_widths(flags), attention_levels(flags), len(flags.channel_mult)
    resample = "resblock" if flags.resblock_updown else None
    parts = [Part("time_embed.0", "time_embedding.linear_1", "plain"),
             Part("time_embed.2", "time_embedding.linear_2", "plain")]
    if flags.class_cond:
        parts.append(Part("label_emb", "class_embedding", "plain"))
    parts.append(Part("input_blocks.0.0", "conv_in", "plain"))
    index = 1
    for level in range(levels):
        for j in range(flags.num_res_blocks):
            parts.append(Part(f"input_blocks.{index}.0", f"down_blocks.{level}.resnets.{j}", "resblock"))
            if attention[level]:
                parts.append(Part(f"input_blocks.{index}.1", f"down_blocks.{level}.attentions.{j}", "attention",
                                  attention_heads(flags, widths[level])))
            index += 1
        if level != levels - 1:
            parts.append(Part(f"input_blocks.{index}.0", f"down_blocks.{level}.downsamplers.0",
                              resample or "downsample"))
            index += 1
    parts += [Part("middle_block.0", "mid_block.resnets.0", "resblock"),
              Part("middle_block.1", "mid_block.attentions.0", "attention", attention_heads(flags, widths[-1])),
              Part("middle_block.2", "mid_block.resnets.1", "resblock")]
    index = 0
    for up, level in enumerate(reversed(range(levels))):
        for i in range(flags.num_res_blocks + 1):
            parts.append(Part(f"output_blocks.{index}.0", f"up_blocks.{up}.resnets.{i}", "resblock"))
            inner = 1
            if attention[level]:
                parts.append(Part(f"output_blocks.{index}.1", f"up_blocks.{up}.attentions.{i}", "attention",
                                  attention_heads(flags, widths[level], upsampling=True)))
                inner = 2
            if level and i == flags.num_res_blocks:
                parts.append(Part(f"output_blocks.{index}.{inner}", f"up_blocks.{up}.upsamplers.0",
                                  resample or "upsample"))
            index += 1
    parts += [Part("out.0", "conv_norm_out", "plain"), Part("out.2", "conv_out", "plain")]
    return parts


def key_entries(flags: OpenAIFlags, diffusers_shapes: dict[str, tuple[int, ...]]) -> list[Entry]:
    """The original tensor behind every UNet2DModel tensor, in the original's order."""
    entries: list[Entry] = []
    claimed: set[str] = set()
    for part in unet_parts(flags):
        names = [k for k in diffusers_shapes if k.startswith(part.diffusers + ".")]
        claimed.update(names)
        entries.extend(_part_entries(part, names, flags))
    unclaimed = sorted(set(diffusers_shapes) - claimed)
    if unclaimed:  # an internal invariant: a diffusers version that names its modules differently
        raise RuntimeError(f"UNet2DModel tensor {unclaimed[0]} has no OpenAI counterpart in the key map")
    return entries


def _part_entries(part: Part, names: list[str], flags: OpenAIFlags) -> list[Entry]:
    entries = []
    for name in names:
        module, _, param = name[len(part.diffusers) + 1:].rpartition(".")
        if part.kind == "plain":
            entries.append(Entry(f"{part.original}.{param}", (name,), "copy"))
        elif part.kind == "resblock":
            entries.append(Entry(f"{part.original}.{RESBLOCK[module]}.{param}", (name,), "copy"))
        elif part.kind == "downsample":  # Downsample.op (conv stride 2) -> Downsample2D.conv
            entries.append(Entry(f"{part.original}.op.{param}", (name,), "copy"))
        elif part.kind == "upsample":  # Upsample.conv after nearest x2 -> Upsample2D.conv
            entries.append(Entry(f"{part.original}.conv.{param}", (name,), "copy"))
        elif module == "group_norm":
            entries.append(Entry(f"{part.original}.norm.{param}", (name,), "copy"))
        elif module == "to_out.0":
            entries.append(Entry(f"{part.original}.proj_out.{param}", (name,), "squeeze" if param == "weight"
                                 else "copy"))
        elif module == "to_q":  # to_k and to_v come with it
            targets = tuple(f"{part.diffusers}.{q}.{param}" for q in QKV)
            entries.append(Entry(f"{part.original}.qkv.{param}", targets, "qkv", part.heads,
                                 not flags.use_new_attention_order))
        elif module not in ("to_k", "to_v"):
            raise RuntimeError(f"UNet2DModel tensor {name} has no OpenAI counterpart in the key map")
    return entries


def original_shape(entry: Entry, diffusers_shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The shape the original file stores for an entry (Conv1d weights end in 1; qkv stacks three)."""
    shape = diffusers_shapes[entry.targets[0]]
    if entry.transform == "squeeze":
        return (*shape, 1)
    if entry.transform == "qkv":
        return (3 * shape[0], *shape[1:], 1) if len(shape) == 2 else (3 * shape[0],)
    return shape


def convert_tensors(state: dict[str, torch.Tensor], entries: list[Entry]) -> dict[str, torch.Tensor]:
    """The UNet2DModel state dict from an original one whose keys and shapes were checked against `entries`."""
    converted: dict[str, torch.Tensor] = {}
    for entry in entries:
        tensor = state[entry.original]
        if entry.transform == "copy":
            converted[entry.targets[0]] = tensor
        elif entry.transform == "squeeze":
            converted[entry.targets[0]] = tensor.squeeze(-1)
        else:
            for name, part in zip(entry.targets, split_qkv(tensor, entry.heads, head_major=entry.head_major)):
                converted[name] = part
    return {name: tensor.contiguous() for name, tensor in converted.items()}


def split_qkv(tensor: torch.Tensor, heads: int, *, head_major: bool) -> tuple[torch.Tensor, ...]:
    """q, k, v of a packed qkv Conv1d weight (3C, C, 1) or bias (3C,), each (C, C) or (C,).

    Head-major (QKVAttentionLegacy reshapes to (B*H, 3*C/H, T) and splits): row h*3d + j*d + c is head h's
    channel c of q (j=0), k (1) or v (2). qkv-major (QKVAttention chunks first): row j*C + h*d + c.
    """
    packed = tensor.squeeze(-1) if tensor.ndim == 3 else tensor  # (3C, C) or (3C,)
    width = packed.shape[0] // 3
    rest = packed.shape[1:]
    if head_major:
        grouped = packed.reshape(heads, 3, width // heads, *rest)  # (H, 3, d, ...)
        return tuple(grouped[:, j].reshape(width, *rest) for j in range(3))
    return tuple(packed.reshape(3, width, *rest)[j] for j in range(3))
