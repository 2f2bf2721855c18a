"""The judge: a small CNN that names an image's style, palette and ground, and gives features for FD-judge."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from artdiff.errors import UserError
from artdiff.utils.io import atomic_path, atomic_write_json

WEIGHTS_NAME = "judge.safetensors"
CONFIG_NAME = "config.json"


@dataclass
class JudgeSpec:
    """Architecture and label vocabularies of a judge."""

    labels: dict[str, list[str]] = field(default_factory=dict)  # head name -> class names
    image_size: int = 64  # inputs are resized to this (antialiased bilinear) before the network
    widths: tuple[int, ...] = (32, 64, 128)  # channels of each stride-2 stage
    feature_dim: int = 128  # width of the pooled features used for FD-judge


class _Stage(nn.Module):
    """Two 3x3 convolutions with group norm and SiLU, the first with stride 2."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Judge(nn.Module):
    """Classifier with one head per label kind over shared pooled features."""

    def __init__(self, spec: JudgeSpec) -> None:
        super().__init__()
        if not spec.labels:
            raise ValueError("a judge needs at least one label kind, e.g. {'style': [...]} ")
        self.spec = spec
        channels = (3, *spec.widths)
        self.stages = nn.Sequential(*(_Stage(a, b) for a, b in zip(channels, channels[1:])))
        # Mean and standard deviation pooling: colour statistics (palette, ground) live in both.
        self.project = nn.Linear(2 * spec.widths[-1], spec.feature_dim)
        self.heads = nn.ModuleDict({name: nn.Linear(spec.feature_dim, len(classes))
                                    for name, classes in spec.labels.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, feature_dim) of images (B, 3, H, W) in [0, 1]."""
        x = F.interpolate(images.float(), size=(self.spec.image_size,) * 2, mode="bilinear", antialias=True,
                          align_corners=False) if images.shape[-1] != self.spec.image_size or \
            images.shape[-2] != self.spec.image_size else images.float()
        h = self.stages(x * 2 - 1)  # (B, C, h, w)
        pooled = torch.cat([h.mean((2, 3)), h.std((2, 3))], dim=1)
        return F.silu(self.project(pooled))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head."""
        feats = self.features(images)
        return {name: head(feats) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, list[str]]:
        """The most likely class name per head for each image."""
        logits = self(images)
        return {name: [self.spec.labels[name][i] for i in out.argmax(1).tolist()] for name, out in logits.items()}


def save_judge(judge: Judge, directory: Path) -> Path:
    """Write the judge as safetensors weights plus a JSON spec, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file({k: v.contiguous() for k, v in judge.state_dict().items()}, str(tmp))
    atomic_write_json(directory / CONFIG_NAME, {"kind": "judge", **asdict(judge.spec)})
    return directory


def load_judge(directory: Path, *, device: str | torch.device = "cpu") -> Judge:
    """Read a judge directory written by save_judge (no code runs from the files)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not config_path.is_file() or not weights_path.is_file():
        raise UserError(f"{directory} is not a judge directory (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    fix = "retrain it with `artdiff train judge` or point to another judge folder"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{config_path} is not valid JSON ({error}); {fix}") from None
    if not isinstance(config, dict) or config.pop("kind", None) != "judge":
        raise UserError(f"{config_path} does not describe a judge")
    try:
        config["widths"] = tuple(config.get("widths", JudgeSpec.widths))
        judge = Judge(JudgeSpec(**config))
    except (TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{config_path} is not a judge config ({str(error).splitlines()[0]}); {fix}") from None
    try:
        weights = load_file(str(weights_path))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own types for damaged files
        raise UserError(f"{weights_path} is damaged ({str(error).splitlines()[0] if str(error) else 'unreadable'}); "
                        f"{fix}") from None
    try:
        judge.load_state_dict(weights)
    except RuntimeError:
        raise UserError(f"{weights_path} does not match {config_path} (other labels or sizes); {fix}") from None
    return judge.to(device).eval()
