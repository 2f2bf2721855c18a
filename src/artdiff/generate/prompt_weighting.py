"""A1111 prompt attention ("(word:1.3)", "[word]", BREAK) and prompts longer than CLIP's 75 tokens.

Follows AUTOMATIC1111 stable-diffusion-webui: `modules/prompt_parser.py::parse_prompt_attention`,
`modules/sd_hijack_clip.py` (TextConditionalModel.tokenize_line / process_tokens) and
`modules/sd_emphasis.py::EmphasisOriginal`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

import torch

from artdiff.errors import UserError

ROUND_MULTIPLIER = 1.1  # "(x)"
SQUARE_MULTIPLIER = 1 / 1.1  # "[x]"
BREAK = ("BREAK", -1.0)  # A1111's chunk-break marker in the parsed list
MAX_DEPTH = 256  # brackets open at once; A1111 has no limit, and 1.1**5000 is inf
MEAN_NOISE = 1e-3  # a window mean below this fraction of its mean |z| is rounding noise, not a signal to restore
MAX_WEIGHT = 1000.0  # the largest |weight|: beyond it a CLIP vector (|z| up to ~30) overflows half precision
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
    """Split a prompt into (text, weight) runs with A1111's emphasis rules; ("BREAK", -1.0) marks a chunk break.

    As in A1111, brackets multiply the BREAK marker too: inside `(a BREAK b:1.2)` it becomes ("BREAK", -1.2),
    which is no longer a break but the word "BREAK" at weight -1.2. Nesting deeper than MAX_DEPTH and weights
    beyond +-MAX_WEIGHT (A1111 has no limit; 1.1**5000 is inf) are one-line errors.
    """
    runs: list[list[Any]] = []
    round_open: list[int] = []  # where each unclosed "(" started in `runs`
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    for match in _ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            runs.append([piece[1:], 1.0])  # "\(" is a literal "("; a lone "\" is dropped, as in A1111
        elif piece in "([":
            (round_open if piece == "(" else square_open).append(len(runs))
            if len(round_open) + len(square_open) > MAX_DEPTH:  # bounds the work: each run is multiplied once per level
                raise UserError(f"prompt {_shown(text)} nests brackets {MAX_DEPTH + 1} deep (at most {MAX_DEPTH}); "
                                "close them, or write a literal bracket as \\( or \\[")
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
    for run in runs[1:]:  # exact float equality whatever the text, as A1111 merges
        if run[1] == merged[-1][1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    for piece, weight in merged:
        if not abs(weight) <= MAX_WEIGHT:  # `not <=` also catches NaN
            raise UserError(f"prompt {_shown(text)}: the weight of {piece.strip()[:40]!r} comes to {weight:g}; "
                            f"weights must stay within +-{MAX_WEIGHT:g} (each ( multiplies by 1.1)")
    return [(piece, float(weight)) for piece, weight in merged]


def _shown(prompt: str) -> str:
    """The prompt for a one-line message, shortened in the middle when long."""
    return repr(prompt if len(prompt) <= 80 else prompt[:50] + " ... " + prompt[-20:])


def _weight(number: str, prompt: str) -> float:
    try:
        return float(number)
    except ValueError:  # "[.\d]+" also matches "1.2.3"; A1111 crashes there
        raise UserError(f"malformed weight {number!r} in prompt {_shown(prompt)}: write (word:1.3)") from None


def _embedding_groups(tokenizer: Any) -> dict[int, list[int]]:
    """First id -> all ids of each multi-vector embedding added as token, token_1, ... (token_names' naming)."""
    added = tokenizer.get_added_vocab()
    groups = {}
    for name, first in added.items():
        ids, i = [first], 1
        while f"{name}_{i}" in added:
            ids.append(added[f"{name}_{i}"])
            i += 1
        if len(ids) > 1:
            groups[first] = ids
    return groups


def tokenize_weighted(tokenizer: Any, text: str, *, chunk_length: int = 75,
                      comma_backtrack: int = 20) -> list[PromptChunk]:
    """Tokenize a weighted prompt into windows of chunk_length + 2 ids, moving text after a late comma on.

    A multi-vector embedding that would cross a window's end starts the next window whole, as A1111's
    tokenize_line places it (EmbeddingDatabase.find_embedding_at_position).
    """
    parsed = parse_prompt_attention(text)
    comma = tokenizer.get_vocab().get(",</w>")
    groups = _embedding_groups(tokenizer)
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
        position = 0
        while position < len(tokens):
            token = tokens[position]
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
            group = groups.get(token)
            if group is None or tokens[position:position + len(group)] != group:
                group = [token]
            elif len(ids) + len(group) > chunk_length:
                close()
            ids += group
            weights += [weight] * len(group)
            position += len(group)
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
    zs, unrestored = [], 0
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
            z, restored = _emphasise(z, chunk.weights)
            unrestored += not restored
        zs.append(z)
    if unrestored:
        print(f"artdiff: warning: {unrestored} weighted prompt window(s) have a mean of ~0 (a text encoder whose final "
              "norm has no bias, e.g. a random one), so their weights apply without A1111's mean restore "
              "('No norm' emphasis)", file=sys.stderr)
    return torch.cat(zs, dim=1)


def _emphasise(z: torch.Tensor, weights: list[float]) -> tuple[torch.Tensor, bool]:
    """Scale each token vector by its weight, then restore the window's mean (A1111 EmphasisOriginal) if it is sound.

    The restore z * (mean / new_mean) divides by a mean that is rounding noise when the encoder's vectors have
    mean ~0 (0 / 0 when they are all zero); then the weights alone are applied (A1111's "No norm").
    Computed in float32, as A1111's float32 multipliers promote it, and returned in z's dtype.
    """
    z32 = z.float()
    scaled = z32 * torch.tensor(weights, dtype=torch.float32, device=z.device)[None, :, None]  # (1, 77, D)
    original_mean, new_mean = z32.mean(), scaled.mean()
    ratio = original_mean / new_mean
    noise = MEAN_NOISE * torch.minimum(z32.abs().mean(), scaled.abs().mean())
    # A1111: "restoring original mean is likely not correct, but it seems to work well".
    restored = bool(torch.isfinite(ratio) and torch.minimum(original_mean.abs(), new_mean.abs()) > noise)
    return (scaled * ratio if restored else scaled).to(z.dtype), restored


def encode_prompt_pair(text_encoder: Any, tokenizer: Any, prompt: str, negative: str, *,
                       clip_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode a prompt and its negative, padding the shorter with empty chunks so both batch for CFG."""
    cond, uncond = tokenize_weighted(tokenizer, prompt), tokenize_weighted(tokenizer, negative)
    count = max(len(cond), len(uncond))
    cond += [empty_chunk(tokenizer)] * (count - len(cond))
    uncond += [empty_chunk(tokenizer)] * (count - len(uncond))
    encoded = []
    for what, text, chunks in (("prompt", prompt, cond), ("negative prompt", negative, uncond)):
        z = encode_weighted(text_encoder, chunks, clip_skip=clip_skip)
        if not torch.isfinite(z).all():  # else sampling would end in a black image
            raise UserError(f"the {what} {_shown(text)} encodes to NaN or infinite values: lower its weights, or check "
                            "the text encoder and any --embedding for damaged values")
        encoded.append(z)
    return encoded[0], encoded[1]
