"""The one place that reads and writes pretrained model folders (from_pretrained, save_pretrained, hub ids)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
from transformers import (
    CLIPModel,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
    PreTrainedModel,
)
from transformers.utils import logging as transformers_logging

from artdiff.errors import UserError
from artdiff.models import config_limits, weights_files
from artdiff.models.preprocessing import Preprocessing
from artdiff.models.tokenizer import TOKENIZER_FILES
from artdiff.utils.io import atomic_write_json

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# What a CLIP folder needs from the hub, subfolders included (fnmatch's * spans "/"): configs, tokenizer and
# safetensors weights, not the pickled, TF or Flax copies.
HUB_PATTERNS = ["*.json", "*.txt", "*.safetensors"]


def _hub_offline() -> bool:
    flags = (os.environ.get(name, "").upper() for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag in ("1", "ON", "YES", "TRUE") for flag in flags)


def resolve_model_dir(path_or_hub_id: str | Path, *, cache_dir: str | Path | None = None) -> Path:
    """Return a local model folder: the path itself, or the hub id's snapshot in the Hugging Face cache."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        return _model_of_run(path)
    if path.exists():
        raise UserError(f"{path} is a file; pass the model folder that holds config.json")
    name = str(path_or_hub_id)
    if not HUB_ID.fullmatch(name):
        raise UserError(f"model folder {name} does not exist")
    try:
        return Path(snapshot_download(name, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, FileNotFoundError):
        pass
    if _hub_offline():
        raise UserError(f"no folder {name}, and model {name} is not in the local Hugging Face cache (offline); "
                        f"run `hf download {name}` where there is network, or pass a local folder")
    try:
        return Path(snapshot_download(name, cache_dir=cache_dir, allow_patterns=HUB_PATTERNS))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as error:
        raise UserError(f"no folder {name}, and model {name} is not in the local Hugging Face cache nor "
                        f"downloadable ({type(error).__name__}); pass a local folder") from None


def _model_of_run(path: Path) -> Path:
    """A training run folder (config.yaml, checkpoints/) stands for its model/; any other folder for itself."""
    describes_itself = any((path / name).exists() for name in ("artdiff.json", "model_index.json", "config.json"))
    is_run = (path / "config.yaml").is_file() or (path / "checkpoints").is_dir()
    if describes_itself or not is_run:
        return path
    if (path / "model").is_dir():
        return path / "model"
    raise UserError(f"{path} is a training run without a finished model (no {path / 'model'}/); let the training "
                    "finish or resume it, or pass a model folder")


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a JSON mapping, or None when the file does not exist (a folder, empty file or bad JSON is an error)."""
    if not path.is_file() and not path.is_dir():
        return None
    return weights_files.read_json_file(path)


@contextlib.contextmanager
def _quiet_library() -> Iterator[None]:
    """Silence the libraries while they read or write a local folder: per-tensor and shard bars, load reports and
    advice are noise.

    Errors still surface as exceptions, which _from_pretrained turns into one line; the user's own use of the
    libraries outside this block keeps their settings.
    """
    from diffusers.utils import logging as diffusers_logging

    bar_was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    levels = transformers_logging.get_verbosity(), diffusers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    diffusers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's and the libraries' FutureWarnings about their own defaults
            yield
    finally:
        transformers_logging.set_verbosity(levels[0])
        diffusers_logging.set_verbosity(levels[1])
        if bar_was_on:
            transformers_logging.enable_progress_bar()


def _bytes_per_parameter(kwargs: dict[str, Any]) -> int:
    dtype = kwargs.get("dtype") or kwargs.get("torch_dtype") or torch.float32
    return torch.empty((), dtype=dtype).element_size() if isinstance(dtype, torch.dtype) else 4


def _from_pretrained(cls: Any, path: Path, **kwargs: Any) -> Any:
    """cls.from_pretrained on a vetted local folder: config bounds, safetensors only, every tensor present."""
    path = Path(path)
    is_model = hasattr(cls, "config_class") or hasattr(cls, "config_name")  # not a tokenizer
    if is_model:
        config_file = path / "config.json"
        config = weights_files.read_json_file(config_file, what="config.json")
        config_limits.check_config(config, where=str(config_file), bytes_per_parameter=_bytes_per_parameter(kwargs))
        weights_files.check_weights(path)
        kwargs["use_safetensors"] = True  # never the pickled copies beside them
    else:
        for file in sorted(path.glob("*.json")):
            weights_files.read_json_file(file)
    try:
        with _quiet_library():
            loaded = cls.from_pretrained(path, local_files_only=True, **kwargs,
                                         **({"output_loading_info": True} if is_model else {}))
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as error:
        raise UserError(f"cannot load {cls.__name__} from {path}: {_reason(error)}") from None
    if not is_model:
        return loaded
    model, info = loaded
    # transformers fills missing tensors with random values, diffusers leaves them on the meta device
    missing = sorted({*(info.get("missing_keys") or ()),
                      *(name for name, tensor in model.state_dict().items() if tensor.is_meta)})
    if missing:
        raise UserError(f"{path} lacks {len(missing)} of the tensors its config.json describes (e.g. {missing[0]}); "
                        "the weights are incomplete or belong to another model: copy or download it again")
    return model


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    if "size mismatch" in text or "ignore_mismatched_sizes" in text:
        return "the tensor shapes in its weights do not match its config.json; copy or download the model again"
    if "meta tensor" in text:
        return "tensors its config.json describes are missing from its weights; copy or download the model again"
    return text.splitlines()[0][:300] if text else type(error).__name__


def load_clip_model(path: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                    ) -> CLIPModel:
    """Load a transformers CLIPModel folder in eval mode."""
    return _from_pretrained(CLIPModel, path, dtype=dtype).to(device).eval()


def load_vision_tower(path: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                      ) -> CLIPVisionModelWithProjection:
    """Load a CLIPVisionModelWithProjection folder (diffusers' image_encoder/) in eval mode."""
    return _from_pretrained(CLIPVisionModelWithProjection, path, dtype=dtype).to(device).eval()


def load_text_tower(path: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                    ) -> CLIPTextModelWithProjection:
    """Load a CLIPTextModelWithProjection folder (a projected text_encoder/, as SDXL's text_encoder_2/)."""
    return _from_pretrained(CLIPTextModelWithProjection, path, dtype=dtype).to(device).eval()


def load_text_encoder(path: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                      ) -> CLIPTextModel:
    """Load a CLIPTextModel folder (Stable Diffusion's text_encoder/) in eval mode."""
    return _from_pretrained(CLIPTextModel, path, dtype=dtype).to(device).eval()


def find_tokenizer_dir(path: Path) -> Path | None:
    """Return the folder holding a CLIP tokenizer: the model folder itself, or its tokenizer/ subfolder."""
    for folder in (path, path / "tokenizer"):
        for name in ("vocab.json", "merges.txt", "tokenizer.json"):
            if (folder / name).is_dir():
                raise UserError(f"{folder / name} is a folder where a tokenizer file is expected; "
                                f"{weights_files.RESTORE}")
        bpe_files = all((folder / name).is_file() for name in ("vocab.json", "merges.txt"))
        if bpe_files or (folder / "tokenizer.json").is_file():
            return folder
    return None


def load_clip_tokenizer(path: Path) -> CLIPTokenizer:
    """Load the CLIP tokenizer of a model folder, or say which files are missing and how to add them."""
    folder = find_tokenizer_dir(path)
    if folder is None:
        raise UserError(f"{path} has no tokenizer (vocab.json + merges.txt, or tokenizer.json, in it or in "
                        "tokenizer/); copy the tokenizer files of the model it was trained with into it")
    return _from_pretrained(CLIPTokenizer, folder)


def load_preprocessing(path: Path) -> Preprocessing | None:
    """Read the preprocessing contract: artdiff.json first, then a transformers preprocessor_config.json."""
    artdiff = read_json(path / "artdiff.json") or {}
    if "preprocessing" in artdiff:
        return Preprocessing.from_dict(artdiff["preprocessing"], where=f"{path / 'artdiff.json'} preprocessing")
    for candidate in (path / "preprocessor_config.json", path / "feature_extractor" / "preprocessor_config.json"):
        data = read_json(candidate)
        if data is not None:
            try:
                return Preprocessing.from_hf_processor_config(data)
            except ValueError as error:
                raise UserError(f"{candidate}: {error}") from None
    return None


def save_pretrained_dir(model: PreTrainedModel, path: str | Path) -> Path:
    """Save a transformers model (config.json + model.safetensors) into a folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with _quiet_library():
        model.save_pretrained(path)
    return path


def copy_tokenizer(source: Path, path: Path) -> None:
    """Copy a CLIP tokenizer's files into a model folder."""
    folder = find_tokenizer_dir(source)
    if folder is None:
        raise UserError(f"{source} has no tokenizer (vocab.json + merges.txt); build one with "
                        "artdiff.models.tokenizer.build_tokenizer")
    path.mkdir(parents=True, exist_ok=True)
    for name in (*TOKENIZER_FILES, "tokenizer.json"):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, path / name)


def write_artdiff_json(path: Path, data: dict[str, Any]) -> None:
    """Write a model folder's artdiff.json (DESIGN §3), atomically."""
    atomic_write_json(path / "artdiff.json", data)


def load_vae(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
             ) -> tuple[Any, float]:
    """An AutoencoderKL folder (or a model folder's vae/) and its latent scale (artdiff.json, else config.json)."""
    from diffusers import AutoencoderKL

    folder = Path(path)
    if not (folder / "config.json").exists() and (folder / "vae" / "config.json").exists():
        folder = folder / "vae"
    if not (folder / "config.json").exists():
        raise UserError(f"{path} is not an autoencoder folder (no config.json); train one with `artdiff train vae`")
    vae = _from_pretrained(AutoencoderKL, folder, torch_dtype=dtype).to(device).eval()
    info = read_json(folder / "artdiff.json") or read_json(folder.parent / "artdiff.json") or {}
    scale = info.get("latent_scale") or vae.config.get("scaling_factor")
    if not scale:
        raise UserError(f"{folder} does not record its latent scale (artdiff.json latent_scale or config.json "
                        "scaling_factor)")
    return vae, float(scale)


def save_diffusers_model(model: Any, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """save_pretrained a diffusers model into a fresh folder (written beside, then renamed) plus artdiff.json."""
    final = Path(path)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet_library():
        model.save_pretrained(tmp, safe_serialization=True)
    if info is not None:
        write_artdiff_json(tmp, info)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def read_model_info(path: str | Path) -> Any:
    """A model directory's artdiff.json as a ModelInfo, or a one-line error."""
    from artdiff.models.model_info import ModelInfo

    file = Path(path) / "artdiff.json"
    data = read_json(file)
    if data is None:
        raise UserError(f"{path} has no artdiff.json; it is not an artdiff model directory")
    return ModelInfo.from_dict(data, where=str(file))


def write_model_info(path: str | Path, info: Any) -> None:
    """Write a ModelInfo as the directory's artdiff.json, atomically."""
    write_artdiff_json(Path(path), info.to_dict())


def load_unet(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """A diffusers UNet2DConditionModel folder."""
    from diffusers import UNet2DConditionModel

    folder = Path(path)
    if not (folder / "config.json").exists():
        raise UserError(f"{folder} is not a UNet folder (no config.json)")
    return _from_pretrained(UNet2DConditionModel, folder, torch_dtype=dtype).to(device)


def load_unet2d(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """A diffusers UNet2DModel folder (a pixel model's unet/) in eval mode."""
    from diffusers import UNet2DModel

    folder = Path(path)
    if not (folder / "config.json").exists():
        raise UserError(f"{folder} is not a UNet folder (no config.json)")
    return _from_pretrained(UNet2DModel, folder, torch_dtype=dtype).to(device).eval()


def cached_hub_dir(hub_id: str) -> Path | None:
    """The hub id's snapshot folder in the local Hugging Face cache, or None; never downloads."""
    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, FileNotFoundError, ValueError, OSError):
        return None


def _single_file_part(build: Any, part: str, source: Path, config_dir: Path) -> Any:
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    try:
        with _quiet_library():
            module = build()
    except (SingleFileComponentError, ValueError, KeyError, OSError, RuntimeError, NotImplementedError,
            IndexError, TypeError) as error:
        text = str(getattr(error, "message", None) or error).strip()
        if "meta tensor" in text:  # diffusers moved a module some of whose tensors the file lacks
            raise UserError(f"{source} lacks some of the {part}'s weights; it is not a complete Stable Diffusion "
                            "checkpoint (or pass --model-config with the configs it was made for)") from None
        shapes = re.search(r"(\S+) expected shape torch.Size\((\[.*?\])\), but got torch.Size\((\[.*?\])\)", text)
        reason = (f"{shapes[1]} is {shapes[3]} in the file, {shapes[2]} in the config" if shapes
                  else text.splitlines()[0][:200] if text else type(error).__name__)
        raise UserError(f"cannot build the {part} of {source.name} with the configs in {config_dir}: {reason}; "
                        "pass --model-config with the diffusers configs this checkpoint was made for") from None
    missing = [name for name, tensor in module.state_dict().items() if tensor.is_meta]
    if missing:
        raise UserError(f"{source} has no weights for the {part} ({len(missing)} tensors missing, e.g. {missing[0]}); "
                        "it is not a complete Stable Diffusion checkpoint")
    return module.eval()


def load_sd_single_file_parts(state_dict: dict[str, torch.Tensor], config_dir: Path, *, source: Path,
                              device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                              ) -> tuple[Any, Any, CLIPTextModel]:
    """The UNet, VAE and CLIP text encoder of an original-layout SD state dict, built from local diffusers configs.

    diffusers' single-file converters (loaders/single_file_utils) map the CompVis/Stability keys; `config_dir`
    holds unet/, vae/ and text_encoder/ config.json files, so nothing is fetched from the hub.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

    torch_dtype = None if dtype == torch.float32 else dtype  # diffusers warns on every cast, even to float32
    common = {"config": str(config_dir), "local_files_only": True, "torch_dtype": torch_dtype}
    unet = _single_file_part(lambda: UNet2DConditionModel.from_single_file(state_dict, subfolder="unet", **common),
                             "UNet", source, config_dir)
    vae = _single_file_part(lambda: AutoencoderKL.from_single_file(state_dict, subfolder="vae", **common),
                            "VAE", source, config_dir)
    text_encoder = _single_file_part(
        lambda: create_diffusers_clip_model_from_ldm(CLIPTextModel, state_dict, subfolder="text_encoder",
                                                     config=str(config_dir), torch_dtype=torch_dtype,
                                                     local_files_only=True),
        "text encoder", source, config_dir)
    return unet.to(device), vae.to(device), text_encoder.to(device)


def save_lora_weights(path: str | Path, *, unet_layers: dict[str, torch.Tensor],
                      text_encoder_layers: dict[str, torch.Tensor] | None = None) -> Path:
    """Write diffusers' pytorch_lora_weights.safetensors (keys prefixed unet. / text_encoder.) into a folder."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    folder = Path(path)
    with _quiet_library():
        StableDiffusionLoraLoaderMixin.save_lora_weights(folder, unet_lora_layers=unet_layers,
                                                         text_encoder_lora_layers=text_encoder_layers or None,
                                                         safe_serialization=True)
    return folder
