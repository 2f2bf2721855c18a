"""An independent re-implementation of OpenAI's improved/guided-diffusion UNetModel, for conversion tests.

Written from the description of research/checkpoint-formats.md §3 and the papers (Nichol & Dhariwal 2021,
Dhariwal & Nichol 2021), not from artdiff's converter: module names are chosen so that `state_dict()` has the
original key scheme (time_embed, label_emb, input_blocks.N.M, middle_block, output_blocks.N.M, out) by
construction. Behaviour: GroupNorm(32) in float32, ResBlock with optional FiLM (scale-shift) and up/down
resampling between in_layers' activation and its conv, attention with head-major (legacy) or qkv-major packing
and q, k each scaled by d^-1/4, timestep embedding cat(cos, sin).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class GroupNorm32(nn.GroupNorm):
    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> nn.Module:
    return GroupNorm32(32, channels)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    angles = t[:, None].float() * frequencies[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, out_channels: int, *, scale_shift: bool,
                 up: bool = False, down: bool = False):
        super().__init__()
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels * (2 if scale_shift else 1)))
        self.out_layers = nn.Sequential(normalization(out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        if self.updown:
            h = self.in_layers[:-1](x)
            h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    def __init__(self, channels: int, heads: int, *, new_order: bool = False):
        super().__init__()
        self.heads, self.new_order = heads, new_order
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        b, c, height, width = x.shape
        flat = x.reshape(b, c, -1)  # (B, C, T)
        qkv = self.qkv(self.norm(flat))  # (B, 3C, T)
        d, length = c // self.heads, flat.shape[-1]
        if self.new_order:
            q, k, v = (part.reshape(b * self.heads, d, length) for part in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b * self.heads, 3 * d, length).split(d, dim=1)
        scale = d ** -0.25
        weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale).float(), dim=-1)
        attended = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, length)
        return (flat + self.proj_out(attended)).reshape(b, c, height, width)


class EmbedSequential(nn.Sequential):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class OpenAIUNet(nn.Module):
    """UNetModel's layout and forward, from the flags it is built with (an OpenAIFlags)."""

    def __init__(self, flags):
        super().__init__()
        mc, scale_shift, updown = flags.num_channels, flags.use_scale_shift_norm, flags.resblock_updown
        emb_dim = 4 * mc
        mults = flags.channel_mult
        rates = {flags.image_size // r for r in flags.attention_resolutions}
        self.model_channels = mc
        self.class_cond = flags.class_cond

        def heads(width, *, up=False):
            if flags.num_head_channels > 0:
                return width // flags.num_head_channels
            return flags.num_heads_upsample if up and flags.num_heads_upsample > 0 else flags.num_heads

        def attention(width, *, up=False):
            return AttentionBlock(width, heads(width, up=up), new_order=flags.use_new_attention_order)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if flags.class_cond:
            self.label_emb = nn.Embedding(1000, emb_dim)
        ch = int(mults[0] * mc)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(3, ch, 3, padding=1))])
        skips, rate = [ch], 1
        for level, mult in enumerate(mults):
            for _ in range(flags.num_res_blocks):
                layers = [ResBlock(ch, emb_dim, int(mult * mc), scale_shift=scale_shift)]
                ch = int(mult * mc)
                if rate in rates:
                    layers.append(attention(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skips.append(ch)
            if level != len(mults) - 1:
                down = ResBlock(ch, emb_dim, ch, scale_shift=scale_shift, down=True) if updown else Downsample(ch, True)
                self.input_blocks.append(EmbedSequential(down))
                skips.append(ch)
                rate *= 2
        self.middle_block = EmbedSequential(ResBlock(ch, emb_dim, ch, scale_shift=scale_shift), attention(ch),
                                            ResBlock(ch, emb_dim, ch, scale_shift=scale_shift))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for i in range(flags.num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), emb_dim, int(mult * mc), scale_shift=scale_shift)]
                ch = int(mult * mc)
                if rate in rates:
                    layers.append(attention(ch, up=True))
                if level and i == flags.num_res_blocks:
                    layers.append(ResBlock(ch, emb_dim, ch, scale_shift=scale_shift, up=True) if updown
                                  else Upsample(ch, True))
                    rate //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(),
                                 nn.Conv2d(ch, 6 if flags.learn_sigma else 3, 3, padding=1))

    def forward(self, x, t, y=None):
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        if self.class_cond:
            emb = emb + self.label_emb(y)
        h, skips = x, []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter random values (GroupNorm scales and shifts and the zero-initialised convs too)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim >= 2:
                fan_in = param[0].numel()
                param.copy_(noise / math.sqrt(fan_in))
            elif "norm" in name or name.startswith("out.0") or ".in_layers.0." in name or ".out_layers.0." in name:
                param.copy_((1 + 0.2 * noise) if name.endswith("weight") else 0.2 * noise)
            else:
                param.copy_(0.2 * noise)
    return model.eval()
