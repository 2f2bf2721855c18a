"""Prompt weights parse as CCLD writes them; malformed ones are one clear error."""

import pytest

from artdiff.errors import UserError
from artdiff.generate.prompts import Prompt, parse_prompt


@pytest.mark.parametrize("text,expected", [
    ("a pastel rothko:3", Prompt("text", "a pastel rothko", 3.0)),
    ("dark ground", Prompt("text", "dark ground", 1.0)),
    ("busy:-0.5", Prompt("text", "busy", -0.5)),
    ("style: rothko:1", Prompt("text", "style: rothko", 1.0)),
])
def test_text_weights(text, expected):
    assert parse_prompt(text) == expected


def test_image_paths_keep_their_folders():
    assert parse_prompt("art/ref.png:2", "image") == Prompt("image", "art/ref.png", 2.0)


@pytest.mark.parametrize("text,message", [("text:abc", "malformed weight 'abc'"), (":2", "empty"),
                                          ("x:inf", "finite")])
def test_malformed(text, message):
    with pytest.raises(UserError, match=message):
        parse_prompt(text)
