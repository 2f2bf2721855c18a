"""One interface for joint text-image encoders: artdiff's CLIP/CLOOB-trained models and real CLIP checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import CLIPModel, CLIPTokenizer

from artdiff.errors import UserError
from artdiff.models import factory
from artdiff.models.preprocessing import ImageInput, Preprocessing, preprocess

ENCODER_KIND = "joint-encoder"


class JointEncoder(nn.Module):
    """Embed images and texts into one L2-normalised space, as CLIP does (Radford et al. 2021).

    `vision` is anything with `.vision_model` and `.visual_projection` (CLIPModel,
    CLIPVisionModelWithProjection); `text` anything with `.text_model` and `.text_projection`. Either may be
    None for one-tower folders (an image-variations image_encoder/). Gradients flow to tensor inputs, so
    the same object serves CLIP guidance.
    """

    def __init__(self, *, vision: nn.Module | None, text: nn.Module | None, tokenizer: CLIPTokenizer | None,
                 preprocessing: Preprocessing | None = None, name: str = "encoder") -> None:
        super().__init__()
        if vision is None and text is None:
            raise ValueError("a JointEncoder needs an image tower, a text tower or both")
        if text is not None and tokenizer is None:
            raise ValueError("a text tower needs its tokenizer")
        self.name = name
        self.vision_model = vision.vision_model if vision is not None else None
        self.visual_projection = vision.visual_projection if vision is not None else None
        self.text_model = text.text_model if text is not None else None
        self.text_projection = text.text_projection if text is not None else None
        self.tokenizer = tokenizer
        projection = self.visual_projection if vision is not None else self.text_projection
        self.dim: int = projection.out_features
        self.image_size: int | None = (self.vision_model.embeddings.image_size
                                       if self.vision_model is not None else None)
        self.preprocessing = preprocessing or Preprocessing(size=self.image_size or 224)
        if self.image_size is not None and self.preprocessing.output_size != self.image_size:
            raise UserError(f"{name}: its preprocessing makes {self.preprocessing.output_size} px inputs but the "
                            f"image encoder takes {self.image_size} px; fix `preprocessing` in its artdiff.json")
        self.max_length: int | None = (self.text_model.embeddings.position_embedding.num_embeddings
                                       if self.text_model is not None else None)

    @classmethod
    def from_clip_model(cls, model: CLIPModel, tokenizer: CLIPTokenizer, *,
                        preprocessing: Preprocessing | None = None, name: str = "encoder") -> JointEncoder:
        """Wrap an in-memory CLIPModel (for instance one being trained) without copying it."""
        return cls(vision=model, text=model, tokenizer=tokenizer, preprocessing=preprocessing, name=name)

    @property
    def device(self) -> torch.device:
        """Where the towers' weights live."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The towers' weight dtype."""
        return next(self.parameters()).dtype

    def embed_images(self, images: ImageInput) -> Tensor:
        """Return unit-norm image embeddings (B, dim) in float32 for PIL images or [0, 1] tensors (B, 3, H, W)."""
        if self.vision_model is None:
            raise UserError(f"{self.name} has no image encoder; use a model folder with one to embed images")
        pixel_values = preprocess(images, self.preprocessing).to(self.device, self.dtype)  # (B, 3, S, S)
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output  # (B, hidden), post-LN CLS token
        return F.normalize(self.visual_projection(pooled).float(), dim=-1)

    def embed_text(self, texts: str | Sequence[str]) -> Tensor:
        """Return unit-norm text embeddings (B, dim) in float32; long captions are cut at the model's context."""
        if self.text_model is None or self.tokenizer is None:
            raise UserError(f"{self.name} has no text encoder; use a model folder with one to embed text")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("no texts to embed")
        # Padding to the longest caption only: the causal mask and end-of-text pooling make the padding inert.
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        output = self.text_model(input_ids=batch["input_ids"].to(self.device),
                                 attention_mask=batch["attention_mask"].to(self.device))
        return F.normalize(self.text_projection(output.pooler_output).float(), dim=-1)


def load_encoder(path_or_hub_id: str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, *, cache_dir: str | Path | None = None) -> JointEncoder:
    """Load a frozen joint encoder from a CLIP model folder, a hub id in the local cache, or tower subfolders.

    Accepted layouts: a transformers CLIPModel folder (config.json model_type "clip", as written by
    `save_encoder` or the openai/clip-* repos); a lone CLIPVisionModelWithProjection or
    CLIPTextModelWithProjection folder; or a diffusers-style folder with image_encoder/ and/or a projected
    text_encoder/ (tokenizer in the folder or in tokenizer/). Preprocessing comes from artdiff.json, else
    from preprocessor_config.json (also under feature_extractor/), else CLIP's defaults at the model's size.
    """
    path = factory.resolve_model_dir(path_or_hub_id, cache_dir=cache_dir)
    config = factory.read_json(path / "config.json")
    kind = (config or {}).get("model_type")
    vision = text = None
    if kind == "clip":
        vision = text = factory.load_clip_model(path, device=device, dtype=dtype)
    elif kind == "clip_vision_model":
        vision = factory.load_vision_tower(path, device=device, dtype=dtype)
    elif kind == "clip_text_model":
        text = _load_projected_text(path, config or {}, device=device, dtype=dtype)
    elif config is not None:
        raise UserError(f"{path} holds a {kind or 'unknown'} model (config.json model_type), not a CLIP model")
    else:
        if (path / "image_encoder" / "config.json").is_file():
            vision = factory.load_vision_tower(path / "image_encoder", device=device, dtype=dtype)
        text_config = factory.read_json(path / "text_encoder" / "config.json")
        if text_config is not None and _has_projection(text_config):
            text = factory.load_text_tower(path / "text_encoder", device=device, dtype=dtype)
        if vision is None and text is None:
            raise UserError(f"{path} is not a CLIP model folder: no config.json, no image_encoder/ and no "
                            "text_encoder/ with a projection; pass the folder that holds the encoder")
    tokenizer = factory.load_clip_tokenizer(path) if text is not None else None
    encoder = JointEncoder(vision=vision, text=text, tokenizer=tokenizer,
                           preprocessing=factory.load_preprocessing(path), name=str(path_or_hub_id))
    # Frozen: embeddings condition or guide other models; gradients still reach the input images.
    return encoder.requires_grad_(False).eval()


def _has_projection(config: dict[str, Any]) -> bool:
    # A plain CLIPTextModel (Stable Diffusion's text_encoder/) has no projection into the joint space.
    return "CLIPTextModelWithProjection" in config.get("architectures", [])


def _load_projected_text(path: Path, config: dict[str, Any], **kwargs: Any) -> nn.Module:
    if not _has_projection(config):
        raise UserError(f"{path} holds a CLIP text model without a projection (architectures "
                        f"{config.get('architectures')}); joint embeddings need CLIPTextModelWithProjection")
    return factory.load_text_tower(path, **kwargs)


def save_encoder(model: CLIPModel, path: str | Path, *, tokenizer_dir: str | Path,
                 preprocessing: Preprocessing, info: dict[str, Any] | None = None) -> Path:
    """Write a CLIPModel folder that `load_encoder` and transformers both read: weights, tokenizer, artdiff.json.

    `info` adds fields to artdiff.json (objective, spec, recipe); `kind` and `preprocessing` are set here.
    """
    path = Path(path)
    factory.save_pretrained_dir(model, path)
    factory.copy_tokenizer(Path(tokenizer_dir), path)
    contract = {"kind": ENCODER_KIND, "preprocessing": preprocessing.to_dict()}
    factory.write_artdiff_json(path, {**(info or {}), **contract})
    return path
