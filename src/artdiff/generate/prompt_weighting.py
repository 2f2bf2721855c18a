"""A1111 prompt attention ("(word:1.3)", "[word]", BREAK) and prompts longer than CLIP's 75 tokens.

Follows AUTOMATIC1111 stable-diffusion-webui: `modules/prompt_parser.py::parse_prompt_attention`,
`modules/sd_hijack_clip.py` (TextConditionalModel.tokenize_line / process_tokens) and
`modules/sd_emphasis.py::EmphasisOriginal`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from artdiff.errors import UserError

ROUND_MULTIPLIER = 1.1  # "(x)"
SQUARE_MULTIPLIER = 1 / 1.1  # "[x]"
BREAK = ("BREAK", -1.0)  # A1111's chunk-break marker in the parsed list
# One alternative per token kind, in A1111's order: escapes, a lone backslash, brackets, ":weight)", text, ":".
_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|
\(|\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|]|
[^\\()\[\]:]+|
:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


@dataclass(frozen=True)
class PromptChunk:
    """One CLIP window: BOS, chunk_length tokens (padded), EOS, and one weight per position."""

    ids: list[int]
    weights: list[float]


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) runs with A1111's emphasis rules; ("BREAK", -1.0) marks a chunk break."""
    runs: list[list[Any]] = []
    round_open: list[int] = []  # where each unclosed "(" started in `runs`
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for run in runs[start:]:
            if tuple(run) != BREAK:  # a BREAK inside brackets stays a break (A1111 turns it into a word)
                run[1] *= factor

    for match in _ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            runs.append([piece[1:], 1.0])  # "\(" is a literal "("; a lone "\" is dropped, as in A1111
        elif piece == "(":
            round_open.append(len(runs))
        elif piece == "[":
            square_open.append(len(runs))
        elif weight is not None and round_open:
            multiply(round_open.pop(), _weight(weight, text))
        elif piece == ")" and round_open:
            multiply(round_open.pop(), ROUND_MULTIPLIER)
        elif piece == "]" and square_open:
            multiply(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i:
                    runs.append(list(BREAK))
                runs.append([part, 1.0])
    # Brackets left open apply to the end of the prompt.
    for start in round_open:
        multiply(start, ROUND_MULTIPLIER)
    for start in square_open:
        multiply(start, SQUARE_MULTIPLIER)
    if not runs:
        runs = [["", 1.0]]
    merged = [runs[0]]
    for run in runs[1:]:  # exact float equality, as A1111 merges; a BREAK never merges into text
        if run[1] == merged[-1][1] and BREAK not in (tuple(run), tuple(merged[-1])):
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(piece, float(weight)) for piece, weight in merged]


def _weight(number: str, prompt: str) -> float:
    try:
        return float(number)
    except ValueError:  # "[.\d]+" also matches "1.2.3"; A1111 crashes there
        raise UserError(f"malformed weight {number!r} in prompt {prompt!r}: write (word:1.3)") from None


def tokenize_weighted(tokenizer: Any, text: str, *, chunk_length: int = 75,
                      comma_backtrack: int = 20) -> list[PromptChunk]:
    """Tokenize a weighted prompt into windows of chunk_length + 2 ids, moving text after a late comma on."""
    parsed = parse_prompt_attention(text)
    comma = tokenizer.get_vocab().get(",</w>")
    pieces = tokenizer([piece for piece, _ in parsed], truncation=False, add_special_tokens=False,
                       verbose=False)["input_ids"]  # no "longer than 77" warning: chunking handles that
    chunks: list[PromptChunk] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal ids, weights, last_comma
        chunks.append(_chunk(tokenizer, ids, weights, chunk_length))
        ids, weights, last_comma = [], [], -1

    for tokens, (piece, weight) in zip(pieces, parsed):
        if (piece, weight) == BREAK:
            close()
            continue
        for token in tokens:
            if token == comma:
                last_comma = len(ids)
            elif (comma_backtrack and len(ids) == chunk_length and last_comma != -1
                  and len(ids) - last_comma <= comma_backtrack):
                # The window is full: end it after the last comma and carry the words after it over.
                cut = last_comma + 1
                carry_ids, carry_weights = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                close()
                ids, weights = carry_ids, carry_weights
            if len(ids) == chunk_length:
                close()
            ids.append(token)
            weights.append(weight)
    if ids or not chunks:
        close()
    return chunks


def _chunk(tokenizer: Any, ids: list[int], weights: list[float], chunk_length: int) -> PromptChunk:
    """Frame the tokens as BOS, tokens, EOS, padding (A1111 pads SD 2.x after the first EOS, as diffusers does)."""
    padding = chunk_length - len(ids)
    return PromptChunk([tokenizer.bos_token_id, *ids, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * padding,
                       [1.0, *weights, 1.0] + [1.0] * padding)


def empty_chunk(tokenizer: Any, *, chunk_length: int = 75) -> PromptChunk:
    """The chunk of an empty prompt: BOS, EOS, padding; used to even out prompt lengths."""
    return _chunk(tokenizer, [], [], chunk_length)


def check_clip_skip(text_encoder: Any, clip_skip: int) -> None:
    """Refuse a clip skip that is not a whole number from 1 (the last layer) to the encoder's layer count."""
    layers = text_encoder.config.num_hidden_layers
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or not 1 <= clip_skip <= layers:
        # N = layers still runs the first layer; N = layers + 1 would be the token embeddings alone.
        raise UserError(f"--clip-skip {clip_skip}: give a whole number from 1 (the last layer, A1111's default) "
                        f"to {layers} (this text encoder's layer count)")


def encode_weighted(text_encoder: Any, chunks: list[PromptChunk], *, clip_skip: int = 1) -> torch.Tensor:
    """Encode each chunk, weight its token vectors and restore its mean (A1111 EmphasisOriginal); (1, 77*k, D).

    clip_skip counts as A1111's "Clip skip": 1 is the last layer, 2 the one before it (diffusers' clip_skip=1).
    """
    check_clip_skip(text_encoder, clip_skip)
    device = text_encoder.get_input_embeddings().weight.device
    zs = []
    for chunk in chunks:
        ids = torch.tensor([chunk.ids], dtype=torch.long, device=device)  # (1, 77)
        out = text_encoder(input_ids=ids, output_hidden_states=clip_skip > 1)
        if clip_skip > 1:
            # transformers 5 puts final_layer_norm on CLIPTextModel itself; 4.x on its .text_model.
            final_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
            z = final_norm(out.hidden_states[-clip_skip])
        else:
            z = out.last_hidden_state  # (1, 77, D)
        if any(w != 1.0 for w in chunk.weights):  # skipped otherwise, so unweighted prompts match the plain encoder
            original_mean = z.mean()
            z = z * torch.tensor(chunk.weights, dtype=z.dtype, device=device)[None, :, None]
            # A1111: "restoring original mean is likely not correct, but it seems to work well".
            z = z * (original_mean / z.mean())
        zs.append(z)
    return torch.cat(zs, dim=1)


def encode_prompt_pair(text_encoder: Any, tokenizer: Any, prompt: str, negative: str, *,
                       clip_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode a prompt and its negative, padding the shorter with empty chunks so both batch for CFG."""
    cond, uncond = tokenize_weighted(tokenizer, prompt), tokenize_weighted(tokenizer, negative)
    count = max(len(cond), len(uncond))
    cond += [empty_chunk(tokenizer)] * (count - len(cond))
    uncond += [empty_chunk(tokenizer)] * (count - len(uncond))
    return (encode_weighted(text_encoder, cond, clip_skip=clip_skip),
            encode_weighted(text_encoder, uncond, clip_skip=clip_skip))
