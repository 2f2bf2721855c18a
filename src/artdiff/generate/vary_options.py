"""One `artdiff vary` request; light (no torch) so that `artdiff vary --help` starts at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artdiff.config import option
from artdiff.generate.options import Sampler, check_sampling


@dataclass
class VaryOptions:
    """One variations request."""

    image: str = option("", "the image to make variations of", cli=False)
    model: str | None = option(None, "image-variation model folder or hub id, e.g. "
                                     "lambdalabs/sd-image-variations-diffusers (required)")
    n: int = option(4, "number of variations", flag="-n")
    batch_size: int = option(1, "variations sampled together (memory grows with it); each is written when its "
                                "batch is done")
    # The model card's and its training repository's scale; diffusers' pipeline defaults to 7.5.
    cfg: float = option(3.0, "classifier-free guidance scale, 0 to 100")
    steps: int = option(50, "sampling steps (1 to 1000)")
    sampler: Sampler = option("dpm++2m", "sampler")
    karras: bool = option(False, "Karras et al. (2022) sigma spacing")
    eta: float | None = option(None, "noise of ddim / euler_a steps, 0 to 1 (default: 0 for ddim, 1 for euler_a)",
                               shown_default="per sampler")
    seed: int = option(-1, "image i uses seed + i, whatever -n or --batch-size is; -1 picks a random seed, else "
                           "0 to 4294967295")
    size: int | None = option(None, "square image side in pixels (default: the model's training size)")
    width: int | None = option(None, "image width in pixels (a multiple of 8)")
    height: int | None = option(None, "image height in pixels (a multiple of 8)")
    out: Path = option(Path("outputs/vary"), "folder for the images (NNNNN-SEED.png, numbered on from the highest "
                                             "there; nothing is replaced) and their JSON sidecars")

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("--model is required: an image-variation model folder or hub id, e.g. "
                             "lambdalabs/sd-image-variations-diffusers")
        if not self.image:
            raise ValueError("give the IMAGE to make variations of (on the command line or as `image:` in --config)")
        check_sampling(self)
