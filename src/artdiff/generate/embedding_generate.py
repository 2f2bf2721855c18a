"""`artdiff generate` for embedding-conditioned models: text, image and embedding prompts, weighted and mixed."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from artdiff import __version__
from artdiff.data.cache import fingerprint_files
from artdiff.errors import UserError
from artdiff.generate.clip_options import guidance_fields
from artdiff.generate.input_images import read_input_image
from artdiff.generate.options import GenerateOptions, GenerateResult, recorded_eta, resolve_seed, sampler_eta
from artdiff.generate.outputs import OutputFolder, run_batches
from artdiff.generate.progress_frames import ProgressFrames
from artdiff.generate.prompts import Prompt, parse_prompt
from artdiff.generate.sample import sample_from_embeddings
from artdiff.models import factory
from artdiff.models.components import component, round_to_precision
from artdiff.models.encoders import JointEncoder, load_encoder
from artdiff.models.latents import Latents
from artdiff.models.model_info import ModelInfo
from artdiff.models.preprocessing import Preprocessing
from artdiff.utils.assets import SHIPPED_MODEL, shipped
from artdiff.utils.pngmeta import infotext, model_display_name, sampling_fields


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
    for part in ("unet", "vae"):
        if not (folder / part).is_dir():
            raise UserError(f"{folder} is missing its {part}/ folder; it is not a complete embedding-ldm model")
    encoder_part = component(folder, info, "encoder")  # its own encoder/ or the shipped one it refers to
    unet = factory.load_unet(folder / "unet").eval()
    vae, scale = factory.load_vae(folder / "vae")
    encoder = round_to_precision(load_encoder(encoder_part.path), encoder_part.precision)
    if info.preprocessing:  # the contract the model was trained with rules, whatever the encoder folder says
        encoder.preprocessing = Preprocessing.from_dict(info.preprocessing, where=f"{folder}/artdiff.json")
    weights = sorted((folder / "unet").glob("*.safetensors"))
    return EmbeddingModel(folder, info, unet, Latents(vae, scale=info.latent_scale or scale), encoder,
                          fingerprint_files(weights)[:10])


def _load_image(path: str) -> torch.Tensor:
    image = read_input_image(path, what="image prompt").image
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


def mixing_weights(prompts: list[Prompt], *, raw: bool) -> list[float]:
    """The weights guidance multiplies by --cfg: relative (divided by the positive weights' sum) unless raw.

    CCLD's raw sum uncond + cfg * sum_i w_i (cond_i - uncond) makes "a:3" "b:1" at --cfg 3 guide at 12; relative
    weights keep the guidance at --cfg and mix 3:1. Negative weights keep their sign and push away; with no
    positive weight, the negative ones are scaled so that their magnitudes sum to one.
    """
    weights = [p.weight for p in prompts]
    if raw:
        return weights
    total = sum(w for w in weights if w > 0) or sum(abs(w) for w in weights)
    if total == 0:
        raise UserError("every prompt weight is 0, so there is nothing to guide towards; give one a weight such "
                        "as TEXT:1")
    return [w / total for w in weights]


def _check_embedding_options(options: GenerateOptions) -> None:
    """Refuse the options that only Stable Diffusion has, each with what an embedding model offers instead."""
    for flag, given, instead in (
            ("--negative", options.negative, "give a negative weight instead, e.g. \"blurry:-1\""),
            ("--init-image", options.init_image, "use an image prompt: --image PATH:WEIGHT"),
            ("--width/--height", options.width or options.height, "these models make square images: --size"),
            ("--lora", options.lora, "LoRA adapts Stable Diffusion models"),
            ("--clip-skip", options.clip_skip != 1, "their text encoder has no CLIP layers to skip")):
        if given:
            raise UserError(f"{flag} is for Stable Diffusion models; embedding models: {instead}")
    if options.model_config or options.tokenizer:
        raise UserError("--model-config and --tokenizer are for Stable Diffusion .safetensors/.ckpt files; an "
                        "embedding model folder holds its own parts")


def generate_embedding(options: GenerateOptions) -> GenerateResult:
    """Check every input, then sample -n images in batches and write each with its infotext and JSON sidecar."""
    _check_embedding_options(options)
    folder = OutputFolder(options.out)
    prompts = ([parse_prompt(p) for p in options.prompts] + [parse_prompt(p, "image") for p in options.images]
               + [parse_prompt(p, "embedding") for p in options.embeddings])
    model = load_embedding_model(options.model)
    cfg_scale = 3.0 if options.cfg is None else options.cfg
    size = options.size or model.image_size
    multiple = model.latents.factor * 2 ** (len(model.unet.config.block_out_channels) - 1)
    if size % multiple or size < multiple:
        flag = "--size" if options.size else "the model's size"
        raise UserError(f"{flag} {size}: this model makes sizes that are multiples of {multiple} px")
    weights = mixing_weights(prompts, raw=options.raw_weights) if prompts else []
    effective_cfg = cfg_scale * sum(w for w in weights if w > 0) if options.raw_weights else cfg_scale
    prompt_set = [(embedding, weight) for (embedding, _), weight in zip(build_prompt_set(model, prompts), weights)]
    eta, seed = sampler_eta(options.sampler, options.eta), resolve_seed(options.seed)
    guidance = None
    if options.clip_guidance:  # the same prompts steer by the encoders' gradient too (--cfg 0: by it alone)
        from artdiff.generate.clip_setup import setup_clip_guidance

        guidance = setup_clip_guidance(options, device=model.unet.device, steps=options.steps)
    started = time.perf_counter()

    progress = ProgressFrames(options.steps, size=size, batch=min(options.batch_size, options.n)) \
        if options.save_progress else None

    def sample(seeds: list[int], callback) -> torch.Tensor:
        if progress is not None:
            callback = progress.recording(seeds, callback, decode=lambda z: model.latents.decode(z) * 2 - 1)
        return sample_from_embeddings(model.unet, model.latents, model.info.schedule, model.info.parameterization,
                                      [prompt_set] * len(seeds), cfg_scale=cfg_scale, steps=options.steps,
                                      seed=seeds[0], latent_size=size // model.latents.factor,
                                      sampler=options.sampler, karras=options.karras, eta=eta,
                                      batch_size=len(seeds), callback=callback, guidance=guidance)

    text = " | ".join(p.describe() for p in prompts)
    extra = {**sampling_fields(options.sampler, karras=options.karras, eta=eta),
             "Prompt weights": "raw" if options.raw_weights else "relative",
             "Effective CFG scale": effective_cfg if effective_cfg != cfg_scale else None,
             **(guidance_fields(options, guidance) if guidance is not None else {})}
    request = {**asdict(options), "out": str(options.out), "seed": seed, "cfg": cfg_scale,
               "eta": recorded_eta(options.sampler, eta)}
    common = {"artdiff_version": __version__, "torch_version": torch.__version__, "model": str(model.path),
              "model_hash": model.hash, "kind": "embedding-ldm", "request": request,
              "prompts": [asdict(p) for p in prompts], "mixing_weights": weights,
              "weights": "raw" if options.raw_weights else "relative", "effective_cfg": effective_cfg,
              "size": [size, size], "preprocessing": model.encoder.preprocessing.to_dict(),
              "schedule": model.info.schedule}

    def save(image_seed: int, image: torch.Tensor) -> Path:
        parameters = infotext(text, steps=options.steps, sampler=options.sampler, cfg_scale=cfg_scale,
                              seed=image_seed, size=(size, size), model_name=model_display_name(model.path),
                              model_hash=model.hash, extra=extra)
        sidecar = {**common, "seed": image_seed}
        if guidance is not None:
            sidecar["clip_guidance"] = {**guidance.record, **guidance.image_stats(image_seed)}
        path = folder.save(image, image_seed, parameters=parameters, sidecar=sidecar)
        if progress is not None:
            progress.write(image_seed, path)
        return path

    hints = [f"--cfg {cfg_scale:g}"] if effective_cfg > 30 else []
    paths = run_batches(n=options.n, batch_size=options.batch_size, first_seed=seed, steps=options.steps,
                        folder=folder, sample=sample, save=save, hints=hints + ["prompt weights"])
    return GenerateResult(paths, time.perf_counter() - started, str(model.path), text, seed=seed, cfg=effective_cfg)
