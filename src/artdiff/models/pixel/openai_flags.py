"""The flags of OpenAI's improved-diffusion (Nichol & Dhariwal 2021) and guided-diffusion (Dhariwal & Nichol 2021)
checkpoints, their per-codebase defaults, named presets for the published files, and what they mean in diffusers.

Which codebase's defaults fill the omitted flags (they differ: improved-diffusion rescales timesteps and learned
sigmas by default, guided-diffusion does not, and each derives channel_mult for other image sizes):
1. `codebase=` (the command `artdiff convert improved-diffusion|guided-diffusion` passes it), else
2. `--codebase NAME` inside the flags text (for `artdiff generate --flags`), else
3. the source: a preset knows its codebase; clip-diffusion-art's YAML uses guided-diffusion's (its fork), else
4. the flags themselves: a model flag only one codebase has (guided: num_head_channels, channel_mult,
   resblock_updown, use_fp16 (improved-diffusion's is a training-script flag), use_new_attention_order; improved:
   sigma_small) or an image size only one derives channel_mult for (improved: 32; guided: 128, 512) decides; otherwise the two agree on everything that changes the model when
   diffusion_steps is 1000 (rescaling by 1000/T is then the identity) or both rescale flags are given, and
   guided-diffusion's defaults are used; otherwise the flags are ambiguous and refused in one line.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from artdiff.config import check_all
from artdiff.errors import UserError
from artdiff.models import config_limits

CODEBASES = ("improved-diffusion", "guided-diffusion", "clip-diffusion-art")
CODEBASE_ALIASES = {"improved": "improved-diffusion", "guided": "guided-diffusion",
                    **{name: name for name in CODEBASES}}
NUM_CLASSES = 1000  # both codebases' class-conditional models are ImageNet's
# Model flags only guided-diffusion has. use_fp16 is among them because only guided-diffusion's create_model takes
# it; improved-diffusion has it too, but as a flag of its training script (image_train.py), not of the model.
GUIDED_ONLY = ("num_head_channels", "channel_mult", "resblock_updown", "use_fp16", "use_new_attention_order")
IMPROVED_TRAINING_FLAGS = ("use_fp16",)
IMPROVED_ONLY = ("sigma_small",)
# channel_mult derived from image_size when the flag is omitted (script_util.create_model of each codebase).
DEFAULT_CHANNEL_MULT: dict[str, dict[int, tuple[float, ...]]] = {
    "improved-diffusion": {256: (1, 1, 2, 2, 4, 4), 64: (1, 2, 3, 4), 32: (1, 2, 2, 2)},
    "guided-diffusion": {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4),
                         64: (1, 2, 3, 4)},
}
# Flags of the sampling and training scripts: not part of the model, so named as such instead of "unknown".
SCRIPT_FLAGS = ("model_path", "batch_size", "num_samples", "use_ddim", "clip_denoised", "data_dir", "lr",
                "weight_decay", "lr_anneal_steps", "microbatch", "ema_rate", "log_interval", "save_interval",
                "resume_checkpoint", "fp16_scale_growth", "schedule_sampler", "classifier_scale", "classifier_path",
                "iterations", "anneal_lr", "base_samples", "large_size", "small_size")


@dataclass(frozen=True)
class OpenAIFlags:
    """The model and diffusion flags of one checkpoint with every default applied (script_util.py's names).

    Field defaults are guided-diffusion's; parse_flags applies the chosen codebase's. channel_mult is derived from
    image_size when empty, as the codebase does.
    """

    codebase: str = "guided-diffusion"  # whose defaults filled the omitted flags; recorded as the source format
    image_size: int = 64
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: tuple[float, ...] = ()  # width of each level in num_channels; () = the codebase's default
    attention_resolutions: tuple[int, ...] = (16, 8)  # resolutions (image_size / 2^level) with self-attention
    num_heads: int = 4
    num_heads_upsample: int = -1  # -1: num_heads
    num_head_channels: int = -1  # set: heads = width / num_head_channels, num_heads ignored
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False  # resample with residual blocks instead of a strided / nearest+conv layer
    use_new_attention_order: bool = False  # split q, k, v before heads (QKVAttention) instead of after (legacy)
    class_cond: bool = False
    dropout: float = 0.0
    use_checkpoint: bool = False
    use_fp16: bool = False  # the released files hold fp32 master weights even when set
    learn_sigma: bool = False
    sigma_small: bool = False
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    timestep_respacing: str = ""  # recorded only; sampling takes --respacing
    use_kl: bool = False
    predict_xstart: bool = False
    rescale_timesteps: bool = False
    rescale_learned_sigmas: bool = False

    def __post_init__(self) -> None:
        if not self.channel_mult:
            derived = DEFAULT_CHANNEL_MULT[_defaults_of(self.codebase)].get(self.image_size)
            if derived is None:
                sizes = "/".join(map(str, DEFAULT_CHANNEL_MULT[_defaults_of(self.codebase)]))
                hint = ("pass --channel_mult (e.g. 1,2,2)" if _defaults_of(self.codebase) == "guided-diffusion"
                        else "improved-diffusion builds no other size")
                raise ValueError(f"{self.codebase} derives channel_mult only for image_size {sizes}, not "
                                 f"{self.image_size}; {hint}")
            object.__setattr__(self, "channel_mult", derived)
        problems = [config_limits.flag_problem(f.name, getattr(self, f.name)) for f in fields(self)
                    if f.name != "channel_mult"]
        check_all([
            (self.codebase in CODEBASES, f"codebase {self.codebase!r} is not one of {', '.join(CODEBASES)}"),
            *((problem is None, str(problem)) for problem in problems),
            (all(0 < m <= 64 for m in self.channel_mult) and len(self.channel_mult) <= config_limits.MAX_LEVELS,
             f"--channel_mult {_join(self.channel_mult)} must be 1 to {config_limits.MAX_LEVELS} widths from 1 to 64"),
            (self.noise_schedule in ("linear", "cosine"),
             f"--noise_schedule {self.noise_schedule!r} is not linear or cosine"),
            (0 <= self.dropout < 1, f"--dropout {self.dropout} is not from 0 to below 1"),
            # the linear schedule ends at 0.02 * 1000 / T, which must stay below 1
            (self.noise_schedule != "linear" or self.diffusion_steps > 20,
             f"--diffusion_steps {self.diffusion_steps} with the linear schedule gives betas of 1 or more; use more "
             "than 20 steps"),
        ])

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for tuples) as artdiff.json records the resolved flags."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @property
    def num_classes(self) -> int | None:
        """ImageNet's 1000 classes for a class-conditional model, else None."""
        return NUM_CLASSES if self.class_cond else None


@dataclass(frozen=True)
class Preset:
    """The flags of one published checkpoint, as its README or config gives them."""

    codebase: str
    flags: str
    file: str  # the file name it was published as
    url: str


PRESETS: dict[str, Preset] = {
    "lsun-uncond-256": Preset(  # improved-diffusion README, "LSUN bedroom model (lr=1e-4)"
        "improved-diffusion",
        "--image_size 256 --num_channels 128 --num_res_blocks 2 --num_heads 1 --learn_sigma True "
        "--use_scale_shift_norm False --attention_resolutions 16 --diffusion_steps 1000 --noise_schedule linear "
        "--rescale_learned_sigmas False --rescale_timesteps False",
        "lsun_uncond_100M_1200K_bs128.pt",
        "https://openaipublic.blob.core.windows.net/diffusion/march-2021/lsun_uncond_100M_1200K_bs128.pt"),
    "openai-256-uncond": Preset(  # guided-diffusion README, 256x256 unconditional
        "guided-diffusion",
        "--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --image_size 256 "
        "--learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2 "
        "--resblock_updown True --use_fp16 True --use_scale_shift_norm True",
        "256x256_diffusion_uncond.pt",
        "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt"),
    "clip-diffusion-art-256": Preset(  # clip-diffusion-art configs/256x256_clip_diffusion_art.yaml + sample.py
        "clip-diffusion-art",
        "--attention_resolutions 16 --class_cond False --rescale_timesteps True --rescale_learned_sigmas True "
        "--image_size 256 --learn_sigma True --noise_schedule linear --num_channels 128 --num_heads 1 "
        "--num_res_blocks 2 --use_checkpoint False --use_fp16 True --use_scale_shift_norm False "
        "--diffusion_steps 1000",
        "256x256_clip_diffusion_art.pt",
        "https://api.wandb.ai/files/sreevishnu-damodaran/clip_diffusion_art/29bag3br/256x256_clip_diffusion_art.pt"),
}

_FIELD_TYPES = {f.name: f.type for f in fields(OpenAIFlags) if f.name != "codebase"}
_TRUE, _FALSE = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")  # guided's str2bool


def _defaults_of(codebase: str) -> str:
    """clip-diffusion-art runs crowsonkb's guided-diffusion fork, whose defaults are guided-diffusion's."""
    return "guided-diffusion" if codebase == "clip-diffusion-art" else codebase


def known_flags(codebase: str) -> tuple[str, ...]:
    """The flag names the codebase's scripts accept."""
    excluded = IMPROVED_ONLY if _defaults_of(codebase) == "guided-diffusion" else GUIDED_ONLY
    return tuple(name for name in _FIELD_TYPES if name not in excluded)


def codebase_defaults(codebase: str) -> dict[str, Any]:
    """The flags whose defaults differ from guided-diffusion's (model_and_diffusion_defaults of each codebase)."""
    if _defaults_of(codebase) == "improved-diffusion":
        return {"rescale_timesteps": True, "rescale_learned_sigmas": True}
    return {}


def parse_flags(source: str | Mapping[str, Any] | OpenAIFlags, *, codebase: str | None = None) -> OpenAIFlags:
    """OpenAIFlags from a preset name, a flags string, a YAML model_config (text, file or mapping).

    The module docstring says how the codebase whose defaults apply is chosen. Every bad input is a UserError of
    one line naming the flag.
    """
    if isinstance(source, OpenAIFlags):
        return source if codebase is None else replace(source, codebase=_codebase_name(codebase))
    wanted = _codebase_name(codebase) if codebase else None
    if isinstance(source, str) and source.strip() in PRESETS:
        preset = PRESETS[source.strip()]
        if wanted and _defaults_of(wanted) != _defaults_of(preset.codebase):
            raise UserError(f"preset {source.strip()} is a {preset.codebase} model, not {wanted}; convert it with "
                            f"`artdiff convert {_defaults_of(preset.codebase)}`")
        return parse_flags(preset.flags, codebase=preset.codebase)
    if isinstance(source, str):
        from artdiff.models.pixel.flag_sources import read_flag_source

        raw = read_flag_source(source)
        values, kind = dict(raw.values), raw.kind
    elif isinstance(source, Mapping):
        values, kind = {str(k): v for k, v in source.items()}, "yaml"
    else:
        raise UserError(f"flags must be text or a mapping, not {type(source).__name__}")
    named = values.pop("codebase", None)
    if named is not None:
        named = _codebase_name(str(named))
        if wanted and _defaults_of(named) != _defaults_of(wanted):
            raise UserError(f"the flags say --codebase {named}, but they are being read as {wanted}")
    chosen = wanted or named or ("clip-diffusion-art" if kind == "yaml" else _infer_codebase(values))
    typed = {name: _typed(name, value, chosen) for name, value in values.items()}
    try:
        return OpenAIFlags(codebase=chosen, **{**codebase_defaults(chosen), **typed})
    except ValueError as error:
        raise UserError(str(error)) from None


def _codebase_name(name: str) -> str:
    if name not in CODEBASE_ALIASES:
        raise UserError(f"codebase {name!r} is not one of {', '.join(CODEBASES)}")
    return CODEBASE_ALIASES[name]


def _infer_codebase(values: dict[str, Any]) -> str:
    """Step 4 of the module docstring: the flags' own evidence, else guided-diffusion where both agree."""
    improved = [n for n in values if n in IMPROVED_ONLY]
    # beside improved-diffusion evidence, use_fp16 is its training-script flag, not guided-diffusion evidence
    guided = [n for n in values if n in GUIDED_ONLY and not (improved and n in IMPROVED_TRAINING_FLAGS)]
    if guided and improved:
        raise UserError(f"--{guided[0]} is a guided-diffusion flag and --{improved[0]} an improved-diffusion one; "
                        "no checkpoint has both")
    if guided or improved:
        return "guided-diffusion" if guided else "improved-diffusion"
    if "channel_mult" not in values:
        size = _typed("image_size", values.get("image_size", OpenAIFlags.image_size), "guided-diffusion")
        if size in DEFAULT_CHANNEL_MULT["improved-diffusion"] and size not in DEFAULT_CHANNEL_MULT["guided-diffusion"]:
            return "improved-diffusion"
    steps = _typed("diffusion_steps", values.get("diffusion_steps", 1000), "guided-diffusion")
    if steps == 1000 or {"rescale_timesteps", "rescale_learned_sigmas"} <= set(values):
        return "guided-diffusion"
    raise UserError(f"these flags fit both improved-diffusion and guided-diffusion, whose defaults for "
                    f"rescale_timesteps and rescale_learned_sigmas differ when --diffusion_steps is {steps}: add "
                    "--codebase improved-diffusion (or guided-diffusion), or give both flags")


def _typed(name: str, value: Any, codebase: str) -> Any:
    """One flag's value in its field's type; booleans as guided's str2bool reads them."""
    if name not in known_flags(codebase):
        raise UserError(_unknown_flag(name, codebase))
    kind = _FIELD_TYPES[name]
    text = value.strip() if isinstance(value, str) else value
    try:
        if kind == "bool":
            return _boolean(text)
        if kind == "int":
            if isinstance(text, bool) or not isinstance(text, (int, str)):
                raise ValueError
            return int(text)
        if kind == "float":
            if isinstance(text, bool):
                raise ValueError
            return float(text)
        if kind == "str":
            return "" if text is None else str(text)
        return _int_tuple(text, allow_empty=name == "channel_mult")
    except ValueError:
        expected = {"bool": "True or False", "int": "a whole number", "float": "a number",
                    "tuple[int, ...]": "comma-separated whole numbers (e.g. 32,16,8)"}.get(kind, kind)
        if name == "channel_mult":
            expected = "comma-separated whole numbers (e.g. 1,1,2,2,4,4)"
        raise UserError(f"--{name} expects {expected}, not {value!r}") from None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        # clip-diffusion-art's YAML writes `'use_fp16': True,`, which YAML reads as the string "True,"
        word = value.rstrip(",").strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise ValueError(value)


def _int_tuple(value: Any, *, allow_empty: bool) -> tuple[int, ...]:
    """'32, 16, 8' (spaces as clip-diffusion-art writes them), 16 or [32, 16, 8] as a tuple of ints."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return (value,)
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        if not value.strip() and allow_empty:
            return ()
        items = value.split(",")
    else:
        raise ValueError(value)
    if not items or any(isinstance(item, bool) for item in items):
        raise ValueError(value)
    return tuple(int(item.strip() if isinstance(item, str) else item) for item in items)


def _unknown_flag(name: str, codebase: str) -> str:
    if name in SCRIPT_FLAGS:
        return (f"--{name} is a flag of the sampling or training scripts, not of the model; pass only MODEL_FLAGS and "
                "DIFFUSION_FLAGS (artdiff generate and train have their own options)")
    if name in IMPROVED_TRAINING_FLAGS and _defaults_of(codebase) == "improved-diffusion":
        return (f"--{name} is a flag of improved-diffusion's training script, not of its model (its checkpoints "
                "hold fp32 weights either way); drop it, or pass --codebase guided-diffusion if the file is one")
    if name in _FIELD_TYPES:
        other = "improved-diffusion" if _defaults_of(codebase) == "guided-diffusion" else "guided-diffusion"
        return f"--{name} is a flag of {other}, not of {codebase}; pass --codebase {other} if the file is one"
    close = difflib.get_close_matches(name, known_flags(codebase), n=1)
    hint = f"; did you mean --{close[0]}?" if close else ""
    return f"unknown flag --{name} for {codebase}{hint}"


def _join(values: tuple[Any, ...]) -> str:
    return ",".join(str(v) for v in values)


from artdiff.models.pixel.openai_unet_config import pixel_model_info, unet2d_config  # noqa: E402,F401  (re-export)
