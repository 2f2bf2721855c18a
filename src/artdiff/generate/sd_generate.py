"""`artdiff generate` for Stable Diffusion: A1111 prompt syntax, negative prompt, CFG, img2img, embeddings."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artdiff import __version__
from artdiff.errors import UserError
from artdiff.generate.input_images import read_input_image
from artdiff.generate.options import GenerateOptions, GenerateResult, recorded_eta, resolve_seed, sampler_eta
from artdiff.generate.outputs import OutputFolder, run_batches
from artdiff.generate.prompt_weighting import encode_prompt_pair
from artdiff.generate.sd_sample import encode_image_latents, sample_sd
from artdiff.models.lora import AppliedLora, LoraSpec, apply_loras, parse_lora_spec
from artdiff.models.stable_diffusion import StableDiffusion, load_stable_diffusion
from artdiff.models.textual_inversion_files import (
    a1111_embedding_hash,
    a1111_embedding_name,
    add_textual_inversion,
    expand_tokens,
    load_textual_inversion,
    override_word,
    prompts_changed_by,
)
from artdiff.utils.images import resize
from artdiff.utils.pngmeta import infotext, model_display_name, sampling_fields

DEFAULT_CFG = 7.5  # StableDiffusionPipeline's default guidance scale


def _check_options(options: GenerateOptions) -> None:
    if len(options.prompts) > 1:
        raise UserError(f"Stable Diffusion takes one prompt, got {len(options.prompts)}; weight words inside it "
                        "with (word:1.3) and put what to avoid in --negative")
    if options.images:
        raise UserError("--image prompts need an embedding or image-variation model; for Stable Diffusion use "
                        "--init-image (img2img) or `artdiff vary`")
    if options.raw_weights:
        raise UserError("--raw-weights is for embedding models' TEXT:WEIGHT prompts; Stable Diffusion weights words "
                        "inside its one prompt, e.g. (word:1.3)")


def output_size(model: StableDiffusion, options: Any) -> tuple[int, int]:
    """(width, height): the flags, else --size, else the UNet's native size; multiples of the VAE factor (8 in SD)."""
    native = model.unet.config.sample_size * model.vae_factor
    square, square_flag = (options.size, "--size") if options.size is not None else (native, "the model's size")
    width, width_flag = (options.width, "--width") if options.width is not None else (square, square_flag)
    height, height_flag = (options.height, "--height") if options.height is not None else (square, square_flag)
    multiple = model.vae_factor  # the UNet forwards odd latent sizes to its upsamplers, as diffusers allows
    for flag, value in ((width_flag, width), (height_flag, height)):
        if value < multiple or value % multiple:
            raise UserError(f"{flag} {value} is not a positive multiple of {multiple}, which this model needs")
    return width, height


def apply_embeddings(model: StableDiffusion, specs: list[str], prompt: str, negative: str, *,
                     apply_overrides: bool = False) -> tuple[str, str, list]:
    """Load each textual-inversion FILE[:TOKEN] into the tokenizer and text encoder; expand multi-vector tokens.

    A file trained with --override-token replaces its word's rows, only with apply_overrides (it changes every
    prompt using that word); which of this run's prompts it changes is printed and recorded.
    """
    loaded = []
    for spec in specs:
        path, _, token = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
        embedding = load_textual_inversion(Path(path), token=token or None)
        if embedding.override_word:
            word = embedding.override_word
            if not apply_overrides:
                raise UserError(f"{path} overrides the word {word!r}; pass --apply-overrides to replace it in "
                                "this run's prompts")
            override_word(model.tokenizer, model.text_encoder, embedding, word)
            changed = prompts_changed_by(model.tokenizer, word, [p for p in (prompt, negative) if p])
            print(f"override {word!r} from {Path(path).name} changes: "
                  + ("; ".join(repr(p) for p in changed) if changed else "no prompt of this run"), file=sys.stderr)
            loaded.append({"file": path, "override_word": word, "vectors": len(embedding.vectors),
                           "prompts_changed": changed})
            continue
        added = add_textual_inversion(model.tokenizer, model.text_encoder, embedding)
        prompt = expand_tokens(prompt, embedding.token, len(added))
        negative = expand_tokens(negative, embedding.token, len(added))
        loaded.append({"file": path, "token": embedding.token, "vectors": len(added)})
    return prompt, negative, loaded


def apply_model_loras(model: StableDiffusion, specs: list[LoraSpec]) -> list[AppliedLora]:
    """Apply each --lora to the model's UNet and text encoder; note a LoRA trained on another base model."""
    loras = apply_loras(model.unet, model.text_encoder, specs, model_name=model.path.name)
    for lora in loras:
        if lora.base_model_hash and lora.base_model_hash != model.hash:
            print(f"note: LoRA {lora.name} was trained on model hash {lora.base_model_hash}, this model is "
                  f"{model.hash}", file=sys.stderr)
    return loras


def lora_tags(loras: list[AppliedLora]) -> str:
    """A1111's prompt tags for the applied LoRAs (A1111 reads the LoRAs of a pasted infotext from them)."""
    return "".join(f" <lora:{lora.name}:{lora.scale:g}>" for lora in loras)


def _init_latents(model: StableDiffusion, path: str, size: tuple[int, int]) -> torch.Tensor:
    image = read_input_image(path, what="--init-image").image
    image = resize(image, size, kernel="lanczos")  # A1111 and diffusers resize init images with Lanczos
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        return encode_image_latents(model, pixels)  # (1, 4, h, w)


def ti_hashes(embeddings: list[dict], prompt: str, negative: str) -> str | None:
    """A1111's `TI hashes`: "name: hash, ..." for the embeddings this run's prompt or negative uses."""
    used = [e for e in embeddings if e.get("prompts_changed")
            or (e.get("token") and (e["token"] in prompt or e["token"] in negative))]
    return ", ".join(f"{a1111_embedding_name(Path(e['file']))}: {a1111_embedding_hash(Path(e['file']))}"
                     for e in used) or None


def infotext_fields(options: GenerateOptions, *, eta: float, loras: list[AppliedLora], ti: str | None) -> dict:
    """The infotext fields beyond A1111's first seven, each only when it applies."""
    return {**sampling_fields(options.sampler, karras=options.karras, eta=eta),
            "Clip skip": options.clip_skip if options.clip_skip > 1 else None,
            "Guidance rescale": options.rescale or None,
            "Denoising strength": options.strength if options.init_image else None,
            "TI hashes": ti,
            "Lora hashes": ", ".join(f"{lora.infotext_name}: {lora.hash}" for lora in loras) or None}


def generate_sd(options: GenerateOptions) -> GenerateResult:
    """Check every input, then sample -n images in batches and write each with A1111 infotext and a JSON sidecar."""
    _check_options(options)
    folder = OutputFolder(options.out)
    lora_specs = [parse_lora_spec(spec) for spec in options.lora]  # a bad spec fails before the model loads
    model = load_stable_diffusion(options.model, config=options.model_config, tokenizer=options.tokenizer)
    loras = apply_model_loras(model, lora_specs)
    width, height = output_size(model, options)
    prompt, negative = (options.prompts[0] if options.prompts else ""), options.negative
    prompt_used, negative_used, embeddings = apply_embeddings(model, options.embeddings, prompt, negative,
                                                              apply_overrides=options.apply_overrides)
    cfg_scale = DEFAULT_CFG if options.cfg is None else options.cfg
    eta, seed = sampler_eta(options.sampler, options.eta), resolve_seed(options.seed)
    init = _init_latents(model, options.init_image, (width, height)) if options.init_image else None
    started = time.perf_counter()
    with torch.inference_mode():
        cond, uncond = encode_prompt_pair(model.text_encoder, model.tokenizer, prompt_used, negative_used,
                                          clip_skip=options.clip_skip)
    steps_run = min(int(options.steps * options.strength), options.steps) if init is not None else options.steps

    def sample(seeds: list[int], callback) -> torch.Tensor:
        return sample_sd(model, cond, uncond, seeds=seeds, height=height, width=width, steps=options.steps,
                         cfg_scale=cfg_scale, sampler=options.sampler, rescale=options.rescale,
                         karras=options.karras, eta=eta, callback=callback,
                         init_latents=None if init is None else init.expand(len(seeds), -1, -1, -1),
                         strength=options.strength if init is not None else 1.0)

    extra = infotext_fields(options, eta=eta, loras=loras, ti=ti_hashes(embeddings, prompt_used, negative_used))
    request = {**asdict(options), "out": str(options.out), "seed": seed, "cfg": cfg_scale,
               "eta": recorded_eta(options.sampler, eta)}
    common = {"artdiff_version": __version__, "torch_version": torch.__version__, "model": str(model.path),
              "model_hash": model.hash, "kind": "stable-diffusion", "request": request, "size": [width, height],
              "prompt_used": prompt_used, "negative_used": negative_used, "embeddings": embeddings,
              "loras": [lora.to_json() for lora in loras], "schedule": model.schedule,
              "parameterization": model.parameterization}

    def save(image_seed: int, image: torch.Tensor) -> Path:
        parameters = infotext(prompt + lora_tags(loras), negative=negative, steps=options.steps,
                              sampler=options.sampler, cfg_scale=cfg_scale, seed=image_seed, size=(width, height),
                              model_name=model_display_name(model.path), model_hash=model.hash, extra=extra)
        return folder.save(image, image_seed, parameters=parameters, sidecar={**common, "seed": image_seed})

    paths = run_batches(n=options.n, batch_size=options.batch_size, first_seed=seed, steps=steps_run, folder=folder,
                        sample=sample, save=save, hints=_hints(options, cfg_scale))
    return GenerateResult(paths, time.perf_counter() - started, str(model.path), prompt, seed=seed, cfg=cfg_scale)


def _hints(options: GenerateOptions, cfg_scale: float) -> list[str]:
    """This run's unusual inputs, named first when sampling turns non-finite."""
    hints = [f"--cfg {cfg_scale:g}"] if cfg_scale > 30 else []
    return hints + [f"--lora {spec}" for spec in options.lora] + [f"--embedding {e}" for e in options.embeddings]
