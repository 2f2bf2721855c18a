"""Weighted prompts as CCLD writes them: "text:weight", image paths and saved embeddings, each with a weight."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from artdiff.errors import UserError


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
            raise UserError(f"malformed weight {weight_text!r} in {text!r}: write VALUE:NUMBER, e.g. "
                            f"\"{value or text}:2\" (to keep a colon in a text prompt, end it with an explicit "
                            "weight such as :1)") from None
        if not math.isfinite(weight):
            raise UserError(f"weight {weight_text!r} in {text!r} must be a finite number")
    if not value.strip():
        raise UserError(f"empty {kind} prompt in {text!r}")
    return Prompt(kind, value.strip() if kind == "text" else value, weight)
