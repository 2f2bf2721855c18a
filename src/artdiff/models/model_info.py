"""artdiff.json: what a model directory needs to be used correctly (DESIGN.md §3).

kind, parameterization, noise schedule, conditioning and its null condition, the preprocessing
contract the model was trained with, the latent scale measured on the data, and the recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from artdiff import __version__
from artdiff.config import check_all
from artdiff.errors import UserError
from artdiff.models import config_limits

KINDS = ("embedding-ldm", "stable-diffusion", "image-variation", "unconditional", "ccld", "vae", "joint-encoder",
         "judge", "textual-inversion", "lora")
PARAMETERIZATIONS = ("eps", "v", "x0")
SCHEDULE_TYPES = ("discrete", "cosine")
CONDITIONING_TYPES = ("text-tokens", "joint-embedding", "image-embedding", "class-label", "none")
# kind "unconditional" (pixel models, models/pixel/): how the network's outputs are read
VARIANCES = ("learned_range", "fixed_small", "fixed_large")
DEFAULT_VARIANCE = "fixed_large"  # a pixel model's artdiff.json without "variance": OpenAI's default (sigma_small False)


@dataclass
class ModelInfo:
    """The contents of a model directory's artdiff.json."""

    kind: str
    parameterization: str | None = None
    # {"type": "discrete", "beta_schedule", "beta_start", "beta_end", "num_train_timesteps"} or {"type": "cosine"}
    schedule: dict[str, Any] | None = None
    # {"type": one of CONDITIONING_TYPES, "dim": int, "null": "zeros" | "learned" | "empty-prompt"}
    conditioning: dict[str, Any] | None = None
    preprocessing: dict[str, Any] | None = None  # the contract re-applied at inference
    latent_scale: float | None = None
    recipe: dict[str, Any] | None = None  # the training config that produced the model
    artdiff_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific fields, kept as they are

    def __post_init__(self) -> None:
        checks = [
            (self.kind in KINDS, f"kind {self.kind!r} is not one of {', '.join(KINDS)}"),
            (self.parameterization in (None, *PARAMETERIZATIONS),
             f"parameterization {self.parameterization!r} is not one of {', '.join(PARAMETERIZATIONS)}"),
            (self.schedule is None or self.schedule.get("type") in SCHEDULE_TYPES,
             f"schedule type must be one of {', '.join(SCHEDULE_TYPES)}"),
            (self.conditioning is None or self.conditioning.get("type") in CONDITIONING_TYPES,
             f"conditioning type must be one of {', '.join(CONDITIONING_TYPES)}"),
            (self.latent_scale is None or (isinstance(self.latent_scale, (int, float)) and 0 < self.latent_scale < 1e6),
             "latent_scale must be a positive number"),
        ]
        if self.schedule is not None and self.schedule.get("type") == "discrete":
            problem = config_limits.scheduler_problem(self.schedule)
            checks.append((problem is None, f"schedule: {problem}"))
        if self.conditioning is not None and self.conditioning.get("type") == "class-label":
            classes = self.conditioning.get("num_classes")
            checks.append((_whole(classes, 1, 1_000_000), f"conditioning num_classes {classes!r} is not a whole number "
                                                           "from 1 to 1,000,000"))
        if self.kind == "unconditional":
            checks.extend(_pixel_checks(self.extra))
        check_all(checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON data: the known fields, then the extra ones at the top level."""
        data = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        return {**self.extra, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "artdiff.json") -> ModelInfo:
        """Read known fields and keep the rest in `extra`; a wrong value is a one-line error naming the file."""
        if not isinstance(data, dict) or "kind" not in data:
            raise UserError(f"{where} has no 'kind'; it is not an artdiff model description")
        known = {k for k in cls.__dataclass_fields__ if k != "extra"}
        try:
            return cls(**{k: v for k, v in data.items() if k in known},
                       extra={k: v for k, v in data.items() if k not in known})
        except (TypeError, ValueError) as error:
            raise UserError(f"{where}: {error}") from None


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _pixel_checks(extra: dict[str, Any]) -> list[tuple[bool, str]]:
    """The fields a pixel model's artdiff.json adds (image_size, variance, rescale_timesteps, pixel_range), if set."""
    size, variance = extra.get("image_size", 64), extra.get("variance", DEFAULT_VARIANCE)
    rescale, pixel_range = extra.get("rescale_timesteps", False), extra.get("pixel_range", [-1, 1])
    return [
        (_whole(size, 1, 16384), f"image_size {size!r} is not a whole number from 1 to 16,384"),
        (variance in VARIANCES, f"variance {variance!r} is not one of {', '.join(VARIANCES)}"),
        (isinstance(rescale, bool), f"rescale_timesteps {rescale!r} is not true or false"),
        # Every sampler and trainer maps pixels to and from [-1, 1] (the OpenAI codebases' range); a model that
        # claims another range would be read wrongly, so it is refused rather than recorded and ignored.
        (pixel_range == [-1, 1] and not any(isinstance(v, bool) for v in pixel_range),
         f"pixel_range {pixel_range!r} is not supported; artdiff pixel models work in [-1, 1]"),
    ]
