"""Tiny Stable Diffusion folders in the published layouts, built offline for tests (nothing downloads).

`tiny_sd` writes what StableDiffusionPipeline.save_pretrained writes for runwayml/stable-diffusion-v1-5
(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), at toy sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from artdiff.models.tokenizer import build_tokenizer

# SD 1.x's scheduler config (scheduler/scheduler_config.json of the v1-5 repository).
SD_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "num_train_timesteps": 1000, "skip_prk_steps": True, "steps_offset": 1, "set_alpha_to_one": False}
WORDS = ("a painting of a lighthouse by the sea in oil colourful portrait of a woman with red hair, "
         "landscape with mountains at dusk watercolor cat sitting on a chair sketch in charcoal by monet van gogh "
         "hokusai wave impressionist abstract geometric pastel dark bright moody").split()


def tiny_tokenizer(out: Path) -> CLIPTokenizer:
    """A CLIP-format tokenizer with a small vocabulary learned from a few art captions."""
    captions = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    build_tokenizer(captions, out, vocab_size=600, min_frequency=1)
    return CLIPTokenizer.from_pretrained(out)


def tiny_text_encoder(tokenizer: CLIPTokenizer, width: int = 32) -> CLIPTextModel:
    """A random CLIPTextModel (SD 1.x's text encoder class) sized for the tokenizer."""
    torch.manual_seed(1)
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).eval()


def tiny_unet(cross_attention_dim: int = 32, sample_size: int = 8) -> UNet2DConditionModel:
    """A random two-level UNet2DConditionModel with SD's block types."""
    torch.manual_seed(2)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4, norm_num_groups=8).eval()


def tiny_sd_vae() -> AutoencoderKL:
    """A random AutoencoderKL with factor 2 and SD's scaling factor."""
    torch.manual_seed(3)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                         latent_channels=4, norm_num_groups=8, scaling_factor=0.18215).eval()


def tiny_sd_pipeline(root: Path) -> StableDiffusionPipeline:
    """The tiny SD as a diffusers pipeline object (not saved)."""
    tokenizer = tiny_tokenizer(root / "tokenizer-src")
    return StableDiffusionPipeline(
        vae=tiny_sd_vae(), text_encoder=tiny_text_encoder(tokenizer), tokenizer=tokenizer, unet=tiny_unet(),
        scheduler=PNDMScheduler(**SD_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def tiny_sd(out: Path) -> Path:
    """A tiny SD 1.x model folder in diffusers' layout."""
    tiny_sd_pipeline(out.parent / f"{out.name}-parts").save_pretrained(out, safe_serialization=True)
    # v1-5's published scheduler_config.json also carries "clip_sample": false (PNDM ignores it; DDIM reads it).
    config_file = out / "scheduler" / "scheduler_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "clip_sample": False}, indent=2))
    return out


def tiny_sd2(out: Path) -> Path:
    """A tiny SD 2.x model folder: linear transformer projections, GELU text encoder, v-prediction, pad "!"."""
    tokenizer = tiny_tokenizer(out.parent / f"{out.name}-tokenizer")
    tokenizer.pad_token = "!"  # SD 2.x's tokenizer pads with "!" (id 0), as OpenCLIP pads with zeros
    torch.manual_seed(1)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        hidden_act="gelu", max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).eval()
    torch.manual_seed(2)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4), norm_num_groups=8, use_linear_projection=True,
        upcast_attention=True).eval()
    scheduler = PNDMScheduler(**SD_SCHEDULER, prediction_type="v_prediction")
    StableDiffusionPipeline(vae=tiny_sd_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                            scheduler=scheduler, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(out, safe_serialization=True)
    return out


def _renamed(state: dict, pairs: list[tuple[str, str]], inner: dict[str, list[tuple[str, str]]]) -> dict:
    """Rename diffusers keys to LDM ones: the longest matching (ldm, diffusers) prefix, then inner renames."""
    out = {}
    for key, value in state.items():
        ldm = key
        for new, old in sorted(pairs, key=lambda pair: -len(pair[1])):
            if key.startswith(old):
                ldm = new + key[len(old):]
                for kind, renames in inner.items():
                    if kind in old:
                        for diffusers_name, ldm_name in renames:
                            ldm = ldm.replace(diffusers_name, ldm_name)
                break
        out[ldm] = value
    return out


RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
          ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def unet_to_ldm(unet: UNet2DConditionModel) -> dict:
    """The UNet's weights under CompVis' openaimodel.UNetModel names (diffusers' convert_diffusers_to_original_
    stable_diffusion.py mapping, generalised to any depth and layers_per_block)."""
    config, layers = unet.config, unet.config.layers_per_block
    levels = len(config.block_out_channels)
    pairs = [("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
             ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out."),
             ("middle_block.0.", "mid_block.resnets.0."), ("middle_block.1.", "mid_block.attentions.0."),
             ("middle_block.2.", "mid_block.resnets.1.")]
    for i in range(levels):
        for j in range(layers):
            pairs += [(f"input_blocks.{(layers + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."),
                      (f"input_blocks.{(layers + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}.")]
        for j in range(layers + 1):
            pairs += [(f"output_blocks.{(layers + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."),
                      (f"output_blocks.{(layers + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}.")]
        if i < levels - 1:
            upsampler = 2 if "CrossAttn" in config.up_block_types[i] else 1
            pairs += [(f"input_blocks.{(layers + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."),
                      (f"output_blocks.{(layers + 1) * i + layers}.{upsampler}.", f"up_blocks.{i}.upsamplers.0.")]
    return _renamed(unet.state_dict(), pairs, {"resnets": RESNET})


def vae_to_ldm(vae: AutoencoderKL) -> dict:
    """The VAE's weights under CompVis' AutoencoderKL names, attention as 1x1 convolutions."""
    levels, layers = len(vae.config.block_out_channels), vae.config.layers_per_block
    pairs = [("encoder.norm_out.", "encoder.conv_norm_out."), ("decoder.norm_out.", "decoder.conv_norm_out.")]
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.mid.attn_1.", f"{part}.mid_block.attentions.0."),
                  (f"{part}.mid.block_1.", f"{part}.mid_block.resnets.0."),
                  (f"{part}.mid.block_2.", f"{part}.mid_block.resnets.1.")]
    for i in range(levels):
        pairs += [(f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}.") for j in range(layers)]
        pairs += [(f"decoder.up.{levels - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.")
                  for j in range(layers + 1)]
        if i < levels - 1:
            pairs += [(f"encoder.down.{i}.downsample.", f"encoder.down_blocks.{i}.downsamplers.0."),
                      (f"decoder.up.{levels - 1 - i}.upsample.", f"decoder.up_blocks.{i}.upsamplers.0.")]
    attention = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]
    state = _renamed(vae.state_dict(), pairs, {"resnets": [("conv_shortcut", "nin_shortcut")],
                                               "attentions": attention})
    return {key: value[:, :, None, None] if ".attn_1." in key and key.endswith("weight") and value.ndim == 2
            else value for key, value in state.items()}


def open_clip_to_ldm(text_encoder: CLIPTextModel, extra_layer: bool = True) -> dict:
    """An SD 2.x text encoder under OpenCLIP names (cond_stage_model.model.*), q/k/v fused into in_proj.

    SD 2.x files hold all 24 OpenCLIP layers and the projection though SD uses 23 layers; `extra_layer` adds an
    unused last layer and a projection the same way, which loading must ignore.
    """
    state = {key.removeprefix("text_model."): value for key, value in text_encoder.state_dict().items()}
    prefix, out = "cond_stage_model.model.", {}
    out[prefix + "token_embedding.weight"] = state["embeddings.token_embedding.weight"]
    out[prefix + "positional_embedding"] = state["embeddings.position_embedding.weight"]
    out[prefix + "ln_final.weight"] = state["final_layer_norm.weight"]
    out[prefix + "ln_final.bias"] = state["final_layer_norm.bias"]
    width = state["final_layer_norm.weight"].shape[0]
    count = text_encoder.config.num_hidden_layers
    for i in range(count + int(extra_layer)):
        block = f"{prefix}transformer.resblocks.{i}."
        layer = f"encoder.layers.{min(i, count - 1)}."
        for ldm, diffusers in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                               ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj")):
            for kind in ("weight", "bias"):
                out[f"{block}{ldm}.{kind}"] = state[f"{layer}{diffusers}.{kind}"].clone()
        for kind in ("weight", "bias"):
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{layer}self_attn.{name}_proj.{kind}"] for name in ("q", "k", "v")])
    if extra_layer:
        out[prefix + "text_projection"] = torch.randn(width, width)
    return out


def ldm_state_dict(folder: Path) -> dict:
    """A diffusers SD folder's weights as one original-layout (CompVis/Stability) state dict, with the extras
    real files carry (schedule buffers, EMA counters)."""
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    state = {f"model.diffusion_model.{k}": v for k, v in unet_to_ldm(pipe.unet).items()}
    state.update({f"first_stage_model.{k}": v for k, v in vae_to_ldm(pipe.vae).items()})
    if pipe.text_encoder.config.hidden_act == "quick_gelu":
        state.update({f"cond_stage_model.transformer.text_model.{k.removeprefix('text_model.')}": v
                      for k, v in pipe.text_encoder.state_dict().items()})
    else:
        state.update(open_clip_to_ldm(pipe.text_encoder))
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    state.update({"betas": betas, "alphas_cumprod": torch.cumprod(1 - betas, 0),
                  "model_ema.num_updates": torch.tensor(1000, dtype=torch.int32)})
    return {key: value.detach().clone().contiguous() for key, value in state.items()}
