"""Stable Diffusion image variations (lambdalabs/sd-image-variations-diffusers): SD's UNet conditioned on a CLIP image.

The layout is diffusers' StableDiffusionImageVariationPipeline folder: unet/, vae/, image_encoder/
(CLIPVisionModelWithProjection), scheduler/, and an optional feature_extractor/. The condition of an image is
`image_encoder(pixel_values).image_embeds` (not L2-normalised) as a one-token sequence (B, 1, D); the
unconditional input is zeros. The published model was trained on pixels squashed to 224 px with kornia's bicubic
resize, align_corners=True and no antialiasing (justinpinkney/stable-diffusion FrozenCLIPImageEmbedder), which
is the default contract here; diffusers' feature_extractor path (antialiased PIL resize, centre crop) is not.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import CLIPModel, CLIPVisionModelWithProjection

from artdiff.errors import UserError
from artdiff.models import factory
from artdiff.models.preprocessing import ImageInput, Preprocessing, preprocess, to_pixels
from artdiff.models.stable_diffusion import is_stable_diffusion, schedule_from_scheduler_config
from artdiff.utils.hashing import weights_hash
from artdiff.utils.io import atomic_write_json

PIPELINE = "StableDiffusionImageVariationPipeline"
KIND = "image-variation"
PARTS = ("unet", "vae", "image_encoder", "scheduler")


@dataclass
class ImageVariation:
    """A loaded image-variation model: the networks, its preprocessing contract and its training schedule.

    It has the fields generate.sd_sample reads from a StableDiffusion (unet, vae, latent_scale, schedule,
    parameterization, vae_factor), so the same sampling code serves both.
    """

    path: Path
    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    image_encoder: CLIPVisionModelWithProjection
    latent_scale: float
    schedule: dict[str, Any]
    parameterization: str
    preprocessing: Preprocessing
    hash: str

    @property
    def vae_factor(self) -> int:
        """Pixels per latent along each side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def condition(self, images: ImageInput) -> Tensor:
        """The UNet's encoder_hidden_states (B, 1, D) for PIL images or [0, 1] tensors, under the model's contract."""
        pixels = pixel_values(images, self.preprocessing)
        return image_condition(self.image_encoder, pixels)


def default_preprocessing(image_size: int = 224, *, antialias: bool = False) -> Preprocessing:
    """The published training contract: squash to image_size, bicubic, align_corners, no antialias; CLIP mean/std."""
    return Preprocessing(size=image_size, kernel="bicubic", antialias=antialias, crop=False, align_corners=True)


def pixel_values(images: ImageInput, prep: Preprocessing) -> Tensor:
    """Image-encoder input (B, 3, S, S) for PIL images or [0, 1] tensors under a contract; differentiable for tensors.

    A squashing bicubic/bilinear contract is applied as the training code did (kornia.geometry.resize is
    F.interpolate): no clamp of the kernel's overshoot, unlike preprocessing.preprocess, which mimics 8-bit PIL.
    Other contracts (centre crop, Lanczos, area) go through preprocessing.preprocess.
    """
    if prep.crop or prep.kernel not in ("bicubic", "bilinear"):
        return preprocess(images, prep)
    pixels = to_pixels(images)
    if not pixels:
        raise ValueError("no images to preprocess")
    size = (prep.size, prep.size)
    x = torch.cat([F.interpolate(p[None].float(), size=size, mode=prep.kernel, align_corners=prep.align_corners,
                                 antialias=prep.antialias) for p in pixels])  # (B, 3, S, S)
    mean = torch.tensor(prep.mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def image_condition(image_encoder: CLIPVisionModelWithProjection, pixels: Tensor) -> Tensor:
    """encoder_hidden_states (B, 1, D): the projected CLS embedding, not normalised, as diffusers' _encode_image."""
    parameter = next(image_encoder.parameters())
    embeds = image_encoder(pixel_values=pixels.to(parameter.device, parameter.dtype)).image_embeds  # (B, D)
    return embeds.unsqueeze(1)


def is_image_variation(folder: Path) -> bool:
    """True for a folder whose model_index.json names the pipeline, or whose artdiff.json says image-variation."""
    index = factory.read_json(folder / "model_index.json")
    if index is not None and index.get("_class_name") == PIPELINE:
        return True
    info = factory.read_json(folder / "artdiff.json")
    return info is not None and info.get("kind") == KIND


def contract_of(folder: Path, image_size: int) -> Preprocessing:
    """artdiff.json `preprocessing` if present, else the published training contract at the encoder's size."""
    info = factory.read_json(folder / "artdiff.json") or {}
    if "preprocessing" not in info:
        return default_preprocessing(image_size)
    prep = Preprocessing.from_dict(info["preprocessing"], where=f"{folder / 'artdiff.json'} preprocessing")
    if prep.output_size != image_size:
        raise UserError(f"{folder / 'artdiff.json'}: its preprocessing makes {prep.output_size} px inputs but the "
                        f"image encoder takes {image_size} px; fix `preprocessing` there")
    return prep


def load_image_variation(reference: str | Path, *, device: str | torch.device = "cpu",
                         dtype: torch.dtype = torch.float32) -> ImageVariation:
    """Load an image-variation folder or hub id in the local cache; a wrong kind or missing part is a one-line error."""
    folder = factory.resolve_model_dir(reference)
    if not is_image_variation(folder):
        if is_stable_diffusion(folder):
            raise UserError(f"{folder} is a text-to-image Stable Diffusion model; `artdiff vary` needs an "
                            "image-variation model (e.g. lambdalabs/sd-image-variations-diffusers); use "
                            "`artdiff generate` for this one")
        raise UserError(f"{folder} is not an image-variation model (no model_index.json naming {PIPELINE}, no "
                        "artdiff.json of kind image-variation)")
    for part in PARTS:
        if not (folder / part).is_dir():
            raise UserError(f"{folder} has no {part}/ folder; it is not a complete image-variation model")
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    schedule, parameterization = schedule_from_scheduler_config(factory.read_json(scheduler_file) or {},
                                                                where=str(scheduler_file))
    unet = factory.load_unet(folder / "unet", device=device, dtype=dtype).eval()
    vae, scale = factory.load_vae(folder / "vae", device=device, dtype=dtype)
    image_encoder = factory.load_vision_tower(folder / "image_encoder", device=device, dtype=dtype)
    check_widths(unet, image_encoder, where=str(folder))
    prep = contract_of(folder, image_encoder.config.image_size)
    weights = sorted((folder / "unet").glob("*.safetensors")) or sorted((folder / "unet").glob("*.bin"))
    return ImageVariation(folder, unet, vae, image_encoder, float(scale), schedule, parameterization, prep,
                          weights_hash(weights))


def condition_width(unet: Any) -> int:
    """Width of the condition the UNet accepts: its encoder_hid_proj input if it has one, else cross_attention_dim."""
    return int(unet.config.encoder_hid_dim or unet.config.cross_attention_dim)


def check_widths(unet: Any, image_encoder: CLIPVisionModelWithProjection, *, where: str) -> None:
    """A one-line error when the image embedding cannot enter the UNet."""
    dim, width = image_encoder.config.projection_dim, condition_width(unet)
    if dim != width:
        raise UserError(f"{where}: the image encoder gives {dim}-d embeddings but the UNet takes {width}-d "
                        "conditions; these parts were not trained together")


def add_condition_projection(unet: Any, dim: int, *, generator: torch.Generator | None = None) -> bool:
    """Give the UNet a learned Linear(dim, cross_attention_dim) for dim-wide conditions; True when one was added.

    It is diffusers' own `encoder_hid_proj` (config encoder_hid_dim, encoder_hid_dim_type "text_proj"), which
    UNet2DConditionModel applies to encoder_hidden_states, so the saved UNet still loads and runs in
    StableDiffusionImageVariationPipeline.
    """
    width = unet.config.cross_attention_dim
    if unet.config.encoder_hid_dim is not None:
        if unet.config.encoder_hid_dim != dim or unet.config.encoder_hid_dim_type != "text_proj":
            raise UserError(f"the UNet already projects {unet.config.encoder_hid_dim}-d conditions "
                            f"({unet.config.encoder_hid_dim_type}), not the image encoder's {dim}-d embeddings")
        return False
    if dim == width:
        return False
    projection = nn.Linear(dim, width)
    with torch.no_grad():  # PyTorch's default Linear init, drawn from the given generator for reproducibility
        bound = 1 / dim**0.5
        projection.weight.uniform_(-bound, bound, generator=generator)
        projection.bias.uniform_(-bound, bound, generator=generator)
    parameter = next(unet.parameters())
    unet.encoder_hid_proj = projection.to(parameter.device, parameter.dtype)
    unet.register_to_config(encoder_hid_dim=dim, encoder_hid_dim_type="text_proj")
    return True


def load_image_encoder(reference: str | Path, *, device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32) -> tuple[CLIPVisionModelWithProjection, Path]:
    """Load a CLIP image tower and return it with its folder.

    Accepted: a CLIPVisionModelWithProjection folder, a CLIPModel folder (its vision half is taken), or a model
    folder with image_encoder/.
    """
    path = factory.resolve_model_dir(reference)
    if not (path / "config.json").is_file() and (path / "image_encoder" / "config.json").is_file():
        path = path / "image_encoder"
    kind = (factory.read_json(path / "config.json") or {}).get("model_type")
    if kind == "clip_vision_model":
        return factory.load_vision_tower(path, device=device, dtype=dtype), path
    if kind == "clip":
        return vision_half(factory.load_clip_model(path, device=device, dtype=dtype)), path
    raise UserError(f"{path} is not a CLIP image encoder (config.json model_type {kind or 'missing'}; expected "
                    "clip or clip_vision_model, or an image_encoder/ subfolder)")


def vision_half(clip: CLIPModel) -> CLIPVisionModelWithProjection:
    """The CLIPModel's vision tower and visual projection as a CLIPVisionModelWithProjection (same weights, copied)."""
    config = copy.deepcopy(clip.config.vision_config)
    config.projection_dim = clip.config.projection_dim
    tower = CLIPVisionModelWithProjection(config)
    state = {k: v for k, v in clip.state_dict().items() if k.startswith(("vision_model.", "visual_projection."))}
    tower.load_state_dict(state)
    parameter = next(clip.parameters())
    return tower.to(parameter.device, parameter.dtype).eval()


def write_model_dir(directory: Path, *, unet: Any, vae_dir: Path, image_encoder: CLIPVisionModelWithProjection,
                    scheduler_dir: Path, info: dict[str, Any]) -> Path:
    """Write the lambdalabs layout that StableDiffusionImageVariationPipeline loads, plus artdiff.json, atomically.

    feature_extractor/ is the published CLIPImageProcessor config at the encoder's size (for diffusers users who
    pass PIL images); artdiff itself applies the contract in artdiff.json.
    """
    final = Path(directory)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    factory.save_diffusers_model(unet, tmp / "unet")
    shutil.copytree(vae_dir, tmp / "vae")
    factory.save_pretrained_dir(image_encoder, tmp / "image_encoder")
    shutil.copytree(scheduler_dir, tmp / "scheduler")
    side = image_encoder.config.image_size
    default = default_preprocessing(side)
    atomic_write_json(tmp / "feature_extractor" / "preprocessor_config.json", {
        "crop_size": {"height": side, "width": side}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": list(default.mean),
        "image_processor_type": "CLIPImageProcessor", "image_std": list(default.std), "resample": 3,
        "rescale_factor": 1 / 255, "size": {"shortest_edge": side}})
    scheduler = factory.read_json(scheduler_dir / "scheduler_config.json") or {}
    atomic_write_json(tmp / "model_index.json", {
        "_class_name": PIPELINE, "_diffusers_version": version("diffusers"),
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"], "requires_safety_checker": False,
        "safety_checker": [None, None], "scheduler": ["diffusers", scheduler.get("_class_name", "PNDMScheduler")],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    factory.write_artdiff_json(tmp, {**info, "kind": KIND})
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final
