"""The labels of the procedural art set: vocabularies, captions, canonical prompts, and reading labels back.

Kept apart from the painting code (no numpy, no PIL) so that a judge or an evaluation script can build
prompts from labels, or find the labels a prompt names, cheaply.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal

Style = Literal["mondrian", "kandinsky", "rothko", "pollock", "pointillist", "op-art", "stained-glass", "ukiyo-e"]
Palette = Literal["warm", "cool", "pastel", "monochrome", "primary", "earth"]
Ground = Literal["light", "dark"]
STYLES: tuple[str, ...] = typing.get_args(Style)
PALETTES: tuple[str, ...] = typing.get_args(Palette)
GROUNDS: tuple[str, ...] = typing.get_args(Ground)
LABEL_KEYS = ("style", "palette", "ground")

STYLE_TITLES: dict[str, str] = {
    "mondrian": "mondrian grid painting",
    "kandinsky": "kandinsky painting of circles and lines",
    "rothko": "rothko colour field painting",
    "pollock": "pollock drip painting",
    "pointillist": "pointillist dot painting",
    "op-art": "op-art stripe painting",
    "stained-glass": "stained glass window",
    "ukiyo-e": "ukiyo-e wave print",
}
STYLE_NAMES: dict[str, tuple[str, ...]] = {
    "mondrian": ("mondrian-style grid", "de stijl composition", "neoplastic grid painting"),
    "kandinsky": ("kandinsky-style composition", "kandinsky abstraction of circles and lines",
                  "bauhaus composition after kandinsky"),
    "rothko": ("colour field painting", "rothko-style abstraction", "color field canvas"),
    "pollock": ("drip painting", "pollock-style action painting", "splatter painting after pollock"),
    "pointillist": ("pointillist painting", "seurat-style dot painting", "divisionist dot painting"),
    "op-art": ("op art composition", "optical art pattern", "op-art illusion"),
    "stained-glass": ("leaded glass panel", "stained-glass mosaic", "voronoi stained glass"),
    "ukiyo-e": ("ukiyo-e seascape", "japanese woodblock print of waves", "hokusai-style wave print"),
}
STYLE_MANNERS: dict[str, tuple[str, ...]] = {
    "mondrian": ("mondrian", "piet mondrian", "de stijl"),
    "kandinsky": ("kandinsky", "wassily kandinsky"),
    "rothko": ("rothko", "mark rothko"),
    "pollock": ("pollock", "jackson pollock"),
    "pointillist": ("seurat", "georges seurat", "pointillism"),
    "op-art": ("bridget riley", "vasarely", "op art"),
    "stained-glass": ("gothic stained glass", "a stained glass window", "leaded glass"),
    "ukiyo-e": ("hokusai", "ukiyo-e", "japanese woodblock prints"),
}
STYLE_MOTIFS: dict[str, tuple[str, ...]] = {
    "mondrian": ("heavy grid lines and flat colour blocks", "rectangles bounded by thick lines",
                 "an asymmetric grid of colour blocks"),
    "kandinsky": ("floating circles crossed by lines", "circles, arcs and crossing lines", "haloed circles and sharp lines"),
    "rothko": ("soft colour blocks", "stacked glowing rectangles", "hazy fields of colour"),
    "pollock": ("poured drips and splatters", "tangled skeins of paint", "flung drips of paint"),
    "pointillist": ("tiny dots of colour", "a scene built from dots", "dabs of pure colour"),
    "op-art": ("vibrating stripes", "warped stripes and rings", "dizzying stripes"),
    "stained-glass": ("jewel-like glass cells", "panes of glass in lead came", "glowing glass cells"),
    "ukiyo-e": ("curling waves", "breaking waves and foam", "crashing waves under a wide sky"),
}
PALETTE_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "warm": ("warm", "fiery", "sunset-hued"),
    "cool": ("cool", "icy", "wintry"),
    "pastel": ("pastel", "soft pastel", "pale"),
    "monochrome": ("monochrome", "greyscale", "monochromatic"),
    "primary": ("primary-colour", "red, yellow and blue"),
    "earth": ("earth-toned", "earthy", "ochre and umber"),
}
PALETTE_TONES: dict[str, tuple[str, ...]] = {
    "warm": ("warm tones", "warm colours", "fiery reds and oranges"),
    "cool": ("cool tones", "cool blues and greens", "icy blues"),
    "pastel": ("pastel tones", "pastel colours", "pale hues"),
    "monochrome": ("shades of grey", "greyscale tones", "monochrome tones"),
    "primary": ("primary colours", "pure primaries", "red, yellow and blue"),
    "earth": ("earth tones", "earthy browns", "ochre and umber"),
}
GROUND_PHRASES: dict[str, tuple[str, ...]] = {
    "light": ("light ground", "light background", "bright ground", "white ground"),
    "dark": ("dark ground", "dark background", "black ground", "black background"),
}
CAPTION_TEMPLATES = (
    "{a} {adj} {name} on a {ground}",
    "{motif} in the style of {manner}, {tones}, {ground}",
    "{name}, {tones}, {ground}",
    "{a} {adj} {name} against a {ground}",
    "{motif} after {manner} in {tones} on a {ground}",
    "{adj} {name} with {motif}, {ground}",
)
# Words that name each label in free text, for reading labels back out of prompts.
STYLE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "mondrian": ("mondrian", "de stijl", "neoplastic"),
    "kandinsky": ("kandinsky",),
    "rothko": ("rothko", "colour field", "color field"),
    "pollock": ("pollock", "drip painting", "action painting"),
    "pointillist": ("pointillist", "pointillism", "seurat", "divisionist"),
    "op-art": ("op-art", "op art", "optical art", "bridget riley", "vasarely"),
    "stained-glass": ("stained glass", "stained-glass", "leaded glass"),
    "ukiyo-e": ("ukiyo-e", "hokusai", "woodblock"),
}
PALETTE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "warm": ("warm", "fiery", "sunset-hued"),
    "cool": ("cool", "icy", "wintry"),
    "pastel": ("pastel", "pale"),
    "monochrome": ("monochrome", "monochromatic", "greyscale", "grayscale", "shades of grey"),
    "primary": ("primary", "primary-colour", "primaries", "red, yellow and blue"),
    "earth": ("earth", "earthy", "earth-toned", "ochre", "umber"),
}
GROUND_KEYWORDS: dict[str, tuple[str, ...]] = GROUND_PHRASES


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def canonical_prompt(labels: dict[str, str]) -> str:
    """The one prompt that names a label set, e.g. "a pastel rothko colour field painting on a light ground"."""
    style, palette, ground = labels["style"], labels["palette"], labels["ground"]
    adjective = PALETTE_ADJECTIVES[palette][0]
    return f"{_article(adjective)} {adjective} {STYLE_TITLES[style]} on a {ground} ground"


def labels_in_text(text: str) -> dict[str, str]:
    """The labels a text names unambiguously, e.g. {"style": "rothko", "ground": "light"}."""
    found = {}
    for key, vocab in (("style", STYLE_KEYWORDS), ("palette", PALETTE_KEYWORDS), ("ground", GROUND_KEYWORDS)):
        hits = [label for label, words in vocab.items() if _mentions(text, words)]
        if len(hits) == 1:
            found[key] = hits[0]
    return found


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    pattern = r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b"
    return re.search(pattern, text.lower()) is not None


def choose(rng: Any, items: tuple[str, ...] | list[str]) -> str:
    """One item picked with a numpy Generator."""
    return items[int(rng.integers(len(items)))]


def caption_for(rng: Any, labels: dict[str, str]) -> str:
    """A caption for a label set from a random template and synonyms."""
    style, palette = labels["style"], labels["palette"]
    adj = choose(rng, PALETTE_ADJECTIVES[palette])
    words = {"adj": adj, "a": _article(adj), "tones": choose(rng, PALETTE_TONES[palette]),
             "name": choose(rng, (STYLE_TITLES[style], *STYLE_NAMES[style])),
             "manner": choose(rng, STYLE_MANNERS[style]), "motif": choose(rng, STYLE_MOTIFS[style]),
             "ground": choose(rng, GROUND_PHRASES[labels["ground"]])}
    return choose(rng, CAPTION_TEMPLATES).format(**words)
