"""`artdiff quickstart --train OUT`: the whole artdiff-mini recipe, offline, from nothing.

1. a procedural art set (train) and a held-out one; 2. the judge; 3. a CLOOB joint encoder; 4. an
AutoencoderKL with its latent scale measured; 5. an embedding-LDM trained on image embeddings only;
6. an unconditional pixel model (improved-diffusion's recipe, artdiff-pixel-mini; --pixel-steps 0 skips it and
its evaluation, hours on 2 CPU cores at the default); 7. evaluations: the
embedding-LDM from text prompts, the pixel model by its style shares and FD-judge. Every stage writes its own
folder under OUT and is skipped when that folder is already complete, so an interrupted quickstart continues
where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from artdiff.data.synthetic import SynthConfig, generate_dataset
from artdiff.errors import UserError
from artdiff.evaluate.model_eval import ModelEvalConfig, evaluate_model
from artdiff.evaluate.pixel_eval import PixelEvalConfig, evaluate_pixel_model
from artdiff.studio.quickstart_config import QuickstartConfig  # noqa: F401 - light, for a fast --help
from artdiff.train.embedding_ldm import EmbeddingLDMConfig, train_embedding_ldm
from artdiff.train.encoder import EncoderTrainConfig, train_encoder
from artdiff.train.judge import JudgeTrainConfig, train_judge
from artdiff.train.unconditional import UnconditionalConfig, train_unconditional
from artdiff.train.vae import VaeTrainConfig, train_vae
from artdiff.utils.io import atomic_write_json


@dataclass
class QuickstartResult:
    """Where each stage's output is, how long it took, and the final evaluation."""

    out: Path
    model: Path
    seconds: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    pixel_model: Path | None = None
    pixel_evaluation: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"out": str(self.out), "model": str(self.model), "seconds": self.seconds, "evaluation": self.evaluation,
                "pixel_model": str(self.pixel_model) if self.pixel_model else None,
                "pixel_evaluation": self.pixel_evaluation}


PIXEL_EVAL_STEPS = 50  # DDIM steps of the pixel model's judged samples, as `artdiff generate` makes them

# Options that do not change what the stages make: a run may continue with other values of these.
FREE_OPTIONS = ("out", "progress", "pixel_samples")
OPTIONS_NAME = "quickstart-options.json"


def _check_options(cfg: QuickstartConfig) -> None:
    """Record the options in OUT, or refuse to continue a folder started with others (as a resumed run is)."""
    current = {k: v for k, v in json.loads(json.dumps(asdict(cfg), default=str)).items() if k not in FREE_OPTIONS}
    if cfg.out.exists() and not cfg.out.is_dir():
        raise UserError(f"--train {cfg.out} is a file; choose a folder for the quickstart")
    previous = (read_json(cfg.out / OPTIONS_NAME) or {}).get("options") or \
        (read_json(cfg.out / "quickstart.json") or {}).get("config")  # a run finished by an earlier artdiff
    if isinstance(previous, dict):
        # An option the earlier run did not record is newer than it, and so is the stage it shapes: still to run.
        changed = sorted(k for k in set(previous) | set(current)
                         if k not in FREE_OPTIONS and k in previous and previous.get(k) != current.get(k)
                         and not _skipping_pixels(k, previous, current))
        if changed:
            raise UserError(f"{cfg.out} holds a quickstart made with other options ({', '.join(changed)}); run it "
                            "with the same options to continue, or choose a new --train folder")
    cfg.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.out / OPTIONS_NAME, {"options": current})


def _skipping_pixels(key: str, previous: dict, current: dict) -> bool:
    """--pixel-steps 0 on either side: skipping the last stage changes nothing the others make (its own run folder
    checks its resumption), so a folder may go on without it, or gain it later."""
    return key == "pixel_steps" and 0 in (previous.get(key), current.get(key))


def read_json(path: Path) -> dict | None:
    """A small JSON record, or None when it is missing or unreadable (then nothing is known about the run)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_quickstart(cfg: QuickstartConfig) -> QuickstartResult:
    """Run the stages in order, each skipped when its output is already complete."""
    out, tiny = cfg.out, cfg.scale == "tiny"
    _check_options(cfg)
    seconds: dict[str, float] = {}
    common = {"seed": cfg.seed, "progress": cfg.progress}

    def stage(name: str, done: Path, work) -> None:
        if done.exists():
            return
        started = time.perf_counter()
        work()
        if not done.exists():  # the stage stopped early (Ctrl-C, SIGTERM) and kept its checkpoint
            raise KeyboardInterrupt(f"stage {name} stopped before it finished; run the same command to continue")
        seconds[name] = round(time.perf_counter() - started, 1)

    data, heldout = out / "synth", out / "synth-heldout"
    stage("synth", data / "manifest.jsonl", lambda: generate_dataset(SynthConfig(
        out=data, n=cfg.images, size=cfg.size, **common)))
    stage("synth-heldout", heldout / "manifest.jsonl", lambda: generate_dataset(SynthConfig(
        out=heldout, n=max(16, cfg.images // 10), size=cfg.size, seed=cfg.seed + 1, progress=cfg.progress)))
    stage("judge", out / "judge" / "model" / "judge.safetensors", lambda: train_judge(JudgeTrainConfig(
        data=data, out=out / "judge", epochs=cfg.judge_epochs, image_size=16 if tiny else 32,
        warmup_steps=1 if tiny else 100, **common)))
    stage("encoder", out / "encoder" / "artdiff.json", lambda: train_encoder(EncoderTrainConfig(
        data=data, out=out / "encoder", loss="cloob", preset="tiny" if tiny else "mini",
        max_steps=cfg.encoder_steps, batch_size=8 if tiny else 256, warmup_steps=1 if tiny else 50, **common)))
    stage("vae", out / "vae" / "model" / "artdiff.json", lambda: train_vae(VaeTrainConfig(
        data=data, out=out / "vae", preset="tiny" if tiny else "mini", size=cfg.size, max_steps=cfg.vae_steps,
        batch_size=8 if tiny else 16, warmup_steps=1 if tiny else 100, checkpoint_every=500,
        mixed_precision="bf16", **common)))  # bf16 autocast: about 1.7x faster convolutions, on CPU too
    stage("embedding-ldm", out / "ldm" / "model" / "artdiff.json", lambda: train_embedding_ldm(EmbeddingLDMConfig(
        data=data, encoder=str(out / "encoder"), vae=out / "vae" / "model", out=out / "ldm",
        preset="tiny" if tiny else "mini", size=cfg.size, max_steps=cfg.ldm_steps, batch_size=8 if tiny else 32,
        warmup_steps=1 if tiny else 300, checkpoint_every=1000, sample_every=0 if tiny else 2000, **common)))
    if cfg.pixel_steps:  # --pixel-steps 0 skips the stage (hours on 2 CPU cores at the default)
        stage("pixel", out / "pixel" / "model" / "artdiff.json", lambda: train_unconditional(UnconditionalConfig(
            data=data, out=out / "pixel", preset="pixel-tiny" if tiny else "pixel-mini", size=cfg.size,
            max_steps=cfg.pixel_steps, batch_size=4 if tiny else 32, lr=3e-4, warmup_steps=1 if tiny else 200,
            lr_schedule="constant", ema_decay=0.999, flip=True, noise_schedule="cosine", v_prediction=True,
            snr_gamma=5.0, checkpoint_every=250, sample_every=0 if tiny else 1000, sample_steps=2 if tiny else 25,
            mixed_precision="bf16", **common)))
    # v-prediction: eps models trained this long sampled textures with no layout (FD 63-78x real-vs-real), their
    # x0 at high noise worse than predicting the mean; min-SNR 5 keeps the easy low-noise steps from dominating;
    # constant lr + EMA 0.999: any checkpoint is a finished model; bf16: 2x on CPU too
    model, pixel_model = out / "ldm" / "model", out / "pixel" / "model" if cfg.pixel_steps else None
    evaluation = evaluate_model(ModelEvalConfig(model=str(model), judge=out / "judge" / "model",
                                                samples_per_prompt=1 if tiny else 4, image_prompts=4 if tiny else 32,
                                                diversity_samples=3 if tiny else 8,
                                                steps=2 if tiny else 50)).to_json()
    pixel_evaluation = {} if pixel_model is None else evaluate_pixel_model(PixelEvalConfig(
        model=str(pixel_model), judge=out / "judge" / "model", samples=cfg.pixel_samples,
        steps=2 if tiny else PIXEL_EVAL_STEPS, sampler="ddim", seed=cfg.seed)).to_json()
    result = QuickstartResult(out=out, model=model, seconds=seconds, evaluation=evaluation, pixel_model=pixel_model,
                              pixel_evaluation=pixel_evaluation)
    atomic_write_json(out / "quickstart.json", {**result.to_json(), "config": json.loads(json.dumps(
        asdict(cfg), default=str))})
    return result
