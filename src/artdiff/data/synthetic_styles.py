"""Painting procedures for the procedural art set: canvas helpers and the geometric styles.

Every procedure draws in unit coordinates ([0, 1] across the canvas) with PIL at a supersampled size,
so one (seed, index) paints the same composition at any output size, and rounding every coordinate to
whole pixels keeps the result independent of the machine's floating-point library. The random draws
never depend on the size either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]
Point = tuple[float, float]


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Blend colour a towards b by t (0 keeps a, 1 gives b)."""
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


@dataclass
class Paints:
    """The colours of one image: its ground, an ink that contrasts with it, and the palette's paints."""

    ground: RGB
    ink: RGB
    colors: list[RGB]  # shuffled per image; cycling through them makes every paint appear

    def cycle(self, i: int) -> RGB:
        """The i-th paint, wrapping around, so the first len(colors) picks cover the whole palette."""
        return self.colors[i % len(self.colors)]

    def pick(self, rng: np.random.Generator) -> RGB:
        """A paint chosen at random."""
        return self.colors[int(rng.integers(len(self.colors)))]

    @property
    def light(self) -> RGB:
        """The lighter of ground and ink (foam, highlights)."""
        return max(self.ground, self.ink, key=sum)

    @property
    def dark(self) -> RGB:
        """The darker of ground and ink (outlines, leading)."""
        return min(self.ground, self.ink, key=sum)


class Canvas:
    """A square PIL canvas addressed in unit coordinates, drawn `ss` times larger than the output."""

    def __init__(self, size: int, ss: int, ground: RGB) -> None:
        self.size = size
        self.px = size * ss
        self.image = Image.new("RGB", (self.px, self.px), ground)
        self.draw = ImageDraw.Draw(self.image)

    def p(self, v: float) -> int:
        """A unit coordinate in whole canvas pixels."""
        return round(v * self.px)

    def w(self, width: float) -> int:
        """A unit line width in canvas pixels, never thinner than one."""
        return max(1, round(width * self.px))

    def pts(self, points: Sequence[Point]) -> list[tuple[int, int]]:
        """Unit points in whole canvas pixels."""
        return [(self.p(x), self.p(y)) for x, y in points]

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        """Fill the box [x0, x1) x [y0, y1), so boxes that share an edge neither overlap nor gap."""
        box = (self.p(x0), self.p(y0), self.p(x1) - 1, self.p(y1) - 1)
        if box[2] >= box[0] and box[3] >= box[1]:  # a box thinner than a pixel covers none
            self.draw.rectangle(box, fill=fill)

    def circle(self, cx: float, cy: float, r: float, fill: RGB | None = None, *, outline: RGB | None = None,
               width: float = 0.0, ry: float | None = None) -> None:
        """Draw a circle (an ellipse when `ry` is given), filled and/or outlined."""
        rx, ry_px = max(1, self.p(r)), max(1, self.p(r if ry is None else ry))
        x, y = self.p(cx), self.p(cy)
        self.draw.ellipse((x - rx, y - ry_px, x + rx, y + ry_px), fill=fill, outline=outline,
                          width=self.w(width) if outline is not None else 0)

    def line(self, points: Sequence[Point], fill: RGB, width: float) -> None:
        """Draw a polyline with rounded joints."""
        self.draw.line(self.pts(points), fill=fill, width=self.w(width), joint="curve")

    def polygon(self, points: Sequence[Point], fill: RGB) -> None:
        """Fill a polygon."""
        self.draw.polygon(self.pts(points), fill=fill)

    def finish(self) -> Image.Image:
        """Shrink to the output size; Lanczos over the supersampled drawing is the antialiasing."""
        if self.px == self.size:
            return self.image
        return self.image.resize((self.size, self.size), Image.Resampling.LANCZOS)


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One uniform draw as a Python float."""
    return float(rng.uniform(low, high))


def paint_mondrian(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Paint a neoplastic grid after Mondrian's 1920s compositions, or a Broadway Boogie Woogie (1943)."""
    if rng.random() < 0.25:
        _boogie_woogie(c, rng, paints)
        return
    cells: list[tuple[float, float, float, float]] = []
    _split(rng, (0.0, 0.0, 1.0, 1.0), 0, int(rng.integers(3, 6)), cells)
    while len(cells) < 4:  # too few cells to show the palette: cut again
        cells = []
        _split(rng, (0.0, 0.0, 1.0, 1.0), 0, 5, cells)
    half = uniform(rng, 0.009, 0.017)
    c.image.paste(paints.ink, (0, 0, c.px, c.px))
    # A third or so of the cells take paint, mostly the small ones; the big ones stay ground, as in
    # the paintings (and so the ground stays the larger part of the canvas).
    count = min(len(cells) - 1, max(3, round(len(cells) * uniform(rng, 0.25, 0.45))))
    area = np.array([(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in cells])
    weight = 1 / area**0.75
    painted = set(rng.choice(len(cells), size=count, replace=False, p=weight / weight.sum()).tolist())
    bleed = rng.random() < 0.5  # cells touching the edge run off the canvas, without a frame
    k = 0
    for i, (x0, y0, x1, y1) in enumerate(cells):
        fill = paints.ground
        if i in painted:
            fill, k = paints.cycle(k), k + 1
        inset = [(v == edge and bleed) for v, edge in ((x0, 0.0), (y0, 0.0), (x1, 1.0), (y1, 1.0))]
        c.rect(x0 + (0 if inset[0] else half), y0 + (0 if inset[1] else half),
               x1 - (0 if inset[2] else half), y1 - (0 if inset[3] else half), fill)


def _split(rng: np.random.Generator, box: tuple[float, float, float, float], depth: int, max_depth: int,
           out: list[tuple[float, float, float, float]]) -> None:
    """Cut a box in two recursively (a BSP tree), on a 1/20 grid so lines line up across the canvas."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if depth >= max_depth or (depth >= 2 and rng.random() < 0.3) or max(w, h) < 0.2:
        out.append(box)
        return
    vertical = rng.random() < w / (w + h)  # cut the longer side more often
    span = w if vertical else h
    at = round(uniform(rng, 0.25, 0.75) * span * 20) / 20
    if at < 0.1 or span - at < 0.1:
        out.append(box)
        return
    if vertical:
        _split(rng, (x0, y0, x0 + at, y1), depth + 1, max_depth, out)
        _split(rng, (x0 + at, y0, x1, y1), depth + 1, max_depth, out)
    else:
        _split(rng, (x0, y0, x1, y0 + at), depth + 1, max_depth, out)
        _split(rng, (x0, y0 + at, x1, y1), depth + 1, max_depth, out)


def _boogie_woogie(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Coloured bands with small squares of other paints strung along them, and a few blocks."""
    half = uniform(rng, 0.012, 0.02)
    main = paints.cycle(0)
    xs = np.sort(rng.uniform(0.05, 0.95, int(rng.integers(3, 6))))
    ys = np.sort(rng.uniform(0.05, 0.95, int(rng.integers(3, 6))))
    for _ in range(int(rng.integers(2, 4))):
        x, y = uniform(rng, 0.05, 0.7), uniform(rng, 0.05, 0.7)
        c.rect(x, y, x + uniform(rng, 0.08, 0.2), y + uniform(rng, 0.06, 0.15), paints.pick(rng))
    bands = [(float(x) - half, 0.0, float(x) + half, 1.0) for x in xs]
    bands += [(0.0, float(y) - half, 1.0, float(y) + half) for y in ys]
    for band in bands:
        c.rect(*band, main)
    k = 1
    for x0, y0, x1, y1 in bands:
        along = np.arange(uniform(rng, 0.0, 0.06), 1.0, 2 * half * float(rng.integers(2, 5)))
        for t in along:
            if rng.random() < 0.5:
                fill, k = paints.cycle(k) if rng.random() < 0.7 else paints.ink, k + 1
                if x1 - x0 < y1 - y0:
                    c.rect(x0, float(t), x1, float(t) + 2 * half, fill)
                else:
                    c.rect(float(t), y0, float(t) + 2 * half, y1, fill)


def paint_kandinsky(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Paint circles with halos crossed by lines, arcs and triangles, after Kandinsky's Composition VIII (1923)."""
    for _ in range(int(rng.integers(2, 5))):
        _segment(c, rng, paints.pick(rng) if rng.random() < 0.5 else paints.ink, uniform(rng, 0.003, 0.01))
    if rng.random() < 0.75:  # a target of concentric rings, the motif of Several Circles (1926)
        cx, cy, r = uniform(rng, 0.25, 0.75), uniform(rng, 0.25, 0.75), uniform(rng, 0.12, 0.22)
        rings = int(rng.integers(3, 6))
        for j in range(rings):
            c.circle(cx, cy, r * (1 - j / rings), paints.cycle(j + 2))
    k = 0
    for _ in range(int(rng.integers(4, 9))):
        r = math.exp(uniform(rng, math.log(0.025), math.log(0.12)))
        x, y = uniform(rng, 0.1, 0.9), uniform(rng, 0.1, 0.9)
        color, k = paints.cycle(k), k + 1
        c.circle(x, y, r * uniform(rng, 1.25, 1.5), mix(color, paints.ground, 0.55))
        c.circle(x, y, r, color)
        if rng.random() < 0.35:
            c.circle(x, y, r * uniform(rng, 0.25, 0.5), paints.pick(rng))
        if rng.random() < 0.3:
            c.circle(x, y, r, outline=paints.ink, width=0.004)
    for _ in range(int(rng.integers(0, 3))):
        pts = [(uniform(rng, 0.05, 0.95), uniform(rng, 0.05, 0.95)) for _ in range(3)]
        if rng.random() < 0.5:
            c.polygon(pts, paints.pick(rng))
        else:
            c.line([*pts, pts[0]], paints.ink, 0.005)
    for _ in range(int(rng.integers(1, 4))):
        x, y, r = uniform(rng, 0.15, 0.85), uniform(rng, 0.15, 0.85), uniform(rng, 0.08, 0.3)
        start = uniform(rng, 0, 360)
        box = (c.p(x - r), c.p(y - r), c.p(x + r), c.p(y + r))
        c.draw.arc(box, start, start + uniform(rng, 40, 160), fill=paints.ink, width=c.w(uniform(rng, 0.004, 0.01)))
    if rng.random() < 0.4:
        _checkerboard(c, rng, paints)
    for _ in range(int(rng.integers(3, 7))):
        _segment(c, rng, paints.ink, uniform(rng, 0.002, 0.008) if rng.random() < 0.8 else 0.02)


def _segment(c: Canvas, rng: np.random.Generator, color: RGB, width: float) -> None:
    """A straight line of random direction and length."""
    x, y, angle = uniform(rng, 0.0, 1.0), uniform(rng, 0.0, 1.0), uniform(rng, 0, math.pi)
    length = uniform(rng, 0.25, 0.9)
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    c.line([(x - dx, y - dy), (x + dx, y + dy)], color, width)


def _checkerboard(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """A small grid of alternating squares, one of Kandinsky's Bauhaus motifs."""
    n, cell = int(rng.integers(2, 5)), uniform(rng, 0.025, 0.045)
    x0, y0 = uniform(rng, 0.05, 0.95 - n * cell), uniform(rng, 0.05, 0.95 - n * cell)
    a, b = paints.pick(rng), paints.ink
    for i in range(n):
        for j in range(n):
            c.rect(x0 + i * cell, y0 + j * cell, x0 + (i + 1) * cell, y0 + (j + 1) * cell, a if (i + j) % 2 else b)


def paint_op_art(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Paint wavy stripes (Riley, Current 1964), tunnel rings, or a bulging chequerboard (Vasarely, Vega 1957)."""
    kind = rng.random()
    if kind < 0.45:
        _wavy_stripes(c, rng, paints)
    elif kind < 0.75:
        _tunnel(c, rng, paints)
    else:
        _bulge(c, rng, paints)


def _stripe_colors(rng: np.random.Generator, paints: Paints, count: int) -> list[RGB]:
    """Ground and paint alternating, the paints in turn: op art's figure-ground contrast."""
    step = int(rng.integers(1, 3))  # change paint every stripe or every other one
    return [paints.ground if i % 2 == 0 else paints.cycle(i // (2 * step)) for i in range(count)]


def _wavy_stripes(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Bands between sine curves whose phase drifts from band to band, in any direction."""
    n = int(rng.integers(14, 26))
    amp, freq = uniform(rng, 0.015, 0.06), uniform(rng, 1.0, 3.0)
    phase, drift = uniform(rng, 0, 2 * math.pi), uniform(rng, 0.1, 0.5)
    angle = float(rng.choice([0.0, math.pi / 2, math.pi / 4, uniform(rng, 0, math.pi)]))
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    ts = [i / 32 * 1.6 - 0.3 for i in range(33)]
    colors = _stripe_colors(rng, paints, 2 * n)

    def edge(i: int) -> list[Point]:
        base = -0.3 + 1.6 * i / (2 * n)
        pts = [(base + amp * math.sin(2 * math.pi * freq * t + phase + drift * i), t) for t in ts]
        # Rotate about the centre so stripes can run in any direction.
        return [(0.5 + (x - 0.5) * cos_a - (y - 0.5) * sin_a, 0.5 + (x - 0.5) * sin_a + (y - 0.5) * cos_a)
                for x, y in pts]

    edges = [edge(i) for i in range(2 * n + 1)]
    for i in range(2 * n):
        c.polygon(edges[i] + edges[i + 1][::-1], colors[i])


def _tunnel(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Nested rings whose centres drift, so the eye falls into a tunnel."""
    n = int(rng.integers(12, 22))
    cx, cy = uniform(rng, 0.3, 0.7), uniform(rng, 0.3, 0.7)
    tx, ty = uniform(rng, 0.2, 0.8), uniform(rng, 0.2, 0.8)  # rings drift towards this point as they shrink
    squash = uniform(rng, 0.8, 1.2)
    colors = _stripe_colors(rng, paints, n)
    power = uniform(rng, 1.0, 1.8)
    for i in range(n):
        t = i / n
        r = 0.9 * (1 - t) ** power + 0.01
        c.circle(cx + (tx - cx) * t, cy + (ty - cy) * t, r, colors[i], ry=r * squash)


def _bulge(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """A chequerboard swollen by a lens, as in Vasarely's Vega series."""
    n = int(rng.integers(8, 15))
    cx, cy = uniform(rng, 0.3, 0.7), uniform(rng, 0.3, 0.7)
    strength, spread = uniform(rng, 0.15, 0.35), uniform(rng, 0.04, 0.12)

    def warp(x: float, y: float) -> Point:
        dx, dy = x - cx, y - cy
        push = strength * math.exp(-(dx * dx + dy * dy) / spread)  # a lens that swells the middle
        return x + dx * push, y + dy * push

    grid = [[warp(i / n, j / n) for j in range(n + 1)] for i in range(n + 1)]
    for i in range(n):
        color = paints.cycle(i // 2)
        for j in range(n):
            quad = [grid[i][j], grid[i + 1][j], grid[i + 1][j + 1], grid[i][j + 1]]
            c.polygon(quad, color if (i + j) % 2 else paints.ground)


def paint_stained_glass(c: Canvas, rng: np.random.Generator, paints: Paints) -> None:
    """Paint Voronoi cells of coloured and clear glass held by lead came, as a mosaic or a rose window."""
    seeds = _rose_seeds(rng) if rng.random() < 0.35 else rng.uniform(-0.05, 1.05, (int(rng.integers(18, 40)), 2))
    count = len(seeds)
    clear = rng.random(count) < uniform(rng, 0.35, 0.5)  # clear cells show the ground
    shade = rng.integers(-18, 19, count)  # each pane's glass is a little lighter or darker
    table = np.empty((count, 3), dtype=np.int16)
    k = 0
    for i in range(count):
        if clear[i]:
            table[i] = paints.ground
        else:
            table[i], k = paints.cycle(k), k + 1
    table = np.clip(table + shade[:, None], 0, 255).astype(np.uint8)
    labels = _voronoi(c.px, seeds)
    c.image.paste(Image.fromarray(table[labels], "RGB"))
    # Lead came runs along every boundary between two panes.
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edges[1:, :] |= labels[1:, :] != labels[:-1, :]
    width = c.w(uniform(rng, 0.008, 0.014)) | 1  # MaxFilter needs an odd size
    lead = Image.fromarray(edges.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(width))
    c.image.paste(paints.dark if rng.random() < 0.8 else mix(paints.dark, paints.light, 0.25), mask=lead)


def _rose_seeds(rng: np.random.Generator) -> np.ndarray:
    """Seeds on concentric rings about the centre, so the cells form a gothic rose window."""
    cx, cy = uniform(rng, 0.42, 0.58), uniform(rng, 0.42, 0.58)
    seeds = [(cx, cy)]
    rings = int(rng.integers(3, 5))
    for ring in range(1, rings + 1):
        count = 6 * ring if rng.random() < 0.5 else 4 * ring + 4
        turn = uniform(rng, 0, 2 * math.pi)
        radius = 0.75 * ring / rings
        for j in range(count):
            a = turn + 2 * math.pi * j / count
            seeds.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return np.array(seeds) + rng.normal(0, 0.01, (len(seeds), 2))


def _voronoi(px: int, seeds: np.ndarray) -> np.ndarray:
    """Nearest-seed label of every pixel, from integer squared distances (exact on every machine)."""
    # int64: a canvas of 8192 px with seeds off its edge squares past the int32 range.
    sx = np.round(seeds[:, 0] * px).astype(np.int64)
    sy = np.round(seeds[:, 1] * px).astype(np.int64)
    xs = np.arange(px, dtype=np.int64)
    best = np.full((px, px), np.iinfo(np.int64).max, dtype=np.int64)
    labels = np.zeros((px, px), dtype=np.int32)
    for i in range(len(seeds)):
        d = (xs[None, :] - sx[i]) ** 2 + (xs[:, None] - sy[i]) ** 2
        closer = d < best
        best[closer] = d[closer]
        labels[closer] = i
    return labels
