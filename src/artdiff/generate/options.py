"""One `artdiff generate` request, whatever the model kind, what it produced, and the checks every number passes.

Light on purpose: `artdiff generate --help` and `artdiff vary --help` import this module, never torch.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from artdiff.config import option
from artdiff.generate.clip_options import ClipGuidanceOptions

Sampler = Literal["dpm++2m", "euler", "euler_a", "heun", "ddim", "ddpm", "plms"]

SEED_MAX = 2**32 - 1  # A1111's seed range: -1 (random) or 0 .. 2**32-1
MAX_CFG = 100.0  # far beyond any useful guidance; larger values only overflow to NaN
MAX_STEPS = 1000  # the training schedules have 1000 timesteps (the sampler refuses more than its schedule has)
MAX_SIDE = 16384  # pixels per side; the memory check refuses what does not fit long before this
MAX_IMAGES = 10**7  # -n: images are written one batch at a time, so this is a sanity bound only
MAX_BATCH = 64
ETA_SAMPLERS = {"ddim": 0.0, "euler_a": 1.0}  # the samplers with noise, and their default eta (A1111's too)
DEFAULT_SAMPLER = "dpm++2m"  # embedding and Stable Diffusion models; pixel models resolve theirs (pixel_sampler)
DEFAULT_STEPS = 50
DEFAULT_STRENGTH = 0.75  # --strength unset (None): img2img repaints this much, A1111's default
MAX_CLASSES = 100000  # a sanity bound for --class-label; the model's own class count is checked when it loads
# improved-diffusion's timestep_respacing: "ddimN", or section counts "N" / "A,B,C" (respace.space_timesteps)
RESPACING = re.compile(r"ddim[0-9]+|[0-9]+( *, *[0-9]+)*")
PIXEL_OPTIONS = ("respacing", "flags", "clip_denoised", "skip_steps", "class_label")  # unconditional models only


def check_number(flag: str, value: Any, low: float, high: float, *, whole: bool = False) -> None:
    """Refuse a value that is not a finite number in [low, high] (a whole one when `whole`), naming the flag."""
    kind = "a whole number" if whole else "a number"
    wrong = isinstance(value, bool) or not isinstance(value, int if whole else (int, float))
    if wrong or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{flag} {value!r} must be {kind} from {_shown(low)} to {_shown(high)}")


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def check_text(flag: str, value: str) -> None:
    """Refuse text that is not valid UTF-8 (argv undecodable bytes arrive as surrogates and cannot be saved)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value.encode("utf-8", "replace").decode("utf-8")
        raise ValueError(f"{flag} {shown!r} is not valid UTF-8 text; retype it or set a UTF-8 locale "
                         "(e.g. LANG=C.UTF-8)") from None


def check_sampling(options: Any) -> None:
    """The checks generate and vary share: seed, counts, steps, guidance, eta, sizes, text and the output folder."""
    options.out = Path(options.out)
    if options.seed != -1:
        try:
            check_number("--seed", options.seed, 0, SEED_MAX, whole=True)
        except ValueError as error:
            raise ValueError(f"{error}, or -1 for a random one (A1111's range)") from None
    check_number("-n", options.n, 1, MAX_IMAGES, whole=True)
    check_number("--batch-size", options.batch_size, 1, MAX_BATCH, whole=True)
    if options.steps is not None:  # None: the model kind's default (generate resolves it before sampling)
        check_number("--steps", options.steps, 1, MAX_STEPS, whole=True)
    if options.cfg is not None:
        check_number("--cfg", options.cfg, 0, MAX_CFG)
    if options.eta is not None:
        check_eta(options.sampler, options.eta)
    for flag in ("size", "width", "height"):
        value = getattr(options, flag)
        if value is not None:
            check_number(f"--{flag}", value, 1, MAX_SIDE, whole=True)
    for field in fields(options):  # every text option, lists included, must be writable to the PNG and JSON
        value = getattr(options, field.name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                check_text(field.metadata.get("flag") or "--" + field.name.replace("_", "-"), item)
    check_text("--out", str(options.out))


def check_eta(sampler: str | None, eta: float) -> None:
    """Refuse an eta the sampler does not use, or one outside [0, 1]; an unresolved sampler (None) waits."""
    # eta 0 is what every other sampler does anyway (a sidecar's request fed back as --config carries it)
    if sampler is not None and sampler not in ETA_SAMPLERS and eta != 0:
        raise ValueError(f"--eta changes only {' and '.join(ETA_SAMPLERS)} steps, not {sampler}; drop it or pick "
                         "one of those samplers")
    check_number("--eta", eta, 0, 1)


def check_respacing(respacing: str) -> None:
    """Refuse text that is not improved-diffusion's respacing syntax (the counts are checked against the model)."""
    if not RESPACING.fullmatch(respacing.strip()):
        raise ValueError(f"--respacing {respacing!r} must be ddimN (DDIM's N evenly strided steps, e.g. ddim50), N "
                         "(N steps, e.g. 250) or counts per section of the schedule, e.g. 10,10,10")


def pixel_sampler(sampler: str | None, respacing: str | None) -> str:
    """The sampler a pixel model runs: the one given, else ddpm for --respacing N or A,B,C (clip-diffusion-art's
    rule), else ddim (for ddimN, and without --respacing).

    Without --respacing the steps are spaced as for every other artdiff model, trailing from t = T-1 (999, 979,
    ..., 19 for 50 of 1000), so sampling starts at full noise; --respacing ddim50 reproduces clip-diffusion-art's
    default (0, 20, ..., 980).
    """
    if sampler is not None:
        return sampler
    return "ddpm" if respacing and not respacing.strip().startswith("ddim") else "ddim"


def sampler_eta(sampler: str, eta: float | None) -> float:
    """The eta a sampler runs with: the one given, else its own default (0 for ddim, 1 for euler_a)."""
    return ETA_SAMPLERS.get(sampler, 0.0) if eta is None else eta


def recorded_eta(sampler: str, eta: float) -> float | None:
    """The eta a sidecar records: the one used by a sampler with noise, None for the samplers eta does not change."""
    return eta if sampler in ETA_SAMPLERS else None


def resolve_seed(seed: int) -> int:
    """The seed a run uses: the one given, or a random one for -1 (A1111's convention)."""
    return secrets.randbelow(SEED_MAX + 1) if seed == -1 else seed


@dataclass
class GenerateOptions(ClipGuidanceOptions):
    """One generation request; options a model kind cannot use are refused with a one-line reason.

    The --clip-guidance group's fields come first (dataclass inheritance); the CLI lists them in their own group.
    """

    prompts: list[str] = option(help="text prompts: TEXT or TEXT:WEIGHT for embedding models, one A1111-syntax "
                                     "prompt for Stable Diffusion", cli=False, default_factory=list)
    images: list[str] = option(help="image prompt PATH or PATH:WEIGHT (repeatable)", flag="--image",
                               default_factory=list)
    embeddings: list[str] = option(help="embedding models: FILE[:WEIGHT] from `artdiff embed`; Stable Diffusion: a "
                                        "textual-inversion FILE[:TOKEN] (repeatable)", flag="--embedding",
                                   default_factory=list)
    negative: str = option("", "negative prompt (Stable Diffusion)")
    apply_overrides: bool = option(False, "let --embedding files made with --override-token replace their word "
                                          "(Stable Diffusion; without it they are refused)")
    model: str | None = option(None, "model directory, hub id or SD .safetensors/.ckpt file "
                                     "(default: the shipped artdiff-mini)")
    model_config: str | None = option(None, "SD .safetensors/.ckpt file: diffusers configs to build it with, a "
                                            "folder or sd15 | sd21 | sd21-base (default: detected from the file)",
                                      metavar="DIR")
    tokenizer: str | None = option(None, "SD .safetensors/.ckpt file: CLIP tokenizer folder or diffusers SD "
                                         "folder (default: the local Hugging Face cache)", metavar="DIR")
    cfg: float | None = option(None, "classifier-free guidance scale, 0 to 100 (default: 3 for embedding models, "
                                     "7.5 for Stable Diffusion)", shown_default="per model")
    raw_weights: bool = option(False, "embedding models: use prompt weights as CCLD does, uncond + cfg * sum_i w_i "
                                      "(cond_i - uncond), so weights multiply --cfg (default: weights are relative, "
                                      "divided by the sum of the positive ones, and the guidance scale is --cfg)")
    rescale: float = option(0.0, "guidance rescale phi (Lin et al. 2023), 0 to 1; 0.7 suits v-prediction models")
    steps: int | None = option(None, "sampling steps (1 to 1000); pixel models with --respacing run the steps it "
                                     "keeps (--steps, if given too, must equal that count)", shown_default="50")
    sampler: Sampler | None = option(None, "sampler", shown_default="dpm++2m; pixel models: ddim, or ddpm with the "
                                                                  "model's learned variance for --respacing N or A,B,C")
    karras: bool = option(False, "Karras et al. (2022) sigma spacing")
    eta: float | None = option(None, "noise of ddim / euler_a steps, 0 to 1", shown_default="0 for ddim, 1 for euler_a")
    clip_skip: int = option(1, "Stable Diffusion: A1111's Clip skip; 1 takes the text encoder's last layer, 2 the "
                               "one before it (then the final layer norm)")
    seed: int = option(-1, "image i uses seed + i, whatever -n or --batch-size is; -1 picks a random seed, else "
                           "0 to 4294967295")
    n: int = option(4, "number of images", flag="-n")
    batch_size: int = option(1, "images sampled together (memory grows with it); each is written when its "
                                "batch is done")
    size: int | None = option(None, "square image side in pixels (default: the model's training size)")
    width: int | None = option(None, "image width in pixels (Stable Diffusion; a multiple of 8)")
    height: int | None = option(None, "image height in pixels (Stable Diffusion; a multiple of 8)")
    init_image: str | None = option(None, "start from this image (img2img; Stable Diffusion and pixel models)")
    strength: float | None = option(None, "how much of --init-image to repaint: 0 keeps it, 1 ignores it (pixel "
                                          "models: --skip-steps is the steps it leaves out, steps - int(steps * "
                                          "strength); give one of the two)", shown_default=str(DEFAULT_STRENGTH))
    respacing: str | None = option(None, "pixel models: improved-diffusion's timestep respacing: ddimN (DDIM on N "
                                         "evenly strided timesteps; ddim50 is clip-diffusion-art's default), N (e.g. "
                                         "250) or steps per section of the schedule (e.g. 10,10,10); it sets the "
                                         "step count (default: --steps trailing from the last timestep, full noise)",
                                   metavar="SPACING")
    flags: str | None = option(None, "an original improved/guided-diffusion .pt/.pth/.safetensors file as --model: "
                                     "its MODEL_FLAGS and DIFFUSION_FLAGS, quoted (\"--image_size 256 --num_channels "
                                     "128 ...\"), clip-diffusion-art's YAML model_config file, or a preset: "
                                     "lsun-uncond-256 | openai-256-uncond | clip-diffusion-art-256", metavar="FLAGS")
    # On by default, as in improved-diffusion's image_sample.py: a cosine schedule's first trailing step has so
    # large a noise level that an unclamped x0 estimate is noise, and a pixel image never leaves [-1, 1].
    clip_denoised: bool = option(True, "pixel models: clamp each step's predicted image to [-1, 1] "
                                       "(improved-diffusion's clip_denoised; --no-clip-denoised turns it off)")
    skip_steps: int = option(0, "pixel models: skip the first N of the steps, starting from --init-image noised to "
                                "that step, or from noise at that level without one (default with --init-image: from "
                                "--strength)")
    class_label: int | None = option(None, "class-conditional pixel models: the class to sample (default: one "
                                           "drawn per image from its seed, and recorded)", metavar="N")
    lora: list[str] = option(help="LoRA FILE_OR_DIR[:SCALE] (default scale 1) on the UNet and, when the file has "
                                  "its layers, the text encoder: diffusers, kohya or A1111 files (Stable Diffusion; "
                                  "repeatable)", flag="--lora", metavar="FILE[:SCALE]", default_factory=list)
    out: Path = option(Path("outputs/generate"), "folder for the images (NNNNN-SEED.png, numbered on from the "
                                                 "highest there; nothing is replaced) and their JSON sidecars")

    save_progress: bool = option(False, "pixel and embedding models: also write each step's predicted image, as frames "
                                        "(NNNNN-SEED-progress/) and an animation (NNNNN-SEED-progress.gif)")

    def __post_init__(self) -> None:
        check_sampling(self)
        self.check_clip_options()
        if self.strength is not None:  # None: DEFAULT_STRENGTH, unless --skip-steps decides (pixel models)
            check_number("--strength", self.strength, 0, 1)
        check_number("--rescale", self.rescale, 0, 1)
        check_number("--clip-skip", self.clip_skip, 1, 48, whole=True)
        check_number("--skip-steps", self.skip_steps, 0, MAX_STEPS - 1, whole=True)
        if self.class_label is not None:
            check_number("--class-label", self.class_label, 0, MAX_CLASSES - 1, whole=True)
        if self.respacing is not None:
            check_respacing(self.respacing)
            if self.karras:
                raise ValueError("--karras spaces the sigmas itself and --respacing picks timesteps; use one of them")
            if self.eta is not None:  # the sampler --respacing implies is known now; without it the model decides
                check_eta(pixel_sampler(self.sampler, self.respacing), self.eta)


@dataclass
class GenerateResult:
    """Where the images are and how fast they came."""

    paths: list[Path]
    seconds: float
    model: str
    prompt: str = ""
    seed: int | None = None  # the first image's seed (the one drawn for --seed -1)
    cfg: float | None = None  # the guidance scale used; for embedding models the effective one after the weights
    sampler: str | None = None  # the sampler that ran (resolved per model kind when --sampler was not given)
    steps: int | None = None  # the steps of its schedule (pixel models: the respaced count)

    def to_json(self) -> dict:
        """Plain data for --json."""
        return {"images": [str(p) for p in self.paths], "seconds": round(self.seconds, 3), "model": self.model,
                "prompt": self.prompt, "seed": self.seed, "cfg": self.cfg, "sampler": self.sampler,
                "steps": self.steps,
                "images_per_s": round(len(self.paths) / self.seconds, 3) if self.seconds else None}
