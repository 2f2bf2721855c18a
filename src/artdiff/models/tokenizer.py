"""Train a byte-level BPE tokenizer offline and save it in OpenAI CLIP's vocab.json/merges.txt format."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE

from artdiff.utils.io import atomic_write_json, atomic_write_text

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# CLIP's word pattern (openai/CLIP simple_tokenizer.py, also transformers' CLIPTokenizer).
CLIP_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
BASE_VOCAB_SIZE = 2 * 256 + 2  # every byte, every byte ending a word, and the two specials
MAX_VOCAB_SIZE = 49408  # OpenAI CLIP's size; transformers' slow reader also caps merges.txt there
TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")


@dataclass(frozen=True)
class TokenizerInfo:
    """What a model built for a tokenizer needs to know about it."""

    path: Path
    vocab_size: int
    bos_token_id: int
    eos_token_id: int  # CLIP pads with end-of-text too, so this is also the pad id
    max_length: int


def bytes_to_unicode() -> dict[int, str]:
    """Map every byte to a printable character, in GPT-2/CLIP's order (openai/CLIP simple_tokenizer.py)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def _clip_pipeline() -> Tokenizer:
    """An empty BPE with transformers' CLIPTokenizer normaliser and pre-tokeniser, so training splits words
    exactly as loading will."""
    tokenizer = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix=END_OF_WORD))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    return tokenizer


def train_merges(captions: Iterable[str], *, vocab_size: int, min_frequency: int = 2) -> list[tuple[str, str]]:
    """Learn BPE merges (Sennrich et al. 2016) on CLIP-style byte-level words, in priority order.

    The most frequent pair is merged first; equal counts go to the smaller pair of strings, so the result
    depends on the captions alone (the `tokenizers` trainer breaks ties by hash order, which differs between
    processes).
    """
    words = _word_counts(captions)
    symbols = [list(word[:-1]) + [word[-1] + END_OF_WORD] for word in words]
    counts = list(words.values())
    pairs: dict[tuple[str, str], int] = {}
    where: dict[tuple[str, str], set[int]] = {}
    for index, parts in enumerate(symbols):
        for pair in zip(parts, parts[1:]):
            pairs[pair] = pairs.get(pair, 0) + counts[index]
            where.setdefault(pair, set()).add(index)
    heap = [(-count, pair) for pair, count in pairs.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    made = set(bytes_to_unicode().values())
    made |= {b + END_OF_WORD for b in made}
    while heap and len(made) < vocab_size - 2:
        negative, pair = heapq.heappop(heap)
        current = pairs.get(pair, 0)
        if current != -negative:  # a stale entry: counts fell since it was pushed
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
        if current < min_frequency:
            break
        merges.append(pair)
        made.add(pair[0] + pair[1])
        changed = _merge_pair(pair, symbols, counts, pairs, where)
        for other in changed:
            if pairs.get(other, 0) > 0:
                heapq.heappush(heap, (-pairs[other], other))
    return merges


def _word_counts(captions: Iterable[str]) -> dict[str, int]:
    """Byte-level words of the captions (CLIP's normaliser and split) and how often each occurs."""
    pipeline = _clip_pipeline()
    words: dict[str, int] = {}
    for text in captions:
        for word, _ in pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(text)):
            if word:
                words[word] = words.get(word, 0) + 1
    return words


def _merge_pair(pair: tuple[str, str], symbols: list[list[str]], counts: list[int],
                pairs: dict[tuple[str, str], int], where: dict[tuple[str, str], set[int]]) -> set[tuple[str, str]]:
    """Merge `pair` in every word holding it, left to right; update the pair counts; return the pairs that grew."""
    grew: set[tuple[str, str]] = set()
    merged = pair[0] + pair[1]
    for index in sorted(where.pop(pair, ())):
        old = symbols[index]
        new, i = [], 0
        while i < len(old):
            if i + 1 < len(old) and (old[i], old[i + 1]) == pair:
                new.append(merged)
                i += 2
            else:
                new.append(old[i])
                i += 1
        for other in zip(old, old[1:]):
            pairs[other] -= counts[index]
        for other in zip(new, new[1:]):
            pairs[other] = pairs.get(other, 0) + counts[index]
            where.setdefault(other, set()).add(index)
            grew.add(other)
        for other in set(zip(old, old[1:])) - set(zip(new, new[1:])):
            where.get(other, set()).discard(index)
        symbols[index] = new
    pairs.pop(pair, None)
    return grew


def clip_vocab(merges: list[tuple[str, str]], *, vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Lay out a vocabulary as OpenAI CLIP does: bytes, bytes + </w>, merge results, then the two specials.

    Merges are cut so the vocabulary holds at most `vocab_size` entries; a prefix of a priority-ordered
    merge list is itself a valid BPE.
    """
    base = list(bytes_to_unicode().values())
    tokens = base + [b + END_OF_WORD for b in base]
    seen = set(tokens)
    kept = []
    for left, right in merges:
        if len(tokens) >= vocab_size - 2:
            break
        kept.append((left, right))
        merged = left + right
        if merged not in seen:  # two merges may build the same string; it keeps its first id
            seen.add(merged)
            tokens.append(merged)
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {token: index for index, token in enumerate(tokens)}, kept


def build_tokenizer(captions: Iterable[str], out_dir: str | Path, *, vocab_size: int = 4096,
                    max_length: int = 77, min_frequency: int = 2) -> TokenizerInfo:
    """Train a CLIP-format byte-level BPE on captions and save a folder transformers' CLIPTokenizer loads offline.

    Text is NFC-normalised, whitespace-collapsed and lower-cased, as transformers' CLIPTokenizer does.
    The vocabulary has at most `vocab_size` entries (fewer when no pair occurs `min_frequency` times);
    any unseen text still tokenizes, byte by byte.
    """
    if not BASE_VOCAB_SIZE <= vocab_size <= MAX_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be between {BASE_VOCAB_SIZE} (bytes and specials) and "
                         f"{MAX_VOCAB_SIZE}, got {vocab_size}")
    captions = [text for text in captions if text and text.strip()]
    if not captions:
        raise ValueError("no captions to train the tokenizer on; pass a non-empty list of texts")
    merges = train_merges(captions, vocab_size=vocab_size, min_frequency=min_frequency)
    vocab, merges = clip_vocab(merges, vocab_size=vocab_size)
    out_dir = Path(out_dir)
    write_clip_tokenizer(out_dir, vocab, merges, max_length=max_length)
    return TokenizerInfo(path=out_dir, vocab_size=len(vocab), bos_token_id=vocab[BOS_TOKEN],
                         eos_token_id=vocab[EOS_TOKEN], max_length=max_length)


def write_clip_tokenizer(out_dir: Path, vocab: dict[str, int], merges: list[tuple[str, str]], *,
                         max_length: int = 77) -> None:
    """Write vocab.json, merges.txt ("#version: 0.2"), special_tokens_map.json and tokenizer_config.json."""
    atomic_write_text(out_dir / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    atomic_write_text(out_dir / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    specials = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "pad_token": EOS_TOKEN}
    atomic_write_json(out_dir / "special_tokens_map.json", specials)
    atomic_write_json(out_dir / "tokenizer_config.json", {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        **specials,
    })
