"""Read, write and apply textual-inversion embeddings (Gal et al. 2022) in A1111, kohya and diffusers formats.

Formats follow research/checkpoint-formats.md §6: A1111 `Embedding.save` (.pt), kohya `emb_params`
(.safetensors), diffusers `learned_embeds` (.safetensors/.bin). Token naming and placement follow
diffusers' `TextualInversionLoaderMixin.load_textual_inversion`.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from artdiff.errors import UserError, first_line
from artdiff.utils.io import atomic_path

PICKLE_SUFFIXES = (".pt", ".bin")
SUFFIXES = (*PICKLE_SUFFIXES, ".safetensors")
A1111_STRING_TO_TOKEN = 265  # the id of "*" in SD 1.x's CLIP vocabulary; A1111 always writes it
OVERRIDE_KEY = "artdiff_override_word"
MAX_ABS_VALUE = 1e4  # CLIP token rows are ~0.01-1; 1e4 * a 1.1 weight still fits half precision (65504)


@dataclass
class TextualInversion:
    """One learned embedding: the token it is written as and its vectors."""

    token: str
    vectors: torch.Tensor  # (n_vectors, dim) float32
    source_format: str  # "a1111-pt" | "a1111-safetensors" | "diffusers"
    step: int | None = None
    override_word: str | None = None  # set when the vectors replace an existing word rather than add a token


# --- reading ---------------------------------------------------------------------------------------------


def load_textual_inversion(path: Path, token: str | None = None) -> TextualInversion:
    """Read an A1111 .pt, kohya/A1111 .safetensors or diffusers learned_embeds file; `token` renames it."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"{path}: expected a textual-inversion file ending in .pt, .bin or .safetensors "
                        f"(A1111 image embeddings are not supported)")
    if not path.is_file():
        raise UserError(f"textual-inversion file {path} does not exist")
    if path.suffix.lower() == ".safetensors":
        data, metadata = _read_safetensors(path)
    else:
        data, metadata = _read_pickle(path), {}
    return _from_state(path, data, metadata, token)


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            return {key: handle.get_tensor(key) for key in handle.keys()}, metadata  # noqa: SIM118
    except Exception as error:  # safetensors raises its own error types for a corrupt header
        raise UserError(f"{path}: not a readable .safetensors file ({first_line(error)})") from None


def _read_pickle(path: Path) -> Any:
    try:
        # weights_only refuses every global outside torch's tensor allowlist, so no code from the file runs.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported operand" not in str(error):  # an opcode it cannot read means garbage, not a refusal
            found = re.search(r"GLOBAL (\S+)", str(error))
            what = f" ({found.group(1)})" if found else ""
            raise UserError(f"{path} holds pickled objects artdiff will not execute{what}; convert it to "
                            ".safetensors where you trust it (e.g. torch.load, then safetensors.torch.save_file)"
                            ) from None
        raise UserError(f"{path}: not a readable PyTorch file; expected an A1111 .pt or diffusers "
                        "learned_embeds.bin") from None
    except Exception as error:  # a truncated zip or a file that is not a torch pickle at all
        raise UserError(f"{path}: not a readable PyTorch file ({first_line(error)}); expected an A1111 .pt "
                        "or diffusers learned_embeds.bin") from None


def _from_state(path: Path, data: Any, metadata: dict[str, str], token: str | None) -> TextualInversion:
    """Pick the layout apart in A1111's and diffusers' branch order."""
    step = _int_or_none(metadata.get("step"))
    if isinstance(data, torch.Tensor):  # a bare tensor: diffusers needs token=, A1111 uses the file name
        layout, name, vectors = "diffusers", path.stem, data
    elif not isinstance(data, dict):
        raise UserError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    elif "string_to_param" in data:
        layout, vectors = "a1111-pt", _a1111_param(path, data["string_to_param"])
        name = data["name"] if isinstance(data.get("name"), str) and data["name"] else path.stem
        step = _int_or_none(data.get("step"))
    elif "clip_l" in data and "clip_g" in data:
        raise UserError(f"{path} is an SDXL embedding; artdiff supports SD 1.x/2.x text encoders")
    elif len(data) == 1 and "emb_params" in data:
        # kohya/"A1111 safetensors": the prompt word is the file name (A1111), or the name artdiff recorded.
        layout, name, vectors = "a1111-safetensors", metadata.get("name") or path.stem, data["emb_params"]
    elif len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        layout, (name, vectors) = "diffusers", next(iter(data.items()))
    else:
        keys = ", ".join(sorted(map(str, data))[:6])
        raise UserError(f"{path}: unknown textual-inversion layout (keys: {keys}); expected A1111 "
                        "'string_to_param', kohya 'emb_params' or a diffusers {token: tensor}")
    return TextualInversion(token or name, _check_vectors(path, vectors), layout, step,
                            metadata.get(OVERRIDE_KEY) or None)


def _a1111_param(path: Path, params: Any) -> Any:
    if not isinstance(params, dict) or not params:
        raise UserError(f"{path}: 'string_to_param' should map '*' to a tensor")
    if "*" in params:
        return params["*"]
    if len(params) == 1:  # A1111 takes the only entry whatever its key
        return next(iter(params.values()))
    raise UserError(f"{path}: 'string_to_param' holds {len(params)} tensors and no '*'; expected one")


def _check_vectors(path: Path | str, vectors: Any) -> torch.Tensor:
    if not isinstance(vectors, torch.Tensor):
        raise UserError(f"{path}: expected a tensor of embedding vectors, found {type(vectors).__name__}")
    if vectors.ndim == 1:  # old sd-concepts-library files store one vector; A1111 and diffusers unsqueeze
        vectors = vectors.unsqueeze(0)
    if vectors.ndim != 2 or vectors.numel() == 0:
        raise UserError(f"{path}: expected embedding vectors of shape (n_vectors, dim), "
                        f"found {tuple(vectors.shape)}")
    vectors = vectors.detach().to(torch.float32).contiguous()
    if not torch.isfinite(vectors).all():
        raise UserError(f"{path}: the embedding holds NaN or infinite values; the file is damaged, retrain or "
                        "re-download it")
    largest = vectors.abs().max().item()
    if largest > MAX_ABS_VALUE:
        raise UserError(f"{path}: the embedding holds a value of magnitude {largest:.3g}, far beyond any trained "
                        f"embedding (at most {MAX_ABS_VALUE:g}), which overflows the text encoder; the file is damaged")
    return vectors


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


# --- infotext (A1111 `TI hashes`) ------------------------------------------------------------------------


def a1111_embedding_name(path: Path) -> str:
    """The name A1111 gives an embedding file in `TI hashes`: the file stem, ':' and ',' removed."""
    # A1111 names .pt/.bin/.safetensors embeddings by file name (not the stored "name"); sd_hijack_clip
    # strips the two characters that would break the "name: hash, ..." list.
    return Path(path).stem.replace(":", "").replace(",", "")


def a1111_embedding_hash(path: Path) -> str:
    """A1111's embedding short hash: the first 12 hex digits of the whole file's sha256 (Embedding.set_hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


# --- writing ---------------------------------------------------------------------------------------------


def save_a1111_pt(path: Path, ti: TextualInversion, *, checkpoint_hash: str | None = None,
                  checkpoint_name: str | None = None) -> Path:
    """Write A1111's `Embedding.save` dict as a torch zip A1111's safe unpickler and torch.load(weights_only) read."""
    path = _check_target(path, PICKLE_SUFFIXES, ti)
    if ti.override_word:
        raise UserError(f"{path}: an embedding that overrides {ti.override_word!r} must be saved as .safetensors "
                        "(A1111's .pt has no field to record the word)")
    data = {"string_to_token": {"*": A1111_STRING_TO_TOKEN}, "string_to_param": {"*": ti.vectors.clone()},
            "name": ti.token, "step": ti.step, "sd_checkpoint": checkpoint_hash,
            "sd_checkpoint_name": checkpoint_name}
    with atomic_path(path) as tmp:
        tmp.write_bytes(_a1111_safe_zip(data))
    return path


def _a1111_safe_zip(data: dict[str, Any]) -> bytes:
    """torch.save's zip with only the members A1111's safe unpickler accepts: data.pkl, data/N and version.

    A1111's check_zip_filenames (modules/safe.py) refuses any other member, and current torch also writes
    .format_version, .storage_alignment, byteorder and .data/serialization_id; torch.load reads the file
    without them (little-endian storages are assumed, as before torch wrote byteorder). data.pkl's globals
    (_rebuild_tensor_v2, FloatStorage, OrderedDict) are all on A1111's allowlist.
    """
    buffer = io.BytesIO()
    torch.save(data, buffer)
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for name in source.namelist():
            _, _, member = name.partition("/")
            if member in ("data.pkl", "version") or re.fullmatch(r"data/\d+", member):
                target.writestr(f"archive/{member}", source.read(name))
    return out.getvalue()


def save_a1111_safetensors(path: Path, ti: TextualInversion) -> Path:
    """Write kohya's `{"emb_params": vectors}` layout, which A1111 loads, with name and step as metadata."""
    path = _check_target(path, (".safetensors",), ti)
    metadata = {"name": ti.token} | _common_metadata(ti)
    with atomic_path(path) as tmp:
        safetensors.torch.save_file({"emb_params": ti.vectors.clone()}, str(tmp), metadata=metadata)
    return path


def save_diffusers_embeds(path: Path, ti: TextualInversion) -> Path:
    """Write `{token: vectors}` with metadata {"format": "pt"}, as diffusers' textual_inversion.py saves."""
    path = _check_target(path, (".safetensors",), ti)
    metadata = {"format": "pt"} | _common_metadata(ti)
    with atomic_path(path) as tmp:
        safetensors.torch.save_file({ti.token: ti.vectors.clone()}, str(tmp), metadata=metadata)
    return path


def _common_metadata(ti: TextualInversion) -> dict[str, str]:
    metadata = {} if ti.step is None else {"step": str(ti.step)}
    return metadata | ({OVERRIDE_KEY: ti.override_word} if ti.override_word else {})


def _check_target(path: Path, suffixes: tuple[str, ...], ti: TextualInversion) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{path}: this format is written to a file ending in {' or '.join(suffixes)}")
    if not ti.token:
        raise UserError(f"{path}: the embedding has no token name")
    _check_vectors(path, ti.vectors)
    return path


# --- applying to a tokenizer and text encoder ------------------------------------------------------------


def token_names(token: str, n: int) -> list[str]:
    """Name the n tokens of a multi-vector embedding as diffusers does: token, token_1, ..., token_{n-1}."""
    return [token] + [f"{token}_{i}" for i in range(1, n)]


def add_textual_inversion(tokenizer: Any, text_encoder: Any, ti: TextualInversion) -> list[str]:
    """Add one token per vector and write its row, giving the ids and rows diffusers' loader gives."""
    names = token_names(ti.token, ti.vectors.shape[0])
    vocab = tokenizer.get_vocab()
    taken = [name for name in names if name in vocab]
    if taken:
        raise UserError(f"token {taken[0]!r} is already in the tokenizer's vocabulary; rename the embedding "
                        "(FILE:TOKEN) or use --override-token to replace an existing word")
    _check_width(text_encoder, ti)
    tokenizer.add_tokens(names)
    ids = tokenizer.convert_tokens_to_ids(names)
    rows = text_encoder.get_input_embeddings().weight.shape[0]
    # diffusers grows the matrix to len(tokenizer); never shrink one that is already larger.
    # New rows are overwritten below, so transformers' mean-resizing statistics would be wasted work.
    text_encoder.resize_token_embeddings(max(rows, len(tokenizer)), mean_resizing=False)
    _write_rows(text_encoder, ids, ti.vectors)
    return names


def expand_tokens(prompt: str, token: str, n: int) -> str:
    """Replace each whole-word `token` by "token token_1 ... token_{n-1}" (diffusers' maybe_convert_prompt)."""
    if n <= 1:
        return prompt
    # CLIP lower-cases prompts and added tokens match case-insensitively, so the expansion must too;
    # the `_\d` guard keeps an already expanded "token_1" from being expanded again.
    before = r"(?<!\w)" if re.match(r"\w", token[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", token[-1]) else r"(?!_\d)"
    pattern = re.compile(before + re.escape(token) + after, re.IGNORECASE)
    replacement = " ".join(token_names(token, n))
    return pattern.sub(lambda _: replacement, prompt)


def override_word(tokenizer: Any, text_encoder: Any, ti: TextualInversion, word: str) -> None:
    """Overwrite the embedding rows of an existing word's tokens with the embedding's vectors."""
    ids = _word_ids(tokenizer, word)
    if len(ids) != ti.vectors.shape[0]:
        raise UserError(f"{word!r} is {len(ids)} token(s) but the embedding {ti.token!r} has "
                        f"{ti.vectors.shape[0]} vector(s); pick a word of {ti.vectors.shape[0]} token(s)")
    if len(set(ids)) != len(ids):
        raise UserError(f"{word!r} repeats a token, so its rows cannot each take one vector; pick another word")
    _check_width(text_encoder, ti)
    _write_rows(text_encoder, ids, ti.vectors)


def prompts_changed_by(tokenizer: Any, word: str, prompts: list[str]) -> list[str]:
    """Return the prompts that use any token of `word`, i.e. those an override of that word changes."""
    # Rows are per token, so a prompt holding only part of a multi-token word changes too.
    ids = set(_word_ids(tokenizer, word))
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"] if prompts else []
    return [prompt for prompt, tokens in zip(prompts, encoded) if ids & set(tokens)]


def _word_ids(tokenizer: Any, word: str) -> list[int]:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError(f"override word {word!r} has no tokens; give a word that appears in prompts")
    return list(ids)


def _check_width(text_encoder: Any, ti: TextualInversion) -> None:
    width = text_encoder.get_input_embeddings().weight.shape[1]
    if ti.vectors.shape[1] != width:
        raise UserError(f"embedding {ti.token!r} has vectors of width {ti.vectors.shape[1]} but the text encoder's "
                        f"token embedding is {width} wide (768: SD 1.x, 1024: SD 2.x); use a matching model")


def _write_rows(text_encoder: Any, ids: list[int], vectors: torch.Tensor) -> None:
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[torch.tensor(ids, device=weight.device)] = vectors.to(weight.device, weight.dtype)

