"""Options of `artdiff train unconditional`, light enough for `--help` (no torch, no diffusers)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Literal

from artdiff.config import check_all, option
from artdiff.train.loop_config import LoopConfig
from artdiff.train.unconditional_presets import OWN_PRESETS, PRESET_NAMES

# The diffusion of a model built from a pixel-* preset; --init models and published presets bring their own.
FROM_SCRATCH = ("learn_sigma", "noise_schedule", "diffusion_steps", "predict_xstart", "v_prediction",
                "rescale_timesteps")


@dataclass
class UnconditionalConfig(LoopConfig):
    """improved-diffusion's recipe (Nichol & Dhariwal 2021) on the shared loop; the loop's options come with it."""

    data: Path = option(Path("data"), "dataset folder (images + manifest.jsonl), e.g. from artdiff prepare or synth",
                        cli=False)
    init: str | None = option(None, "fine-tune this model: an unconditional model directory, a run directory, or "
                                    "an original improved/guided-diffusion .pt (with --flags)", metavar="MODEL")
    flags: str | None = option(None, "the original file's MODEL_FLAGS/DIFFUSION_FLAGS, or a preset name "
                                     "(lsun-uncond-256, openai-256-uncond, clip-diffusion-art-256)", metavar="FLAGS")
    preset: str = option("pixel-mini", "architecture when training from scratch: " + ", ".join(PRESET_NAMES))
    size: int | None = option(None, "training image side in pixels (default: the model's image size)")
    flip: bool = option(False, "random horizontal flips (drawn from each example's seed)")
    timestep_sampler: Literal["uniform", "loss-second-moment"] = option(
        "uniform", "how training timesteps are drawn: uniformly, or by improved-diffusion's importance sampler")
    # FROM_SCRATCH: only with a pixel-* preset; --init models and published presets refuse them (see __post_init__)
    learn_sigma: bool = option(True, "from scratch with a pixel-* preset only: learn the variance (learned range, "
                                     "trained by the vb term)")
    noise_schedule: Literal["linear", "cosine"] = option("linear", "from scratch with a pixel-* preset only: betas, "
                                                                   "linear (Ho et al.) or cosine (Nichol & Dhariwal)")
    diffusion_steps: int = option(1000, "from scratch with a pixel-* preset only: training timesteps T")
    predict_xstart: bool = option(False, "from scratch with a pixel-* preset only: the UNet predicts x0 instead of "
                                         "eps")
    v_prediction: bool = option(False, "from scratch with a pixel-* preset only: the UNet predicts v = sqrt(a) eps - "
                                       "sqrt(1 - a) x0 (Salimans & Ho 2022), accurate at high noise where eps is not")
    rescale_timesteps: bool = option(False, "from scratch with a pixel-* preset only: the UNet sees t * 1000 / T "
                                            "instead of t (--init models and published presets bring their own "
                                            "diffusion; these options are refused with them)")
    rescale_learned_sigmas: bool | None = option(None, "weight the vb term by T / 1000 (lambda 0.001 for any T; "
                                                        "no change at T = 1000); default: as the --init or "
                                                        "published model's flags say, else off")
    snr_gamma: float | None = option(None, "min-SNR-gamma weighting of the MSE term (Hang et al. 2023; 5 is the "
                                           "paper's choice): caps the weight of nearly clean steps", metavar="GAMMA")
    lr: float = option(1e-4, "peak learning rate (AdamW)")
    ema_decay: float = option(0.9999, "EMA of the weights, used for samples and the final model (0 disables)")
    sample_steps: int = option(25, "DDIM steps of the fixed-seed sample grids")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.data = Path(self.data)
        if self.init is not None:
            self.init = str(self.init)
        linear = self.noise_schedule == "linear"
        defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
        ignored = [name for name in FROM_SCRATCH if getattr(self, name) != defaults[name]]
        own = self.init is None and self.preset in OWN_PRESETS
        whose = "the --init model" if self.init is not None else f"--preset {self.preset}"
        check_all([
            (own or not ignored, f"{', '.join('--' + n.replace('_', '-') for n in ignored)}: {whose} brings its "
                                 "own diffusion (schedule, steps, variance, target, timestep scaling); these options "
                                 "apply only when training from scratch with a pixel-* preset, so drop them"),
            (self.preset in PRESET_NAMES, f"--preset {self.preset!r} is not one of {', '.join(PRESET_NAMES)}"),
            (self.flags is None or self.init is not None, "--flags describes an original checkpoint: give it with "
                                                          "--init FILE.pt"),
            (self.size is None or 8 <= self.size <= 4096, "--size must be 8 to 4096 pixels"),
            (2 <= self.diffusion_steps <= 100_000, "--diffusion-steps must be 2 to 100,000"),
            # improved-diffusion scales the linear betas by 1000 / T, so beta_end = 20 / T must stay below 1.
            (not linear or self.diffusion_steps > 20, "--diffusion-steps must be above 20 with the linear schedule "
                                                      "(its betas scale by 1000 / T); use --noise-schedule cosine"),
            (1 <= self.sample_steps <= 1000, "--sample-steps must be 1 to 1000"),
            (not (self.predict_xstart and self.v_prediction), "--predict-xstart and --v-prediction pick different "
                                                              "targets; give one"),
            (self.snr_gamma is None or 0 < self.snr_gamma <= 1e6, "--snr-gamma must be above 0 (5 is usual)"),
        ])
