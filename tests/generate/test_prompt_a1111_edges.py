"""A1111 prompt edge cases: BREAK inside brackets, embeddings at a window's end, absurd weights, the mean restore."""

import copy

import pytest
import torch

from artdiff.errors import UserError
from artdiff.generate.prompt_weighting import (
    encode_prompt_pair,
    encode_weighted,
    parse_prompt_attention,
    tokenize_weighted,
)
from sd_fixtures import tiny_sd_pipeline


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_sd_pipeline(tmp_path_factory.mktemp("edges"))


def ids_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("text, expected", [
    # A1111 splits BREAK out of the text first and the bracket then multiplies its -1 marker too: the marker
    # is no longer ("BREAK", -1), so tokenize_line encodes the word "BREAK" at the negated weight.
    ("(a BREAK b:1.2)", [("a", 1.2), ("BREAK", -1.2), ("b", 1.2)]),
    ("(a BREAK b)", [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]),
    ("(x BREAK:-1)", [("x", -1.0), ("BREAK", 1.0), ("", -1.0)]),
    ("(a BREAK b:1)", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),  # x1 leaves a real break
])
def test_break_inside_brackets_is_parsed_as_a1111_parses_it(text, expected):
    assert parse_prompt_attention(text) == expected


def test_a_multiplied_break_is_the_word_not_a_window_break(pipe):
    tokenizer = pipe.tokenizer
    (chunk,) = tokenize_weighted(tokenizer, "(a BREAK b:1.2)")
    a, brk, b = ids_of(tokenizer, "a"), ids_of(tokenizer, "BREAK"), ids_of(tokenizer, "b")
    n = len(a + brk + b)
    assert chunk.ids[1:1 + n] == a + brk + b
    assert chunk.weights[1:1 + n] == [1.2] * len(a) + [-1.2] * len(brk) + [1.2] * len(b)
    assert len(tokenize_weighted(tokenizer, "(a BREAK b:1)")) == 2  # weight exactly -1: still a break


def test_a_multi_vector_embedding_that_would_cross_the_window_moves_whole(pipe):
    tokenizer = copy.deepcopy(pipe.tokenizer)
    names = ["<emb>", "<emb>_1", "<emb>_2", "<emb>_3"]  # as add_textual_inversion names 4 vectors
    tokenizer.add_tokens(names)
    group = tokenizer.convert_tokens_to_ids(names)
    (cat,), (dog,) = ids_of(tokenizer, "cat"), ids_of(tokenizer, "chair")
    first, second = tokenize_weighted(tokenizer, "cat " * 73 + " ".join(names) + " chair")
    assert first.ids[1:74] == [cat] * 73 and first.ids[74] == tokenizer.eos_token_id
    assert not set(group) & set(first.ids)  # nothing of it stays behind: 73 + 4 > 75
    assert second.ids[1:6] == [*group, dog]
    # One that fits stays where it is (71 + 4 = 75), and a single added token is an ordinary token.
    fits, *_ = tokenize_weighted(tokenizer, "cat " * 71 + " ".join(names) + " chair")
    assert fits.ids[72:76] == group
    tokenizer.add_tokens(["<one>"])
    (alone, rest) = tokenize_weighted(tokenizer, "cat " * 74 + "<one> chair")
    assert alone.ids[75] == tokenizer.convert_tokens_to_ids("<one>") and rest.ids[1] == dog


@pytest.mark.parametrize("prompt, match", [
    ("(" * 5000 + "a", "nests brackets 257 deep"),
    ("([" * 3000 + "a", "nests brackets 257 deep"),
    ("(a:" + "9" * 400 + ")", "weight of 'a' comes to inf"),
    ("(((a:900):900)", "weight of 'a' comes to 891000"),
    ("(a:-2000)", "weight of 'a' comes to -2000"),
])
def test_absurd_weights_and_nesting_are_one_line_naming_the_prompt(prompt, match):
    # Refused as the bracket opens, so 5,000 of them cost no 5,000-deep walk (the parser never recurses).
    with pytest.raises(UserError, match=match) as caught:
        parse_prompt_attention(prompt)
    message = str(caught.value)
    assert "\n" not in message and "prompt '" in message and len(message) < 400


def test_deep_but_legal_nesting_parses(pipe):
    assert parse_prompt_attention("(" * 20 + "a" + ")" * 20) == [("a", pytest.approx(1.1 ** 20))]
    assert parse_prompt_attention("([" * 128 + "a")[0][1] == pytest.approx(1.0)


def test_an_emphasised_prompt_on_a_zero_mean_encoder_stays_finite(pipe, capsys):
    # A fresh LayerNorm (bias 0, as in a random text encoder) makes every output vector's mean 0, so A1111's
    # restore z * (mean / new_mean) divides rounding noise by rounding noise; all-zero output gives 0 / 0.
    tokenizer = pipe.tokenizer
    chunks = tokenize_weighted(tokenizer, "(dark:1.5), [moody]")
    plain = encode_weighted(pipe.text_encoder, tokenize_weighted(tokenizer, "dark, moody"))
    weights = torch.tensor(chunks[0].weights)[None, :, None]
    got = encode_weighted(pipe.text_encoder, chunks)
    assert torch.allclose(got, plain * weights, rtol=1e-5, atol=1e-6)  # the weights alone: "No norm"
    assert "mean" in capsys.readouterr().err

    dead = copy.deepcopy(pipe.text_encoder)
    with torch.no_grad():
        dead.final_layer_norm.weight.zero_()
    cond, uncond = encode_prompt_pair(dead, tokenizer, "a cat", "(dark:1.5)")
    assert torch.isfinite(uncond).all() and torch.isfinite(cond).all()


def test_a_non_finite_encoding_is_one_line_naming_the_prompt(pipe):
    broken = copy.deepcopy(pipe.text_encoder)
    with torch.no_grad():
        broken.get_input_embeddings().weight[ids_of(pipe.tokenizer, "dog")[0]] = float("nan")
    with pytest.raises(UserError, match="negative prompt 'a dog' encodes to NaN or infinite values"):
        encode_prompt_pair(broken, pipe.tokenizer, "a cat", "a dog")
