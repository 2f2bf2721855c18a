"""Cut the predicted image for CLIP guidance as clip-diffusion-art (MakeCutouts) and Disco (MakeCutoutsDango) do.

Written from the anchors' described behaviour. Inputs are images x (B, 3, H, W) in [-1, 1]; outputs are cutouts
(B, N, 3, S, S) in [-1, 1], differentiable with respect to x. Inside, the work is done in [0, 1], where the
anchors work, so their zero padding and zero warp fill are black. Every random draw comes from the passed
generator (on its own device), never the global RNG. Where we differ from the anchors, on purpose:
- one crop box serves every image of the batch (as in both anchors), but each (image, cut) pair draws its own
  augmentation parameters (Disco's torchvision transforms on a batch flip or rotate all cuts or none);
- augmentations run after the resize to S, on all B*N cuts in one batched warp (the geometry is the same in
  normalised coordinates; only the resampling differs), instead of one warp per crop at crop resolution;
- crops are resized by area averaging (adaptive average pooling), bilinear only when a crop is smaller than S;
- Disco's grey inner cuts are the first round(ic_grey_p * innercut) (its code greys one more, even at p 0), its
  overview pattern (plain, grey, flipped, grey flipped) repeats past 4 views (its code repeats plain copies), and
  its colour jitter is brightness, contrast and saturation 0.1 in a fixed order, without the hue shift.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.geometry.transform import (
    get_perspective_transform,
    get_rotation_matrix2d,
    warp_affine,
    warp_perspective,
)
from torch import Tensor

Box = tuple[int, int, int]  # (top, left, side) of a square crop


class Cutouts(ABC):
    """Share the call, the count and the checks of the cutout makers (S is the encoder's input side)."""

    def __init__(self, *, size: int, skip_augs: bool, fixed: bool) -> None:
        self.size = _integer("size", size, minimum=1)
        self.skip_augs = bool(skip_augs)
        self.fixed = bool(fixed)  # no randomness at all: a fixed layout of cuts and no augmentations

    @property
    @abstractmethod
    def count(self) -> int:
        """Return N, the number of cutouts per image."""

    def __call__(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Cut x (B, 3, H, W) in [-1, 1] into (B, N, 3, S, S) in [-1, 1]; generator may be None only when fixed."""
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(f"cutouts need float images of shape (B, 3, H, W); got {getattr(x, 'shape', type(x))}")
        if generator is None and not self.fixed:
            raise ValueError("random cutouts need a torch.Generator (pass generator=..., or use fixed=True)")
        u = (x + 1) / 2  # (B, 3, H, W) in [0, 1], where the anchors cut
        cuts = self._cuts(u, generator)  # (B, N, 3, S, S)
        return cuts * 2 - 1

    @abstractmethod
    def _cuts(self, u: Tensor, generator: torch.Generator | None) -> Tensor:
        """Cut u (B, 3, H, W) in [0, 1] into (B, N, 3, S, S) in [0, 1]."""

    def _augment(self, cuts: Tensor, generator: torch.Generator | None, augs) -> Tensor:
        if self.fixed or self.skip_augs:
            return cuts
        return augs(cuts.flatten(0, 1), generator).unflatten(0, cuts.shape[:2])


class CdaCutouts(Cutouts):
    """Make clip-diffusion-art's cutouts: pad a quarter, sides ~ N(0.8, 0.3), the last quarter full, kornia augs."""

    def __init__(self, *, cutn: int, size: int, skip_augs: bool = False, fixed: bool = False) -> None:
        super().__init__(size=size, skip_augs=skip_augs, fixed=fixed)
        self.cutn = _integer("cutn", cutn, minimum=1)

    @property
    def count(self) -> int:
        """Return N = cutn."""
        return self.cutn

    def _cuts(self, u: Tensor, generator: torch.Generator | None) -> Tensor:
        padded = cda_pad(u)  # (B, 3, H + 2p, W + 2p), black border
        height, width = padded.shape[-2:]
        side_max = min(height, width)
        side_min = min(self.size, side_max)  # never upsample a crop unless the image is smaller than S
        n_full = self.cutn // 4
        n_crop = self.cutn - n_full
        if self.fixed:
            side = min(max(int(0.8 * side_max), side_min), side_max)  # the distribution's mean
            boxes = _grid_boxes([side] * n_crop, height, width)
        else:
            frac = (_randn(generator, n_crop) * 0.3 + 0.8).clamp(side_min / side_max, 1.0)
            sides = [max(1, int(f * side_max)) for f in frac.tolist()]
            boxes = _random_boxes(sides, height, width, generator)
        full = _resize(padded, self.size)  # the last quarter: the whole padded image, squashed to S x S
        cuts = [_crop_resize(padded, box, self.size) for box in boxes] + [full] * n_full
        return self._augment(torch.stack(cuts, 1), generator, cda_augs)  # (B, N, 3, S, S)


class DiscoCutouts(Cutouts):
    """Make Disco Diffusion's cutouts: overview views of the padded square, then inner crops, then Disco's augs."""

    def __init__(self, *, overview: int, innercut: int, size: int, ic_pow: float = 1.0, ic_grey_p: float = 0.2,
                 skip_augs: bool = False, fixed: bool = False) -> None:
        super().__init__(size=size, skip_augs=skip_augs, fixed=fixed)
        self.overview = _integer("overview", overview, minimum=0)
        self.innercut = _integer("innercut", innercut, minimum=0)
        if self.overview + self.innercut < 1:
            raise ValueError("Disco cutouts need at least one cut: raise --cut-overview or --cut-innercut above 0")
        if not isinstance(ic_pow, int | float) or not math.isfinite(ic_pow) or ic_pow <= 0:
            raise ValueError(f"--cut-ic-pow must be a number above 0 (got {ic_pow!r})")
        if not isinstance(ic_grey_p, int | float) or not 0 <= ic_grey_p <= 1:
            raise ValueError(f"--cut-icgray-p must be a number in [0, 1] (got {ic_grey_p!r})")
        self.ic_pow = float(ic_pow)
        self.ic_grey_p = float(ic_grey_p)

    @property
    def count(self) -> int:
        """Return N = overview + innercut."""
        return self.overview + self.innercut

    @property
    def n_grey_inner(self) -> int:
        """Return how many of the first inner cuts are greyscale (ic_grey_p * innercut, rounded half up)."""
        return math.floor(self.ic_grey_p * self.innercut + 0.5)

    def _cuts(self, u: Tensor, generator: torch.Generator | None) -> Tensor:
        cuts = self._overviews(u) + self._inner(u, generator)
        return self._augment(torch.stack(cuts, 1), generator, disco_augs)  # (B, N, 3, S, S)

    def _overviews(self, u: Tensor) -> list[Tensor]:
        if self.overview == 0:
            return []
        view = _resize(pad_to_square(u), self.size)  # (B, 3, S, S)
        variants = [view, _grey(view), view.flip(-1), _grey(view.flip(-1))]  # Disco's 1..4 pattern
        return [variants[i % 4] for i in range(self.overview)]

    def _inner(self, u: Tensor, generator: torch.Generator | None) -> list[Tensor]:
        if self.innercut == 0:
            return []
        height, width = u.shape[-2:]
        # Disco's sizing: sides from min(S, short side) (no upsampling when the image allows) up to the short side.
        side_max = min(height, width)
        side_min = min(self.size, side_max)
        if self.fixed:
            r = (torch.arange(self.innercut, dtype=torch.float64) + 0.5) / self.innercut  # evenly spread quantiles
        else:
            r = _rand(generator, self.innercut).double()
        sides = [min(max(1, int(v)), side_max) for v in (r ** self.ic_pow * (side_max - side_min) + side_min).tolist()]
        if self.fixed:
            boxes = _grid_boxes(sides, height, width)
        else:
            boxes = _random_boxes(sides, height, width, generator)
        cuts = [_crop_resize(u, box, self.size) for box in boxes]
        return [_grey(c) if i < self.n_grey_inner else c for i, c in enumerate(cuts)]


def cda_pad(u: Tensor) -> Tensor:
    """Pad (B, 3, H, W) by a quarter of its short side on every side with zeros (black in [0, 1], as the anchor)."""
    pad = min(u.shape[-2:]) // 4
    return F.pad(u, (pad, pad, pad, pad))


def pad_to_square(u: Tensor) -> Tensor:
    """Pad (B, 3, H, W) to a centred square with zeros (black in [0, 1]); the odd pixel goes bottom or right."""
    height, width = u.shape[-2:]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return F.pad(u, (left, side - width - left, top, side - height - top))


def cda_augs(x: Tensor, generator: torch.Generator) -> Tensor:
    """Augment (M, 3, S, S) in [0, 1] as clip-diffusion-art's kornia stack: flip, affine, perspective, greyscale."""
    m = x.shape[0]
    x = _where(_chance(generator, m, 0.5), x, lambda v, _: v.flip(-1))
    # RandomAffine(degrees=15, translate=0.1, p=0.8, padding_mode="border"), as the anchor sets it.
    x = _affine(x, generator, degrees=15.0, translate=0.1, p=0.8, padding_mode="border")
    x = _perspective(x, generator, distortion=0.4, p=0.7)
    return _where(_chance(generator, m, 0.15), x, lambda v, _: _grey(v))


def disco_augs(x: Tensor, generator: torch.Generator) -> Tensor:
    """Augment (M, 3, S, S) in [0, 1] as Disco's stack: flip, noise, affine, noise, greyscale, noise, colour jitter."""
    m = x.shape[0]
    x = _where(_chance(generator, m, 0.5), x, lambda v, _: v.flip(-1))
    x = x + _randn(generator, *x.shape).to(x) * 0.01
    x = _affine(x, generator, degrees=10.0, translate=0.05, p=1.0, padding_mode="zeros")  # torchvision: always on
    x = x + _randn(generator, *x.shape).to(x) * 0.01
    x = _where(_chance(generator, m, 0.1), x, lambda v, _: _grey(v))
    x = x + _randn(generator, *x.shape).to(x) * 0.01
    return _colour_jitter(x, generator, strength=0.1)  # clamps to [0, 1] as torchvision's blends do


def _affine(x: Tensor, generator: torch.Generator, *, degrees: float, translate: float, p: float,
            padding_mode: str) -> Tensor:
    """Rotate about the centre by U(-degrees, degrees) and shift by U(-translate, translate) of the side, with p."""
    m, _, height, width = x.shape
    apply = _chance(generator, m, p)
    angle = _uniform(generator, m, -degrees, degrees)
    shift = _uniform(generator, m * 2, -translate, translate).reshape(m, 2) * torch.tensor([width, height])
    centre = torch.tensor([[(width - 1) / 2, (height - 1) / 2]]).expand(m, 2)
    matrix = get_rotation_matrix2d(centre, angle, torch.ones(m, 2)).clone()  # (M, 2, 3), pixel coordinates
    matrix[:, :, 2] += shift
    matrix = matrix.to(x)
    return _where(apply, x, lambda v, sel: warp_affine(v, matrix[sel], (height, width), padding_mode=padding_mode))


def _perspective(x: Tensor, generator: torch.Generator, *, distortion: float, p: float) -> Tensor:
    """Move each corner inwards by up to distortion * side / 2 (kornia's RandomPerspective), with p."""
    m, _, height, width = x.shape
    apply = _chance(generator, m, p)
    start = torch.tensor([[0.0, 0.0], [width - 1, 0.0], [width - 1, height - 1], [0.0, height - 1]])
    inward = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    reach = torch.tensor([distortion * width / 2, distortion * height / 2])
    end = start + _rand(generator, m * 8).reshape(m, 4, 2) * reach * inward  # (M, 4, 2)
    matrix = get_perspective_transform(start.expand(m, 4, 2), end).to(x)  # (M, 3, 3)
    return _where(apply, x, lambda v, sel: warp_perspective(v, matrix[sel], (height, width)))


def _colour_jitter(x: Tensor, generator: torch.Generator, *, strength: float) -> Tensor:
    """Scale brightness, contrast and saturation by U(1 - strength, 1 + strength) each, clamping as torchvision."""
    m = x.shape[0]
    factors = _uniform(generator, m * 3, 1 - strength, 1 + strength).reshape(3, m, 1, 1, 1).to(x)
    x = (x * factors[0]).clamp(0, 1)
    mean = rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # (M, 1, 1, 1), torchvision's contrast pivot
    x = ((x - mean) * factors[1] + mean).clamp(0, 1)
    grey = rgb_to_grayscale(x)  # (M, 1, S, S)
    return ((x - grey) * factors[2] + grey).clamp(0, 1)


def _where(mask: Tensor, x: Tensor, fn) -> Tensor:
    """Apply fn(rows, their indices) to the rows of x that mask selects; the other rows pass through untouched."""
    sel = mask.nonzero().flatten().to(x.device)
    if sel.numel() == 0:
        return x
    rows = x.index_select(0, sel)
    return x.index_copy(0, sel, fn(rows, sel))


def _grey(x: Tensor) -> Tensor:
    """Replace (M, 3, h, w) by its ITU-R 601 luma in all three channels (torchvision's and kornia's weights)."""
    return rgb_to_grayscale(x).expand_as(x)


def _resize(x: Tensor, size: int) -> Tensor:
    """Resize (M, 3, h, w) to (M, 3, S, S) by area averaging; bilinear where a side must grow."""
    if min(x.shape[-2:]) >= size:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _crop_resize(x: Tensor, box: Box, size: int) -> Tensor:
    top, left, side = box
    return _resize(x[:, :, top:top + side, left:left + side], size)


def _random_boxes(sides: list[int], height: int, width: int, generator: torch.Generator) -> list[Box]:
    """Place each square uniformly at random inside (height, width), as randint(0, room + 1) does."""
    where = _rand(generator, len(sides) * 2).reshape(len(sides), 2).tolist()
    boxes = []
    for side, (fy, fx) in zip(sides, where):
        rows, cols = height - side, width - side
        boxes.append((min(int(fy * (rows + 1)), rows), min(int(fx * (cols + 1)), cols), side))
    return boxes


def _grid_boxes(sides: list[int], height: int, width: int) -> list[Box]:
    """Place the squares on a fixed raster spanning the image, row by row (the fixed, generator-free mode)."""
    k = len(sides)
    cols = max(1, math.ceil(math.sqrt(k)))
    rows = max(1, math.ceil(k / cols))
    boxes = []
    for i, side in enumerate(sides):
        fy = (i // cols) / (rows - 1) if rows > 1 else 0.5
        fx = (i % cols) / (cols - 1) if cols > 1 else 0.5
        boxes.append((round(fy * (height - side)), round(fx * (width - side)), side))
    return boxes


def _rand(generator: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).cpu()


def _randn(generator: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(shape, generator=generator, device=generator.device)


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> Tensor:
    return _rand(generator, n) * (high - low) + low


def _chance(generator: torch.Generator, n: int, p: float) -> Tensor:
    return _rand(generator, n) < p  # (n,) bool


def _integer(name: str, value: int, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"cutout {name} must be a whole number of at least {minimum} (got {value!r})")
    return value
