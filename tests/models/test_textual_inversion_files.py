"""Textual-inversion files: format-exact round trips, safe loading, and parity with diffusers' loader."""

from pathlib import Path

import pytest
import safetensors.torch
import torch

from artdiff.errors import UserError
from artdiff.models.textual_inversion_files import (
    TextualInversion,
    add_textual_inversion,
    expand_tokens,
    load_textual_inversion,
    override_word,
    prompts_changed_by,
    save_a1111_pt,
    save_a1111_safetensors,
    save_diffusers_embeds,
    token_names,
)
from sd_fixtures import tiny_sd_pipeline, tiny_text_encoder, tiny_tokenizer

WIDTH = 32  # tiny_text_encoder's embedding width
A1111_KEYS = {"string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"}


def embedding(n: int = 3, token: str = "<my-style>", **fields) -> TextualInversion:
    return TextualInversion(token, torch.randn(n, WIDTH, generator=torch.Generator().manual_seed(n)), "test",
                            **fields)


@pytest.fixture
def clip(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path / "tokenizer")
    return tokenizer, tiny_text_encoder(tokenizer)


WRITERS = [(save_a1111_pt, "emb.pt", "a1111-pt"), (save_a1111_safetensors, "emb.safetensors", "a1111-safetensors"),
           (save_diffusers_embeds, "learned_embeds.safetensors", "diffusers")]


@pytest.mark.parametrize("write, name, layout", WRITERS)
def test_every_writer_round_trips_bit_exactly(tmp_path, write, name, layout):
    original = embedding(step=120)
    path = write(tmp_path / name, original)
    loaded = load_textual_inversion(path)
    assert torch.equal(loaded.vectors, original.vectors) and loaded.vectors.dtype == torch.float32
    assert (loaded.token, loaded.step, loaded.source_format, loaded.override_word) == ("<my-style>", 120, layout, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # the atomic write left no temp file


@pytest.mark.parametrize("write, name", [(save_a1111_safetensors, "emb.safetensors"),
                                         (save_diffusers_embeds, "learned_embeds.safetensors")])
def test_safetensors_writers_keep_the_override_word(tmp_path, write, name):
    loaded = load_textual_inversion(write(tmp_path / name, embedding(1, override_word="monet")))
    assert loaded.override_word == "monet" and loaded.step is None


def test_a1111_pt_has_exactly_a1111s_keys_and_loads_weights_only(tmp_path):
    original = embedding(2, step=7)
    path = save_a1111_pt(tmp_path / "style.pt", original, checkpoint_hash="abcd1234", checkpoint_name="v1-5")
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert set(data) == A1111_KEYS
    assert data["string_to_token"] == {"*": 265} and data["name"] == "<my-style>" and data["step"] == 7
    assert (data["sd_checkpoint"], data["sd_checkpoint_name"]) == ("abcd1234", "v1-5")
    assert list(data["string_to_param"]) == ["*"] and torch.equal(data["string_to_param"]["*"], original.vectors)


def test_a1111_pt_cannot_hold_an_override_word(tmp_path):
    with pytest.raises(UserError, match="safetensors"):
        save_a1111_pt(tmp_path / "x.pt", embedding(1, override_word="monet"))


def _mark(path: str) -> None:
    Path(path).write_text("executed")


class Payload:
    """An object whose unpickling runs code: what a malicious .pt would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return _mark, (str(self.marker),)


def test_a_pickled_object_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    torch.save({"string_to_param": {"*": torch.zeros(1, WIDTH)}, "name": "evil", "hook": Payload(marker)}, path)
    with pytest.raises(UserError, match="pickled objects artdiff will not execute.*safetensors") as error:
        load_textual_inversion(path)
    assert "\n" not in str(error.value) and not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: a plain unpickler would have run it
    assert marker.read_text() == "executed"


def test_an_old_pickled_parameter_dict_is_refused(tmp_path):
    path = tmp_path / "old.pt"
    params = torch.nn.ParameterDict({"*": torch.nn.Parameter(torch.zeros(2, WIDTH))})
    torch.save({"string_to_param": params, "name": "old"}, path)
    with pytest.raises(UserError, match="pickled objects"):
        load_textual_inversion(path)


def test_kohya_emb_params_takes_the_file_stem_unless_a_token_is_given(tmp_path):
    vectors = torch.randn(4, WIDTH)
    safetensors.torch.save_file({"emb_params": vectors}, tmp_path / "EasyNegative.safetensors")
    loaded = load_textual_inversion(tmp_path / "EasyNegative.safetensors")
    assert loaded.token == "EasyNegative" and loaded.source_format == "a1111-safetensors"
    assert torch.equal(loaded.vectors, vectors)
    assert load_textual_inversion(tmp_path / "EasyNegative.safetensors", token="easyneg").token == "easyneg"


def test_a1111_pt_without_a_name_takes_the_file_stem(tmp_path):
    torch.save({"string_to_param": {"*": torch.ones(2, WIDTH)}}, tmp_path / "painterly.pt")
    assert load_textual_inversion(tmp_path / "painterly.pt").token == "painterly"


def test_old_sd_concepts_bin_with_one_dimensional_tensor(tmp_path):
    vector = torch.randn(WIDTH, dtype=torch.float16)
    torch.save({"<cat-toy>": vector}, tmp_path / "learned_embeds.bin")
    loaded = load_textual_inversion(tmp_path / "learned_embeds.bin")
    assert loaded.token == "<cat-toy>" and loaded.vectors.shape == (1, WIDTH)
    assert torch.equal(loaded.vectors[0], vector.float())


def test_sdxl_embeddings_are_refused(tmp_path):
    path = tmp_path / "xl.safetensors"
    safetensors.torch.save_file({"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(2, 1280)}, path)
    with pytest.raises(UserError, match="SDXL embedding; artdiff supports SD 1.x/2.x text encoders"):
        load_textual_inversion(path)


@pytest.mark.parametrize("name, content, message", [
    ("emb.ckpt", b"", "expected a textual-inversion file ending in .pt, .bin or .safetensors"),
    ("emb.pt", b"not a torch file", "not a readable PyTorch file"),
    ("emb.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{broken", "not a readable .safetensors file"),
    ("missing.pt", None, "does not exist"),
])
def test_unreadable_files_give_one_line_errors(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=message) as error:
        load_textual_inversion(tmp_path / name)
    assert "\n" not in str(error.value) and name in str(error.value)


@pytest.mark.parametrize("state, message", [
    ({"a": torch.zeros(2, WIDTH), "b": torch.zeros(2, WIDTH)}, "unknown textual-inversion layout"),
    ({"<t>": torch.zeros(0, WIDTH)}, r"shape \(n_vectors, dim\)"),
    ({"<t>": torch.zeros(1, 2, WIDTH)}, r"found \(1, 2, 32\)"),
    ({"<t>": torch.full((1, WIDTH), float("nan"))}, "NaN"),
])
def test_bad_layouts_and_tensors_are_refused(tmp_path, state, message):
    safetensors.torch.save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match=message):
        load_textual_inversion(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("write, name", [(save_diffusers_embeds, "learned_embeds.safetensors"),
                                         (save_a1111_pt, "style.pt")])
def test_adding_matches_diffusers_load_textual_inversion(tmp_path, clip, write, name):
    tokenizer, text_encoder = clip
    path = write(tmp_path / name, embedding(3, token="<lh-style>"))
    pipe = tiny_sd_pipeline(tmp_path / "pipe")
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight, text_encoder.get_input_embeddings().weight)
    pipe.load_textual_inversion(str(path))

    added = add_textual_inversion(tokenizer, text_encoder, load_textual_inversion(path))
    assert added == token_names("<lh-style>", 3) == ["<lh-style>", "<lh-style>_1", "<lh-style>_2"]
    assert tokenizer.convert_tokens_to_ids(added) == pipe.tokenizer.convert_tokens_to_ids(added)
    assert len(tokenizer) == len(pipe.tokenizer)
    assert torch.equal(text_encoder.get_input_embeddings().weight, pipe.text_encoder.get_input_embeddings().weight)
    prompt = "<lh-style> a lighthouse, in the style of <lh-style>"
    assert expand_tokens(prompt, "<lh-style>", 3) == pipe.maybe_convert_prompt(prompt, pipe.tokenizer)
    expanded = expand_tokens(prompt, "<lh-style>", 3)
    assert tokenizer(expanded)["input_ids"] == pipe.tokenizer(pipe.maybe_convert_prompt(prompt, pipe.tokenizer))[
        "input_ids"]


def test_adding_changes_only_the_new_rows(clip):
    tokenizer, text_encoder = clip
    before = text_encoder.get_input_embeddings().weight.detach().clone()
    ti = embedding(2)
    names = add_textual_inversion(tokenizer, text_encoder, ti)
    after = text_encoder.get_input_embeddings().weight
    ids = tokenizer.convert_tokens_to_ids(names)
    assert ids == [before.shape[0], before.shape[0] + 1] and after.shape == (before.shape[0] + 2, WIDTH)
    assert torch.equal(after[: before.shape[0]], before) and torch.equal(after[ids], ti.vectors)


def test_adding_an_existing_token_or_a_wrong_width_fails_before_changing_anything(clip):
    tokenizer, text_encoder = clip
    add_textual_inversion(tokenizer, text_encoder, embedding(1))
    size = len(tokenizer)
    with pytest.raises(UserError, match="already in the tokenizer's vocabulary.*--override-token"):
        add_textual_inversion(tokenizer, text_encoder, embedding(1))
    wide = TextualInversion("<wide>", torch.zeros(1, 64), "test")
    with pytest.raises(UserError, match="width 64 .* 32 wide") as error:
        add_textual_inversion(tokenizer, text_encoder, wide)
    assert "\n" not in str(error.value)
    assert len(tokenizer) == size and text_encoder.get_input_embeddings().weight.shape[0] == size


def test_expand_tokens_replaces_whole_words_only():
    assert expand_tokens("sks, a sks dog by asksa sks_1", "sks", 2) == "sks sks_1, a sks sks_1 dog by asksa sks_1"
    assert expand_tokens("<S> and <s>.", "<s>", 3) == "<s> <s>_1 <s>_2 and <s> <s>_1 <s>_2."
    assert expand_tokens("<s>_1 x", "<s>", 2) == "<s>_1 x"  # a later vector's name is not the token
    assert expand_tokens("sks dog", "sks", 1) == "sks dog"


def test_override_replaces_only_that_words_rows(clip):
    tokenizer, text_encoder = clip
    before = text_encoder.get_input_embeddings().weight.detach().clone()
    ids = tokenizer("monet", add_special_tokens=False)["input_ids"]
    ti = embedding(len(ids), override_word="monet")
    override_word(tokenizer, text_encoder, ti, "monet")
    after = text_encoder.get_input_embeddings().weight
    others = [i for i in range(before.shape[0]) if i not in ids]
    assert torch.equal(after[ids], ti.vectors) and torch.equal(after[others], before[others])
    assert after.shape == before.shape
    with pytest.raises(UserError, match=f"'monet' is {len(ids)} token"):
        override_word(tokenizer, text_encoder, embedding(len(ids) + 1), "monet")


def test_prompts_changed_by_lists_prompts_using_the_word(clip):
    tokenizer, _ = clip
    prompts = ["a painting by monet", "a cat sitting on a chair", "Monet, dusk"]
    assert prompts_changed_by(tokenizer, "monet", prompts) == ["a painting by monet", "Monet, dusk"]
    assert prompts_changed_by(tokenizer, "monet", []) == []
