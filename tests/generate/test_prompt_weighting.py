"""A1111 prompt attention and long prompts: parser cases from A1111, chunking, parity with diffusers."""

import copy

import pytest
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTokenizer

from artdiff.errors import UserError
from artdiff.generate.prompt_weighting import (
    empty_chunk,
    encode_prompt_pair,
    encode_weighted,
    parse_prompt_attention,
    tokenize_weighted,
)
from sd_fixtures import tiny_sd_pipeline

BREAK = ("BREAK", -1.0)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_sd_pipeline(tmp_path_factory.mktemp("pw"))


@pytest.fixture(scope="module")
def tokenizer(pipe):
    return pipe.tokenizer


def ids_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("text, expected", [
    # The examples of A1111's parse_prompt_attention docstring, with their outputs.
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
    # Further cases worked through A1111's rules.
    ("", [("", 1.0)]),
    ("unbalanced[[[", [("unbalanced", 1.0)]),  # brackets opened at the end weight nothing
    ("[unbalanced", [("unbalanced", 1 / 1.1)]),
    ("unbalanced)))", [("unbalanced)))", 1.0)]),  # closers without openers are text
    ("a \\\\ b \\x", [("a \\ b x", 1.0)]),  # "\\" is a backslash; a lone "\" is dropped
    ("(a:1.5) b:2", [("a", 1.5), (" b:2", 1.0)]),  # ":2" outside brackets is text
    ("[a:b:0.5]", [("a:b:0.5", 1 / 1.1)]),  # prompt editing is not this function's business
    ("(a (b:2) c)", [("a ", 1.1), ("b", 2.2), (" c", 1.1)]),
    ("(a:-1)", [("a", -1.0)]),
    ("a BREAK b", [("a", 1.0), BREAK, ("b", 1.0)]),
    ("BREAK", [("", 1.0), BREAK, ("", 1.0)]),
    ("a BREAKfast", [("a BREAKfast", 1.0)]),  # BREAK is a whole word, upper case
    ("a break b", [("a break b", 1.0)]),
])
def test_parse_prompt_attention_follows_a1111(text, expected):
    assert parse_prompt_attention(text) == expected


def test_a_malformed_weight_is_one_user_error():
    with pytest.raises(UserError, match="malformed weight '1.2.3'"):
        parse_prompt_attention("(a:1.2.3)")


@pytest.mark.parametrize("prompt", ["a painting of a lighthouse by the sea", "",
                                    "portrait of a woman with red hair, oil sketch"])
def test_unweighted_short_prompt_is_bit_identical_to_diffusers(pipe, prompt):
    expected = pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)[0]
    got = encode_weighted(pipe.text_encoder, tokenize_weighted(pipe.tokenizer, prompt))
    assert got.shape == expected.shape == (1, 77, 32) and torch.equal(got, expected)


@pytest.mark.parametrize("clip_skip", [1, 2])
def test_clip_skip_n_is_diffusers_encode_prompt_clip_skip_n_minus_1(pipe, clip_skip):
    prompt = "watercolor cat sitting on a chair"
    text_encoder = copy.deepcopy(pipe.text_encoder)
    # diffusers' encode_prompt reaches for `.text_model.final_layer_norm`, which transformers 5 flattened into
    # CLIPTextModel; a plain attribute (not a registered submodule) lets its own code run unchanged.
    if not hasattr(text_encoder, "text_model"):
        object.__setattr__(text_encoder, "text_model", text_encoder)
    reference = StableDiffusionPipeline(**(pipe.components | {"text_encoder": text_encoder}))
    expected = reference.encode_prompt(prompt, device="cpu", num_images_per_prompt=1,
                                       do_classifier_free_guidance=True, negative_prompt="dark",
                                       clip_skip=None if clip_skip == 1 else clip_skip - 1)
    got = encode_prompt_pair(pipe.text_encoder, pipe.tokenizer, prompt, "dark", clip_skip=clip_skip)
    assert torch.equal(got[0], expected[0])
    if clip_skip > 1:
        assert not torch.equal(got[0], encode_prompt_pair(pipe.text_encoder, pipe.tokenizer, prompt, "dark")[0])


@pytest.mark.parametrize("clip_skip", [0, -1, 3, 2.0, True])
def test_a_clip_skip_outside_the_layers_is_one_user_error(pipe, clip_skip):
    # The tiny encoder has 2 layers: 3 would be the token embeddings with no layer run at all.
    with pytest.raises(UserError, match=r"--clip-skip .*from 1 .* to 2 \(this text encoder's layer count\)"):
        encode_prompt_pair(pipe.text_encoder, pipe.tokenizer, "a cat", "", clip_skip=clip_skip)


def test_empty_prompt_is_one_chunk_of_bos_eos_padding(tokenizer):
    (chunk,) = tokenize_weighted(tokenizer, "")
    assert chunk == empty_chunk(tokenizer)
    assert chunk.ids == [tokenizer.bos_token_id, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * 75
    assert chunk.weights == [1.0] * 77


def test_a_100_token_prompt_gives_two_chunks(pipe, tokenizer):
    words = "a painting of a lighthouse by the sea in oil colourful portrait of a woman with red hair"
    tokens = ids_of(tokenizer, words)
    prompt = " ".join([words] * (100 // len(tokens) + 1))
    all_ids = ids_of(tokenizer, prompt)
    assert 100 <= len(all_ids) <= 150 and tokenizer.get_vocab()[",</w>"] not in all_ids
    chunks = tokenize_weighted(tokenizer, prompt)
    assert [len(c.ids) for c in chunks] == [77, 77]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert chunks[0].ids == [bos, *all_ids[:75], eos]
    assert chunks[1].ids == [bos, *all_ids[75:], eos] + [tokenizer.pad_token_id] * (150 - len(all_ids))
    z = encode_weighted(pipe.text_encoder, chunks)
    assert z.shape == (1, 154, 32)
    assert torch.equal(z[:, 77:], encode_weighted(pipe.text_encoder, chunks[1:]))


@pytest.mark.parametrize("before, moved", [(60, True), (55, True), (54, False), (40, False)])
def test_a_full_chunk_breaks_after_a_comma_within_the_backtrack_window(tokenizer, before, moved):
    (cat,), comma, eos = ids_of(tokenizer, "cat"), tokenizer.get_vocab()[",</w>"], tokenizer.eos_token_id
    prompt = " ".join(["cat"] * before) + ", " + " ".join(["cat"] * (90 - before))
    all_ids = ids_of(tokenizer, prompt)
    assert all_ids == [cat] * before + [comma] + [cat] * (90 - before)
    first, second = tokenize_weighted(tokenizer, prompt)
    if moved:  # the comma is at most 20 tokens from the end of the full window: cut after it, pad
        assert first.ids == [tokenizer.bos_token_id, *all_ids[:before + 1], eos] + [eos] * (74 - before)
        assert second.ids[1:91 - before] == [cat] * (90 - before) and second.ids[91 - before] == eos
    else:
        assert first.ids == [tokenizer.bos_token_id, *all_ids[:75], eos]
        assert second.ids[1:17] == all_ids[75:] and second.ids[17] == eos
    plain = tokenize_weighted(tokenizer, prompt, comma_backtrack=0)
    assert plain[0].ids == [tokenizer.bos_token_id, *all_ids[:75], eos]


def test_break_starts_a_new_chunk(tokenizer):
    first, second = tokenize_weighted(tokenizer, "a cat BREAK a dog")
    for chunk, text in ((first, "a cat"), (second, "a dog")):
        framed = [tokenizer.bos_token_id, *ids_of(tokenizer, text), tokenizer.eos_token_id]
        assert chunk.ids[:len(framed)] == framed
    assert len(tokenize_weighted(tokenizer, "a cat BREAK")) == 1  # nothing after it: no empty chunk


def test_padding_uses_the_pad_id_after_eos_like_sd2(pipe, tmp_path):
    pipe.tokenizer.save_pretrained(tmp_path / "tok")
    sd2_style = CLIPTokenizer.from_pretrained(tmp_path / "tok", pad_token="!")  # SD 2.x pads with "!" (id 0)
    assert sd2_style.pad_token_id != sd2_style.eos_token_id
    prompt = "a cat sitting on a chair"
    (chunk,) = tokenize_weighted(sd2_style, prompt)
    assert chunk.ids == sd2_style(prompt, padding="max_length", max_length=77)["input_ids"]  # diffusers' ids


def test_weights_scale_token_vectors_then_restore_the_mean(pipe, tokenizer):
    # A fresh LayerNorm has zero bias, so every output vector would have mean 0 and the mean restoration
    # would divide noise by noise; a trained CLIP's final norm has a bias, so give the copy one.
    text_encoder = copy.deepcopy(pipe.text_encoder)
    bias = 0.3 + 0.1 * torch.randn(32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        text_encoder.final_layer_norm.bias.copy_(bias)
    plain_chunks = tokenize_weighted(tokenizer, "a painting of a cat")
    weighted_chunks = tokenize_weighted(tokenizer, "a (painting:1.3) of a cat")
    assert [c.ids for c in plain_chunks] == [c.ids for c in weighted_chunks]
    n_painting = len(ids_of(tokenizer, "painting"))
    assert weighted_chunks[0].weights == [1.0, 1.0] + [1.3] * n_painting + [1.0] * (75 - n_painting)
    weights = torch.tensor(weighted_chunks[0].weights)

    plain = encode_weighted(text_encoder, plain_chunks)
    weighted = encode_weighted(text_encoder, weighted_chunks)
    scaled = plain * weights[None, :, None]
    expected = scaled * (plain.mean() / scaled.mean())  # A1111 EmphasisOriginal
    assert torch.allclose(weighted, expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(weighted.mean(), plain.mean(), rtol=1e-4)
    assert abs(plain.mean() / scaled.mean() - 1) > 0.005  # the restoration did something measurable
    # Each vector keeps its direction; the weighted tokens grow 1.3 times more than the others.
    ratio = weighted.norm(dim=-1) / plain.norm(dim=-1)  # (1, 77)
    assert torch.allclose(ratio[0, 2:2 + n_painting] / ratio[0, 0], torch.tensor(1.3), rtol=1e-4)
    assert torch.allclose(ratio[0, 2 + n_painting:] / ratio[0, 0], torch.tensor(1.0), rtol=1e-4)
    assert not torch.equal(weighted, plain)


def test_the_pair_is_padded_to_the_same_number_of_chunks(pipe, tokenizer):
    long = " ".join(["cat"] * 105)  # 105 tokens
    assert len(ids_of(tokenizer, long)) == 105
    assert len(tokenize_weighted(tokenizer, long)) == 2
    cond, uncond = encode_prompt_pair(pipe.text_encoder, tokenizer, long, "dark, moody")
    assert cond.shape == uncond.shape == (1, 154, 32)
    empty = encode_weighted(pipe.text_encoder, [empty_chunk(tokenizer)])
    assert torch.equal(uncond[:, 77:], empty)
    assert torch.equal(uncond[:, :77], encode_weighted(pipe.text_encoder, tokenize_weighted(tokenizer, "dark, moody")))
    uncond2, cond2 = encode_prompt_pair(pipe.text_encoder, tokenizer, "dark, moody", long)
    assert torch.equal(uncond2, uncond) and torch.equal(cond2, cond)
