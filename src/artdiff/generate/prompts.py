"""Weighted prompts as CCLD writes them: "text:weight", image paths and saved embeddings, each with a weight."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from artdiff.errors import UserError

MAX_WEIGHT = 100.0  # weights multiply --cfg; beyond this they only overflow to NaN


@dataclass(frozen=True)
class Prompt:
    """One term of a prompt mixture."""

    kind: Literal["text", "image", "embedding"]
    value: str  # the text, or a file path
    weight: float = 1.0

    def describe(self) -> str:
        """How the term is written back into image metadata."""
        prefix = "" if self.kind == "text" else f"{self.kind}="
        return f"{prefix}{self.value}:{self.weight:g}"


def parse_prompt(text: str, kind: Literal["text", "image", "embedding"] = "text") -> Prompt:
    """Split "value:weight" (the weight is optional and may be negative); a non-numeric weight is an error."""
    value, sep, weight_text = text.rpartition(":")
    if not sep:
        value, weight_text = text, ""
    if not weight_text.strip():
        value = value if sep else text
        weight = 1.0
    else:
        try:
            weight = float(weight_text)
        except ValueError:
            raise UserError(_malformed(text, value, weight_text)) from None
        if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
            raise UserError(f"weight {weight_text!r} in {text!r} must be a finite number from -{MAX_WEIGHT:g} to "
                            f"{MAX_WEIGHT:g}")
    if not value.strip():
        raise UserError(f"empty {kind} prompt in {text!r}")
    return Prompt(kind, value.strip() if kind == "text" else value, weight)


def _malformed(text: str, value: str, weight_text: str) -> str:
    """The message for a weight that is not a number, with an example of the syntax the user meant."""
    if "(" in text or ")" in text or "[" in text:
        bare = text.strip("()[] ").rpartition(":")
        word, number = (bare[0], bare[2]) if bare[1] else (text.strip("()[] "), "2")
        return (f"malformed weight {weight_text!r} in {text!r}: (word:1.3) emphasis is Stable Diffusion syntax; "
                f"embedding models weight a whole prompt as TEXT:WEIGHT, e.g. \"{word.strip() or 'text'}:"
                f"{number.strip() or '2'}\"")
    return (f"malformed weight {weight_text!r} in {text!r}: write VALUE:NUMBER, e.g. \"{value or text}:2\" (to "
            "keep a colon in a text prompt, end it with an explicit weight such as :1)")
