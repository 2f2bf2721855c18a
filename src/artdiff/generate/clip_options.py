"""The `artdiff generate --clip-guidance` flags (clip-diffusion-art's and Disco Diffusion's knobs) and their infotext
fields, light for --help and for generators that run without guidance (no torch, no kornia).

GenerateOptions inherits these fields; generate/clip_setup.py turns them into a ClipGuidanceConfig and the
encoders' prompts. Scales and cut counts take a number, a 'start:end' ramp or Disco's list form, checked here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from artdiff.config import option
from artdiff.generate.guidance_schedules import parse_schedule

# Every flag of this group, for the commands and model kinds that refuse them.
SCHEDULED_SCALES = ("clip_guidance_scale", "tv_scale", "range_scale", "saturation_scale", "init_scale")
SCHEDULED_COUNTS = ("cutn", "cut_overview", "cut_innercut")


def schedule_text(value: object) -> str:
    """A schedule option as the text it was written in (YAML may give a bare number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number, a ramp 'start:end' or Disco's list form '[12]*400+[4]*600'")
    return value if isinstance(value, str) else f"{value:g}"


def _schedule(help_text: str, default: str, metavar: str = "SCHEDULE") -> str:
    return option(default, help_text, metavar=metavar, parse=schedule_text)


@dataclass
class ClipGuidanceOptions:
    """CLIP guidance of any model's sampling: prompts scored by joint encoders over cutouts, plus image losses."""

    clip_guidance: bool = option(False, "steer sampling with CLIP gradients: the text prompts (TEXT:WEIGHT) and "
                                        "--image prompts are scored by --clip-model over cutouts of each step's "
                                        "predicted image (Crowson's CLIP-guided diffusion)")
    clip_model: list[str] = option(help="joint encoder for --clip-guidance, FOLDER_OR_HUB_ID[:WEIGHT] (repeatable; "
                                        "default: the shipped cloob-mini)", flag="--clip-model",
                                   metavar="ENCODER[:W]", default_factory=list)
    clip_guidance_scale: str = _schedule("strength of the prompts' pull (clip-diffusion-art's and Disco's 5000)",
                                         "5000")
    tv_scale: str = _schedule("total-variation smoothness scale", "100")
    range_scale: str = _schedule("scale of the penalty on predicted pixels outside [-1, 1]", "150")
    saturation_scale: str = _schedule("scale of the penalty on oversaturated predicted pixels", "0")
    init_scale: str = _schedule("with --init-image: pull towards it in the encoder's feature space", "1000")
    scale_multiplier: float = option(1.0, "multiplies the CLIP, TV and range scales (clip-diffusion-art's; it "
                                          "uses 50 with its small defaults)")
    cutouts: Literal["cda", "disco"] = option("cda", "cutout scheme: clip-diffusion-art's (--cutn per batch) or "
                                                     "Disco's overview and inner cuts")
    cutn: str = _schedule("cda cutouts per batch", "16", "COUNT")
    cutn_batches: int = option(4, "batches of cutouts per step, their gradients summed (more signal per step, "
                                  "memory of one batch)")
    cut_overview: str = _schedule("disco: whole-image views per batch", "[12]*400+[4]*600", "COUNT")
    cut_innercut: str = _schedule("disco: inner crops per batch", "[4]*400+[12]*600", "COUNT")
    cut_ic_pow: str = _schedule("disco: inner-crop size exponent (above 1: smaller crops)", "1")
    cut_icgray_p: str = _schedule("disco: share of inner crops made grey", "[0.2]*400+[0]*600")
    skip_augs: bool = option(False, "no cutout augmentations (flip, affine, perspective, grey)")
    fixed_cutouts: bool = option(False, "cut the same fixed layout every step with no randomness (the reference-"
                                        "parity mode of benchmarks/clip_guided_vs_reference.py)")
    clip_loss: Literal["spherical", "cos_spherical"] = option("spherical", "prompt distance: squared great-circle "
                                                                           "distance, or its cosine form")
    clamp_max: float = option(0.05, "cap each image's guidance gradient at this RMS (the anchors' clamp_grad); 0 "
                                    "turns the cap off")
    clip_guide: Literal["x0", "blend"] = option("x0", "what the encoders see: the predicted image, or Disco's "
                                                      "blend of it with the noisy sample")

    def check_clip_options(self) -> None:
        """Refuse a number or schedule that cannot be used, in one line naming the flag."""
        for name in SCHEDULED_SCALES + SCHEDULED_COUNTS + ("cut_ic_pow", "cut_icgray_p"):
            flag = "--" + name.replace("_", "-")
            parse_schedule(getattr(self, name), name=flag, integer=name in SCHEDULED_COUNTS,
                           minimum=1e-6 if name == "cut_ic_pow" else 0)
        for flag, value, low, high in (("--scale-multiplier", self.scale_multiplier, 1e-6, 1e6),
                                       ("--clamp-max", self.clamp_max, 0, 1e6)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise ValueError(f"{flag} {value!r} must be a number from {low:g} to {high:g}")
        if isinstance(self.cutn_batches, bool) or not isinstance(self.cutn_batches, int) \
                or not 1 <= self.cutn_batches <= 64:
            raise ValueError(f"--cutn-batches {self.cutn_batches!r} must be a whole number from 1 to 64")

    def clip_options_given(self) -> list[str]:
        """The flags of this group that differ from their defaults (for kinds and commands that refuse them)."""
        defaults = ClipGuidanceOptions()
        return ["--" + f.name.replace("_", "-") for f in fields(ClipGuidanceOptions)
                if getattr(self, f.name) != getattr(defaults, f.name)]


CLIP_FIELDS = tuple(f.name for f in fields(ClipGuidanceOptions))


def describe_encoders(record: dict) -> str:
    """The infotext's "CLIP models" value: each encoder's folder name and weight."""
    return ", ".join(f"{Path(e['model']).name or e['model']}:{e['weight']:g}" for e in record["encoders"])


def guidance_fields(options, guidance) -> dict:
    """The infotext's CLIP guidance fields (the sidecar records every option)."""
    return {"CLIP guidance scale": options.clip_guidance_scale, "CLIP models": describe_encoders(guidance.record),
            "Cutouts": options.cutouts, "Cutn": options.cutn if options.cutouts == "cda" else None,
            "Cutn batches": options.cutn_batches, "TV scale": options.tv_scale, "Range scale": options.range_scale,
            "Saturation scale": options.saturation_scale if options.saturation_scale != "0" else None,
            "Scale multiplier": options.scale_multiplier if options.scale_multiplier != 1 else None,
            "Image prompts": ", ".join(options.images) or None}
