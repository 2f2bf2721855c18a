"""The offline CLIP-format BPE tokenizer: files, loading with transformers, round trips, unseen text."""

import json

import pytest
from transformers import CLIPTokenizer, CLIPTokenizerFast

from artdiff.models.tokenizer import BASE_VOCAB_SIZE, build_tokenizer, bytes_to_unicode

CAPTIONS = [
    "A watercolor painting of three red circles",
    "an oil painting of a blue square by nobody",
    "Red circles and blue squares on a yellow background",
    "a pencil sketch of two green triangles",
    "An  ink drawing of  a purple spiral",
] * 20


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(CAPTIONS, out, vocab_size=600, max_length=32)
    return out


def test_files_follow_clip_format(tokenizer_dir):
    assert {p.name for p in tokenizer_dir.iterdir()} == {
        "vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"}
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    merges = (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2"
    # OpenAI's layout: 256 byte symbols, the same with </w>, one entry per merge, then the two specials.
    byte_symbols = list(bytes_to_unicode().values())
    assert [vocab[s] for s in byte_symbols] == list(range(256))
    assert [vocab[s + "</w>"] for s in byte_symbols] == list(range(256, 512))
    assert vocab["<|startoftext|>"] == len(vocab) - 2 and vocab["<|endoftext|>"] == len(vocab) - 1
    assert len(vocab) == 600 and len(merges) - 1 == 600 - BASE_VOCAB_SIZE
    for line in merges[1:]:
        left, right = line.split(" ")
        assert left + right in vocab


@pytest.mark.parametrize("cls", [CLIPTokenizer, CLIPTokenizerFast])
def test_transformers_loads_it_offline(tokenizer_dir, cls):
    tokenizer = cls.from_pretrained(tokenizer_dir, local_files_only=True)
    assert len(tokenizer) == 600 and tokenizer.model_max_length == 32
    assert tokenizer.bos_token_id == 598 and tokenizer.eos_token_id == 599 and tokenizer.pad_token_id == 599


def test_training_captions_round_trip_lower_cased(tokenizer_dir):
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    for caption in CAPTIONS[:5]:
        ids = tokenizer(caption).input_ids
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids, skip_special_tokens=True) == " ".join(caption.lower().split())
    # Frequent training words became single tokens.
    assert tokenizer.tokenize("painting") == ["painting</w>"]


def test_unseen_text_still_tokenizes_byte_by_byte(tokenizer_dir):
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    text = "zebra ünïcode 日本 quartz 7"  # CLIP splits numbers into digits, so one digit round-trips
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    # No unknown token: the unk token is end-of-text, which may appear only at the end.
    assert tokenizer.unk_token_id not in ids[:-1]


def test_punctuation_decodes_to_text_that_re_encodes_the_same(tokenizer_dir):
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    ids = tokenizer("Red circles, blue squares!").input_ids
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded == "red circles , blue squares !"  # CLIP's decode puts a space after every word
    assert tokenizer(decoded).input_ids == ids


def test_training_is_deterministic(tmp_path):
    first = build_tokenizer(CAPTIONS, tmp_path / "a", vocab_size=560)
    second = build_tokenizer(list(reversed(CAPTIONS)), tmp_path / "b", vocab_size=560)
    assert first.vocab_size == second.vocab_size == 560
    assert (tmp_path / "a" / "merges.txt").read_text() == (tmp_path / "b" / "merges.txt").read_text()


def test_small_corpus_gives_a_smaller_vocab_and_bad_sizes_are_refused(tmp_path):
    info = build_tokenizer(["one caption only"], tmp_path, vocab_size=4096)
    assert BASE_VOCAB_SIZE <= info.vocab_size < 4096  # no pair occurs twice in a single caption, mostly
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(CAPTIONS, tmp_path, vocab_size=100)
    with pytest.raises(ValueError, match="no captions"):
        build_tokenizer(["", "  "], tmp_path)
