"""`artdiff generate` for embedding-conditioned models: text, image and embedding prompts, weighted and mixed."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file

from artdiff import __version__
from artdiff.data.cache import fingerprint_files
from artdiff.errors import UserError
from artdiff.generate.options import GenerateOptions, GenerateResult
from artdiff.generate.prompts import Prompt, parse_prompt
from artdiff.generate.sample import sample_from_embeddings
from artdiff.models import factory
from artdiff.models.encoders import JointEncoder, load_encoder
from artdiff.models.latents import Latents
from artdiff.models.model_info import ModelInfo
from artdiff.models.preprocessing import Preprocessing
from artdiff.utils.assets import SHIPPED_MODEL, shipped
from artdiff.utils.images import ImageReadError, decode_rgb
from artdiff.utils.pngmeta import infotext, save_png_with_metadata


@dataclass
class EmbeddingModel:
    """A loaded embedding-ldm model directory."""

    path: Path
    info: ModelInfo
    unet: torch.nn.Module
    latents: Latents
    encoder: JointEncoder
    hash: str

    @property
    def image_size(self) -> int:
        return int(self.info.extra.get("image_size", self.info.preprocessing.get("size", 64)))


def load_embedding_model(reference: str | None) -> EmbeddingModel:
    """Load a model directory of kind embedding-ldm (default: the shipped artdiff-mini)."""
    path = Path(reference) if reference else shipped(SHIPPED_MODEL, "artdiff-mini model")
    folder = factory.resolve_model_dir(path)
    info = factory.read_model_info(folder)
    if info.kind != "embedding-ldm":
        raise UserError(f"{folder} is a {info.kind} model directory; `artdiff generate` needs an embedding-ldm model")
    for part in ("unet", "vae", "encoder"):
        if not (folder / part).is_dir():
            raise UserError(f"{folder} is missing its {part}/ folder; it is not a complete embedding-ldm model")
    unet = factory.load_unet(folder / "unet").eval()
    vae, scale = factory.load_vae(folder / "vae")
    encoder = load_encoder(folder / "encoder")
    if info.preprocessing:  # the contract the model was trained with rules, whatever the encoder folder says
        encoder.preprocessing = Preprocessing.from_dict(info.preprocessing, where=f"{folder}/artdiff.json")
    weights = sorted((folder / "unet").glob("*.safetensors"))
    return EmbeddingModel(folder, info, unet, Latents(vae, scale=info.latent_scale or scale), encoder,
                          fingerprint_files(weights)[:10])


def _load_image(path: str) -> torch.Tensor:
    try:
        data = Path(path).read_bytes()
        image = decode_rgb(data).image
    except FileNotFoundError:
        raise UserError(f"image prompt {path} does not exist") from None
    except (OSError, ImageReadError) as error:
        raise UserError(f"image prompt {path} cannot be read ({error})") from None
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255


def _load_embedding(path: str, dim: int) -> torch.Tensor:
    try:
        tensors = load_file(path)
    except (FileNotFoundError, SafetensorError, OSError) as error:
        raise UserError(f"embedding file {path} cannot be read ({type(error).__name__}); make one with "
                        "`artdiff embed FOLDER --out FILE`") from None
    if "embedding" not in tensors:
        raise UserError(f"embedding file {path} has no 'embedding' tensor")
    embedding = tensors["embedding"].float().reshape(1, -1)
    if embedding.shape[1] != dim:
        raise UserError(f"embedding file {path} has {embedding.shape[1]} dimensions; this model conditions on {dim} "
                        "(it was made with another encoder)")
    return embedding


def build_prompt_set(model: EmbeddingModel, prompts: list[Prompt]) -> list[tuple[torch.Tensor, float]]:
    """Embed every prompt term with the model's own encoder and preprocessing contract."""
    if not prompts:
        raise UserError("nothing to generate from: give a text prompt, --image or --embedding")
    terms = []
    dim = model.info.conditioning["dim"] if model.info.conditioning else model.encoder.dim
    with torch.no_grad():
        for prompt in prompts:
            if prompt.kind == "text":
                embedding = model.encoder.embed_text([prompt.value])
            elif prompt.kind == "image":
                embedding = model.encoder.embed_images(_load_image(prompt.value))
            else:
                embedding = _load_embedding(prompt.value, dim)
            terms.append((embedding, prompt.weight))
    return terms


def generate_embedding(options: GenerateOptions) -> GenerateResult:
    """Check every input, then sample -n images and write each with its infotext and JSON sidecar."""
    prompts = ([parse_prompt(p) for p in options.prompts] + [parse_prompt(p, "image") for p in options.images]
               + [parse_prompt(p, "embedding") for p in options.embeddings])
    model = load_embedding_model(options.model)
    for name, given in (("--negative", options.negative), ("--init-image", options.init_image),
                        ("--width/--height", options.width or options.height), ("--lora", options.lora)):
        if given:
            raise UserError(f"{name} is for Stable Diffusion models; embedding models mix weighted prompts instead "
                            "(a negative weight pushes away)")
    cfg_scale = 3.0 if options.cfg is None else options.cfg
    size = options.size or model.image_size
    multiple = model.latents.factor * 2 ** (len(model.unet.config.block_out_channels) - 1)
    if size % multiple or size < multiple:
        raise UserError(f"this model makes sizes that are multiples of {multiple} px; {size} is not")
    prompt_set = build_prompt_set(model, prompts)
    started = time.perf_counter()
    images = sample_from_embeddings(model.unet, model.latents, model.info.schedule, model.info.parameterization,
                                    [prompt_set] * options.n, cfg_scale=cfg_scale, steps=options.steps,
                                    seed=options.seed, latent_size=size // model.latents.factor,
                                    sampler=options.sampler, karras=options.karras, eta=options.eta)
    seconds = time.perf_counter() - started
    text = " | ".join(p.describe() for p in prompts)
    paths = []
    for index, image in enumerate(images):
        seed = options.seed + index
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        parameters = infotext(text, steps=options.steps, sampler=options.sampler, cfg_scale=cfg_scale, seed=seed,
                              size=(size, size), model_name=model.path.name, model_hash=model.hash)
        sidecar = {"artdiff_version": __version__, "torch_version": torch.__version__, "model": str(model.path),
                   "model_hash": model.hash, "request": {**asdict(options), "out": str(options.out)},
                   "prompts": [asdict(p) for p in prompts], "seed": seed, "size": [size, size],
                   "preprocessing": model.encoder.preprocessing.to_dict(), "schedule": model.info.schedule}
        paths.append(save_png_with_metadata(Image.fromarray(pixels), options.out / f"{seed:06d}.png",
                                            parameters=parameters, sidecar=sidecar))
    return GenerateResult(paths, seconds, str(model.path), text)
