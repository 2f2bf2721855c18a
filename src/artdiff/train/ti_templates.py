"""A1111's textual-inversion prompt templates as data, a reader for a user's own, and how a line is filled.

The built-in lists copy AUTOMATIC1111 stable-diffusion-webui `textual_inversion_templates/*.txt` line for
line (duplicates included: they weight those phrasings, as in A1111). Filling follows
`modules/textual_inversion/dataset.py::PersonalizedBase.create_text`: pick a line at random, split the
caption into comma-separated tags (optionally dropping and shuffling them), replace "[filewords]" by the
tags joined with ",", then "[name]" by the token.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from artdiff.errors import UserError

NAME, FILEWORDS = "[name]", "[filewords]"

style_filewords = (
    "a painting of [filewords], art by [name]",
    "a rendering of [filewords], art by [name]",
    "a cropped painting of [filewords], art by [name]",
    "the painting of [filewords], art by [name]",
    "a clean painting of [filewords], art by [name]",
    "a dirty painting of [filewords], art by [name]",
    "a dark painting of [filewords], art by [name]",
    "a picture of [filewords], art by [name]",
    "a cool painting of [filewords], art by [name]",
    "a close-up painting of [filewords], art by [name]",
    "a bright painting of [filewords], art by [name]",
    "a cropped painting of [filewords], art by [name]",
    "a good painting of [filewords], art by [name]",
    "a close-up painting of [filewords], art by [name]",
    "a rendition of [filewords], art by [name]",
    "a nice painting of [filewords], art by [name]",
    "a small painting of [filewords], art by [name]",
    "a weird painting of [filewords], art by [name]",
    "a large painting of [filewords], art by [name]",
)

style = (
    "a painting, art by [name]",
    "a rendering, art by [name]",
    "a cropped painting, art by [name]",
    "the painting, art by [name]",
    "a clean painting, art by [name]",
    "a dirty painting, art by [name]",
    "a dark painting, art by [name]",
    "a picture, art by [name]",
    "a cool painting, art by [name]",
    "a close-up painting, art by [name]",
    "a bright painting, art by [name]",
    "a cropped painting, art by [name]",
    "a good painting, art by [name]",
    "a close-up painting, art by [name]",
    "a rendition, art by [name]",
    "a nice painting, art by [name]",
    "a small painting, art by [name]",
    "a weird painting, art by [name]",
    "a large painting, art by [name]",
)

subject = (
    "a photo of a [name]",
    "a rendering of a [name]",
    "a cropped photo of the [name]",
    "the photo of a [name]",
    "a photo of a clean [name]",
    "a photo of a dirty [name]",
    "a dark photo of the [name]",
    "a photo of my [name]",
    "a photo of the cool [name]",
    "a close-up photo of a [name]",
    "a bright photo of the [name]",
    "a cropped photo of a [name]",
    "a photo of the [name]",
    "a good photo of the [name]",
    "a photo of one [name]",
    "a close-up photo of the [name]",
    "a rendition of the [name]",
    "a photo of the clean [name]",
    "a rendition of a [name]",
    "a photo of a nice [name]",
    "a good photo of a [name]",
    "a photo of the nice [name]",
    "a photo of the small [name]",
    "a photo of the weird [name]",
    "a photo of the large [name]",
    "a photo of a cool [name]",
    "a photo of a small [name]",
)

subject_filewords = tuple(f"{line}, [filewords]" for line in subject)  # A1111's file is subject.txt + ", [filewords]"

none = ("picture",)  # A1111 ships it for hypernetworks; it never says [name]

TEMPLATES: dict[str, tuple[str, ...]] = {"style-filewords": style_filewords, "style": style, "subject": subject,
                                         "subject-filewords": subject_filewords, "none": none}


def read_template_file(path: Path) -> tuple[str, ...]:
    """Read a user's template file: one template per line, surrounding spaces and blank lines dropped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read template file {path}: {error}") from None
    lines = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not lines:
        raise UserError(f"template file {path} has no templates; write one per line, e.g. "
                        "'a painting of [filewords], art by [name]'")
    return lines


def resolve_template(name_or_path: str) -> tuple[str, ...]:
    """The lines of a built-in template (style-filewords, style, subject, subject-filewords, none) or a file."""
    key = name_or_path.strip().lower().replace("_", "-").removesuffix(".txt")
    if key in TEMPLATES:
        return TEMPLATES[key]
    if Path(name_or_path).is_file():
        return read_template_file(Path(name_or_path))
    raise UserError(f"template {name_or_path!r} is neither one of {', '.join(TEMPLATES)} nor an existing file "
                    "with one template per line")


def fill_template(template: Sequence[str], name: str, filewords: str, rng: random.Random, *,
                  shuffle_tags: bool = False, tag_dropout: float = 0.0) -> str:
    """Pick one line with `rng` and fill it as A1111's create_text does ([filewords] first, then [name])."""
    if not template:
        raise ValueError("a template needs at least one line")
    text = rng.choice(list(template))
    tags = filewords.split(",")
    if tag_dropout:
        tags = [tag for tag in tags if rng.random() > tag_dropout]
    if shuffle_tags:
        rng.shuffle(tags)
    return text.replace(FILEWORDS, ",".join(tags)).replace(NAME, name)


def uses(template: Sequence[str], placeholder: str) -> bool:
    """True when any line of the template holds the placeholder ([name] or [filewords])."""
    return any(placeholder in line for line in template)
