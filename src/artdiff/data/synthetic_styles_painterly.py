"""Painting procedures for the procedural art set: the painterly styles (fields, drips, dots, waves).

Same contract as synthetic_styles: unit coordinates, whole-pixel rounding, draws independent of size.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from artdiff.data.synthetic_styles import RGB, Canvas, Paints, Point, mix, uniform


def paint_rothko(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Paint two to four soft-edged stacked fields of colour, after Rothko's classic works (1950s)."""
    # At least three fields when the palette has only three paints, so each of them shows.
    n = max(int(rng.choice([2, 2, 3, 3, 3, 4])), min(3, len(paints.colors)))
    c.image.paste(mix(paints.ground, paints.cycle(n), 0.08), (0, 0, c.px, c.px))
    side, top, bottom = uniform(rng, 0.08, 0.14), uniform(rng, 0.06, 0.12), uniform(rng, 0.06, 0.12)
    gap = uniform(rng, 0.03, 0.07)
    heights = rng.uniform(0.4, 1.6, n)
    heights = heights / heights.sum() * (1 - top - bottom - gap * (n - 1))
    y = top
    for i in range(n):
        color = paints.cycle(i)
        x0, x1 = side + uniform(rng, -0.015, 0.015), 1 - side + uniform(rng, -0.015, 0.015)
        _soft_block(c, rng, (x0, y, x1, y + float(heights[i])), color)
        y += float(heights[i]) + gap


def _soft_block(c: Canvas, rng: np.random.Generator, box: tuple[float, float, float, float], color: RGB) -> None:
    """A rectangle with ragged, blurred edges and a mottled, uneven body of paint."""
    x0, y0, x1, y1 = box
    ragged = 0.006
    top = [(x0 + (x1 - x0) * t / 10, y0 + uniform(rng, -ragged, ragged)) for t in range(11)]
    right = [(x1 + uniform(rng, -ragged, ragged), y0 + (y1 - y0) * t / 6) for t in range(1, 6)]
    bottom = [(x1 - (x1 - x0) * t / 10, y1 + uniform(rng, -ragged, ragged)) for t in range(11)]
    left = [(x0 + uniform(rng, -ragged, ragged), y1 - (y1 - y0) * t / 6) for t in range(1, 6)]
    mask = Image.new("L", (c.px, c.px), 0)
    ImageDraw.Draw(mask).polygon(c.pts(top + right + bottom + left), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(c.px * uniform(rng, 0.004, 0.012)))
    # Low-frequency noise decides where the second tone shows: the scumbled, breathing surface.
    noise = Image.fromarray((rng.random((5, 5)) * 255).astype(np.uint8), "L")
    noise = noise.resize((c.px, c.px), Image.Resampling.BICUBIC)
    tone = mix(color, (255, 255, 255) if rng.random() < 0.5 else (0, 0, 0), uniform(rng, 0.1, 0.2))
    body = Image.composite(Image.new("RGB", (c.px, c.px), tone), Image.new("RGB", (c.px, c.px), color), noise)
    c.image.paste(body, mask=mask)


def paint_pollock(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Paint layered drips, skeins and splatters, after Pollock's poured paintings (1947-50)."""
    layers = [paints.cycle(i) for i in range(len(paints.colors))] + [paints.ink, paints.ink]
    for i in rng.permutation(len(layers)):
        color = layers[int(i)]
        for k in range(int(rng.integers(4, 10))):
            # One heavy pour per colour carries the palette; the ink stays in fine, whipped skeins.
            _skein(c, rng, color, scale=0.5 if color == paints.ink else 2.0 if k == 0 else 1.0)
    for _ in range(int(rng.integers(3, 8))):  # splatter clusters where the stick was flicked
        x, y, spread = uniform(rng, 0, 1), uniform(rng, 0, 1), uniform(rng, 0.02, 0.08)
        color = paints.pick(rng) if rng.random() < 0.7 else paints.ink
        for _ in range(int(rng.integers(4, 12))):
            c.circle(x + float(rng.normal(0, spread)), y + float(rng.normal(0, spread)),
                     uniform(rng, 0.002, 0.008), color)


def _skein(c: Canvas, rng: np.random.Generator, color: RGB, *, scale: float = 1.0) -> None:
    """One poured line: a wandering path whose width swells and thins as the pour speed changes."""
    x, y = uniform(rng, -0.1, 1.1), uniform(rng, -0.1, 1.1)
    heading, curl = uniform(rng, 0, 2 * math.pi), uniform(rng, 0.1, 0.7)
    # Thick enough that the paint keeps its colour at 32 px, where thinner lines blur into the ground.
    step, width = uniform(rng, 0.015, 0.04), uniform(rng, 0.006, 0.02) * scale
    points: list[Point] = [(x, y)]
    for turn in rng.normal(0, curl, int(rng.integers(12, 40))):
        heading += float(turn)
        x, y = x + step * math.cos(heading), y + step * math.sin(heading)
        points.append((x, y))
    start = 0
    while start < len(points) - 1:
        end = min(len(points), start + int(rng.integers(3, 9)))
        c.line(points[start:end], color, width * uniform(rng, 0.4, 1.6))
        start = end - 1
    for _ in range(int(rng.integers(0, 4))):
        px, py = points[int(rng.integers(len(points)))]
        c.circle(px, py, width * uniform(rng, 0.6, 1.5), color)


def paint_pointillist(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Paint a scene in separate dots of pure colour, after Seurat's pointillism (1884-91)."""
    n = int(rng.integers(12, 19))
    spacing = 1.0 / n
    cells = np.arange(n * n)
    xs = (cells % n + 0.5 + rng.uniform(-0.35, 0.35, n * n)) * spacing
    ys = (cells // n + 0.5 + rng.uniform(-0.35, 0.35, n * n)) * spacing
    region = _landscape(rng, xs, ys) if rng.random() < 0.6 else _blobs(rng, xs, ys)
    # Some of the dots take another paint: the optical mixing the method relies on.
    swap = rng.random(n * n) < uniform(rng, 0.1, 0.22)
    other = rng.integers(0, len(paints.colors), n * n)
    index = np.where(swap, other, region)
    radius = rng.uniform(0.26, 0.4, n * n) * spacing  # small enough that the ground shows between dots
    for i in rng.permutation(n * n):
        c.circle(float(xs[i]), float(ys[i]), float(radius[i]), paints.cycle(int(index[i])))


def _landscape(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Paint index per dot for a sky with a sun over hills and water: 0-1 sky, 2 sun, 3-4 land."""
    horizon = np.interp(xs, np.linspace(0, 1, 6), rng.uniform(0.45, 0.7, 6))
    sun_x, sun_y, sun_r = uniform(rng, 0.2, 0.8), uniform(rng, 0.12, 0.35), uniform(rng, 0.07, 0.14)
    sky_mix = rng.random(xs.shape) < ys / horizon  # the lower sky shifts to the second paint
    region = np.where(sky_mix, 1, 0)
    region = np.where((xs - sun_x) ** 2 + (ys - sun_y) ** 2 < sun_r**2, 2, region)
    band = ((ys - horizon) * uniform(rng, 8, 14)).astype(int) % 2  # furrows or ripples below the horizon
    return np.where(ys > horizon, 3 + band, region)


def _blobs(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Paint index per dot for a few round masses (a bouquet, a crowd of trees) on a field."""
    count = int(rng.integers(3, 6))
    best = np.zeros(xs.shape)
    region = np.zeros(xs.shape, dtype=int)
    for k in range(count):
        bx, by, br = uniform(rng, 0.15, 0.85), uniform(rng, 0.15, 0.85), uniform(rng, 0.12, 0.3)
        score = 1 - ((xs - bx) ** 2 + (ys - by) ** 2) / br**2
        region = np.where(score > best, k + 1, region)
        best = np.maximum(best, score)
    return region


def paint_ukiyo_e(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Paint outlined, clawed breaking waves under an open sky, after Hokusai's Great Wave (c. 1831)."""
    if rng.random() < 0.6:
        c.circle(uniform(rng, 0.15, 0.85), uniform(rng, 0.1, 0.25), uniform(rng, 0.05, 0.1), paints.cycle(0))
    else:
        _mountain(c, rng, paints)
    for _ in range(int(rng.integers(1, 4))):  # long flat clouds, drawn as in woodblock prints
        x, y, w = uniform(rng, -0.1, 0.8), uniform(rng, 0.05, 0.3), uniform(rng, 0.15, 0.4)
        h = uniform(rng, 0.012, 0.03)
        c.draw.rounded_rectangle((c.p(x), c.p(y), c.p(x + w), c.p(y + h)), radius=c.p(h / 2),
                                 fill=mix(paints.ground, paints.cycle(1), 0.35))
    layers = int(rng.integers(3, 6))
    for i in range(layers):
        depth = i / max(1, layers - 1)  # 0 = far, 1 = near
        _wave(c, rng, paints, base=0.42 + 0.42 * depth + uniform(rng, -0.03, 0.03),
              amp=0.05 + 0.2 * depth * uniform(rng, 0.6, 1.0), color=paints.cycle(i + 1))


def _mountain(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """A distant snow-capped cone, the Fuji that Hokusai sets behind his waves."""
    x, w, h = uniform(rng, 0.25, 0.75), uniform(rng, 0.14, 0.3), uniform(rng, 0.2, 0.32)
    base = uniform(rng, 0.48, 0.52)  # its foot hides behind the farthest waves
    cone = [(x - w, base), (x - 0.12 * w, base - h), (x + 0.12 * w, base - h), (x + w, base)]
    c.polygon(cone, paints.cycle(0))
    cap = 0.35
    c.polygon([(x - 0.12 * w - cap * 0.88 * w, base - h + cap * h), (x - 0.12 * w, base - h),
               (x + 0.12 * w, base - h), (x + 0.12 * w + cap * 0.88 * w, base - h + cap * h)], paints.light)


def _wave(c: Canvas, rng: np.random.Generator, paints: Paints, *, base: float, amp: float, color: RGB) -> None:
    """One band of sea: narrow leaning crests, parallel water lines inside, foam claws on the peaks."""
    freq, phase = uniform(rng, 1.2, 3.5), uniform(rng, 0, 2 * math.pi)
    sharp, lean = uniform(rng, 2.0, 4.0), uniform(rng, -0.06, 0.06)
    count = 48

    def crest(t: float) -> float:
        # A raised sine makes narrow peaks over wide troughs, like the clawing crests of the prints.
        return ((1 + math.sin(2 * math.pi * freq * t + phase)) / 2) ** sharp

    xs = [i / count * 1.2 - 0.1 for i in range(count + 1)]
    heights = [crest(x) for x in xs]
    top = [(x + lean * h, base - amp * h) for x, h in zip(xs, heights)]
    c.polygon(top + [(1.2, 1.2), (-0.2, 1.2)], color)
    line_color = mix(color, paints.light, 0.45)
    for j in range(1, int(rng.integers(2, 5))):
        drop = j * uniform(rng, 0.025, 0.04)
        c.line([(x, y + drop * (1 + 0.5 * h)) for (x, y), h in zip(top, heights)], line_color, 0.004)
    c.line(top, paints.dark, 0.006)
    for (x, y), h in zip(top, heights):
        if h > 0.8 and amp > 0.08 and rng.random() < 0.6:  # foam flecks break off the tallest crests
            for _ in range(int(rng.integers(3, 7))):
                c.circle(x + uniform(rng, -0.035, 0.035), y - uniform(rng, 0.0, 0.035),
                         uniform(rng, 0.006, 0.016), paints.light)
