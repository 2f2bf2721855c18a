"""Typed architecture specs with named presets, turned into transformers CLIP configs (Radford et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

from artdiff import config as config_io

# CLIP's initial temperature, log(1 / 0.07); the CLOOB trainer keeps its own fixed inverse temperature.
CLIP_LOGIT_SCALE_INIT = 2.6592


@dataclass(frozen=True)
class VisionTowerSpec:
    """A ViT image tower (Dosovitskiy et al. 2021) as CLIP builds it."""

    image_size: int = 224  # square input side in pixels; must be a multiple of patch_size
    patch_size: int = 16
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: int = 4  # intermediate size = mlp_ratio * hidden, as in CLIP

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.hidden % self.heads:
            raise ValueError(f"vision hidden {self.hidden} is not divisible by heads {self.heads}")


@dataclass(frozen=True)
class TextTowerSpec:
    """A causal text transformer pooled at the end-of-text token, as in CLIP."""

    hidden: int = 512
    layers: int = 12
    heads: int = 8
    mlp_ratio: int = 4
    max_length: int = 77  # CLIP's context; batches are padded to their longest caption, so this costs little

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"text hidden {self.hidden} is not divisible by heads {self.heads}")


@dataclass(frozen=True)
class ClipSpec:
    """A joint text-image encoder: two towers projected into one embedding space."""

    vision: VisionTowerSpec = field(default_factory=VisionTowerSpec)
    text: TextTowerSpec = field(default_factory=TextTowerSpec)
    projection_dim: int = 512
    hidden_act: str = "gelu"  # exact GELU as in the CLOOB PyTorch port; OpenAI's checkpoints use quick_gelu
    logit_scale_init: float = CLIP_LOGIT_SCALE_INIT

    def to_dict(self) -> dict[str, Any]:
        """Return plain data for YAML/JSON (artdiff.json, run configs)."""
        return config_io.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipSpec:
        """Build a spec from plain data; unknown keys are errors."""
        return config_io.from_dict(cls, data, where="encoder spec")


CLIP_PRESETS: dict[str, ClipSpec] = {
    # For tests: builds in milliseconds, a forward pass on one thread takes about a millisecond.
    "tiny": ClipSpec(
        vision=VisionTowerSpec(image_size=32, patch_size=8, hidden=32, layers=2, heads=2),
        text=TextTowerSpec(hidden=32, layers=2, heads=2),
        projection_dim=16,
    ),
    # For 64 px synthetic art trained from scratch on 2 CPU cores in about ten minutes: 16 patches of 16 px + CLS,
    # head dim 64 in both towers, about 2.7 M parameters besides the token table (vocab x 128).
    "mini": ClipSpec(
        vision=VisionTowerSpec(image_size=64, patch_size=16, hidden=192, layers=4, heads=3),
        text=TextTowerSpec(hidden=128, layers=4, heads=2),
        projection_dim=128,
    ),
}


def clip_preset(name: str) -> ClipSpec:
    """Return a named encoder preset."""
    try:
        return CLIP_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown encoder preset {name!r}; known: {', '.join(CLIP_PRESETS)}") from None


def clip_config(spec: ClipSpec, *, vocab_size: int, bos_token_id: int, eos_token_id: int,
                pad_token_id: int | None = None) -> CLIPConfig:
    """Convert a spec to a transformers CLIPConfig; token ids come from the tokenizer it is trained with."""
    # CLIPTextModel pools at the first `eos_token_id`, so it must be the tokenizer's end-of-text id.
    text = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=spec.text.hidden,
        intermediate_size=spec.text.mlp_ratio * spec.text.hidden,
        num_hidden_layers=spec.text.layers,
        num_attention_heads=spec.text.heads,
        max_position_embeddings=spec.text.max_length,
        hidden_act=spec.hidden_act,
        projection_dim=spec.projection_dim,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id if pad_token_id is None else pad_token_id,
    )
    vision = CLIPVisionConfig(
        image_size=spec.vision.image_size,
        patch_size=spec.vision.patch_size,
        hidden_size=spec.vision.hidden,
        intermediate_size=spec.vision.mlp_ratio * spec.vision.hidden,
        num_hidden_layers=spec.vision.layers,
        num_attention_heads=spec.vision.heads,
        hidden_act=spec.hidden_act,
        projection_dim=spec.projection_dim,
    )
    return CLIPConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        projection_dim=spec.projection_dim,
        logit_scale_init_value=spec.logit_scale_init,
    )


def build_clip_model(spec: ClipSpec, *, vocab_size: int, bos_token_id: int, eos_token_id: int,
                     pad_token_id: int | None = None) -> CLIPModel:
    """Build a randomly initialised CLIPModel from a spec (seed torch before calling for reproducibility)."""
    config = clip_config(spec, vocab_size=vocab_size, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         pad_token_id=pad_token_id)
    return CLIPModel(config)

