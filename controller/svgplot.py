"""Small inline SVG charts for the HTML report.

Hand-written rather than drawn with a plotting library: the report must be one self-contained
file that opens anywhere without scripts or network, and a run should not need matplotlib to
describe itself. Each chart is a `Panel`: a plot area with two scales, on which the report
draws points, lines, bands and boxes; `svg()` returns the markup.
"""

from __future__ import annotations

import math
from html import escape

HOST_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
ORIGINAL, BEST, FLEET, NOISE = "#8a8f98", "#1a7f4b", "#111111", "#d9dde3"


def colour(i: int) -> str:
    return HOST_COLOURS[i % len(HOST_COLOURS)]


def fmt(v: float) -> str:
    """A tick or value label: short, no float noise."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        return f"{v:.2g}"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About n round numbers covering [lo, hi] (the classic 1-2-5 steps; whole steps for counts)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    start = math.ceil(lo / step - 1e-9) * step
    return [round(start + i * step, 12) for i in range(int((hi - start) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 within a few decades, powers of ten beyond: labels must not run into each other."""
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in ((1,) if hi / lo > 200 else (1, 2, 5)):
            t = m * 10 ** e
            if lo <= t <= hi:
                ticks.append(t)
    return ticks or [lo, hi]


class Scale:
    """Maps data to pixels: linear, log, or categories (evenly spaced slots)."""

    def __init__(self, lo: float, hi: float, a: float, b: float, kind: str = "linear", categories=(),
                 integer: bool = False):
        self.kind, self.categories, self.a, self.b, self.integer = kind, list(categories), a, b, integer
        if kind == "log":
            lo, hi = max(lo, 1e-12), max(hi, 1e-12)
        if hi <= lo:
            pad = abs(lo) * 0.1 or 1.0
            lo, hi = lo - pad, hi + pad
        self.lo, self.hi = lo, hi

    def __call__(self, v) -> float:
        if self.kind == "category":
            i = self.categories.index(v)
            return self.a + (i + 0.5) / len(self.categories) * (self.b - self.a)
        if self.kind == "log":
            f = (math.log(max(v, 1e-12)) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        else:
            f = (v - self.lo) / (self.hi - self.lo)
        return self.a + f * (self.b - self.a)

    def ticks(self) -> list:
        if self.kind == "category":
            return self.categories
        return log_ticks(self.lo, self.hi) if self.kind == "log" else nice_ticks(self.lo, self.hi, integer=self.integer)


def padded(values, frac: float = 0.06, log: bool = False) -> tuple[float, float]:
    """The data's range with a margin, so points don't sit on the frame."""
    vals = [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)]
    if not vals:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    if log:
        return lo / (hi / lo) ** frac if hi > lo else lo / 2, hi * (hi / lo) ** frac if hi > lo else hi * 2
    span = (hi - lo) or abs(hi) or 1.0
    return lo - span * frac, hi + span * frac


class Panel:
    """One chart: a framed plot area with axes, labels and the marks added to it."""

    def __init__(self, x: Scale | tuple, y: Scale | tuple, *, width: int = 420, height: int = 240,
                 title: str = "", xlabel: str = "", ylabel: str = "", left: int = 58):
        self.w, self.h, self.title, self.xlabel, self.ylabel = width, height, title, xlabel, ylabel
        self.x0, self.x1, self.y0, self.y1 = left, width - 12, height - 40, 26 if title else 10
        self.x = x if isinstance(x, Scale) else Scale(x[0], x[1], self.x0, self.x1, *x[2:])
        self.y = y if isinstance(y, Scale) else Scale(y[0], y[1], self.y0, self.y1, *y[2:])
        self.x.a, self.x.b, self.y.a, self.y.b = self.x0, self.x1, self.y0, self.y1
        self.marks: list[str] = []

    def band(self, lo: float, hi: float, fill: str = NOISE, label: str = "") -> None:
        top, bottom = self._clip_y(self.y(hi)), self._clip_y(self.y(lo))
        self.marks.append(f'<rect x="{self.x0}" y="{top:.1f}" width="{self.x1 - self.x0}" '
                          f'height="{max(0.5, bottom - top):.1f}" fill="{fill}">{_title(label)}</rect>')

    def hline(self, v: float, stroke: str = "#555", dash: str = "4 3") -> None:
        y = self.y(v)
        if self.y1 <= y <= self.y0:
            self.marks.append(f'<line x1="{self.x0}" x2="{self.x1}" y1="{y:.1f}" y2="{y:.1f}" '
                              f'stroke="{stroke}" stroke-dasharray="{dash}"/>')

    def line(self, points, stroke: str, width: float = 1.8, step: bool = False, label: str = "") -> None:
        pts = [(self.x(a), self._clip_y(self.y(b))) for a, b in points]
        if step:  # hold each value until the next point: a best-so-far curve only moves up
            pts = pts[:1] + [q for i in range(1, len(pts)) for q in ((pts[i][0], pts[i - 1][1]), pts[i])]
        if len(pts) > 1:
            d = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            self.marks.append(f'<polyline points="{d}" fill="none" stroke="{stroke}" stroke-width="{width}">'
                              f'{_title(label)}</polyline>')

    def dots(self, points, fill: str, r: float = 3.2, labels=None, hollow: bool = False) -> None:
        for i, (a, b) in enumerate(points):
            style = f'fill="none" stroke="{fill}" stroke-width="1.5"' if hollow else f'fill="{fill}" fill-opacity="0.8"'
            label = labels[i] if labels else f"{fmt(b)}"
            self.marks.append(f'<circle cx="{self.x(a):.1f}" cy="{self._clip_y(self.y(b)):.1f}" r="{r}" {style}>'
                              f'{_title(label)}</circle>')

    def box(self, slot, values: list[float], fill: str, offset: float = 0.0, width: float = 22) -> None:
        """A box (quartiles, median) with every sample drawn beside it: few samples, show them all."""
        if not values:
            return
        s = sorted(values)
        q = [_quantile(s, p) for p in (0.25, 0.5, 0.75)]
        cx = self.x(slot) + offset
        top, mid, bottom = (self.y(v) for v in (q[2], q[1], q[0]))
        lo, hi = self.y(s[0]), self.y(s[-1])
        self.marks.append(
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{lo:.1f}" y2="{hi:.1f}" stroke="{fill}"/>'
            f'<rect x="{cx - width / 2:.1f}" y="{top:.1f}" width="{width}" height="{max(1, bottom - top):.1f}" '
            f'fill="{fill}" fill-opacity="0.18" stroke="{fill}"/>'
            f'<line x1="{cx - width / 2:.1f}" x2="{cx + width / 2:.1f}" y1="{mid:.1f}" y2="{mid:.1f}" '
            f'stroke="{fill}" stroke-width="2.5"><title>median {fmt(q[1])}</title></line>')
        for i, v in enumerate(values):
            jitter = ((i * 7) % 5 - 2) * 2.0
            self.marks.append(f'<circle cx="{cx + width / 2 + 6 + jitter:.1f}" cy="{self.y(v):.1f}" r="2.6" '
                              f'fill="{fill}">{_title(fmt(v))}</circle>')

    def svg(self) -> str:
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                 f'viewBox="0 0 {self.w} {self.h}" role="img" aria-label="{escape(self.title)}">']
        if self.title:
            parts.append(f'<text x="{self.x0}" y="16" class="t">{escape(self.title)}</text>')
        for t in self.y.ticks():
            y = self.y(t)
            parts.append(f'<line x1="{self.x0}" x2="{self.x1}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>'
                         f'<text x="{self.x0 - 5}" y="{y + 4:.1f}" text-anchor="end">{escape(_tick(t))}</text>')
        xt = self.x.ticks()
        every = max(1, math.ceil(len(xt) / 8))
        for i, t in enumerate(xt):
            if i % every == 0:
                parts.append(f'<text x="{self.x(t):.1f}" y="{self.y0 + 15}" text-anchor="middle">'
                             f'{escape(_tick(t))}</text>')
        parts.extend(self.marks)
        parts.append(f'<rect x="{self.x0}" y="{self.y1}" width="{self.x1 - self.x0}" height="{self.y0 - self.y1}" '
                     f'class="f"/>')
        if self.xlabel:
            parts.append(f'<text x="{(self.x0 + self.x1) / 2:.0f}" y="{self.h - 6}" text-anchor="middle" '
                         f'class="l">{escape(self.xlabel)}</text>')
        if self.ylabel:
            parts.append(f'<text transform="translate(12 {(self.y0 + self.y1) / 2:.0f}) rotate(-90)" '
                         f'text-anchor="middle" class="l">{escape(self.ylabel)}</text>')
        parts.append("</svg>")
        return "".join(parts)

    def _clip_y(self, y: float) -> float:
        return min(self.y0, max(self.y1, y))


def _tick(t) -> str:
    """Axis labels stay short: 50k, 2M."""
    if isinstance(t, str):
        return t
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(t) >= scale:
            return f"{t / scale:g}{suffix}" if scale != 1e4 else f"{t / 1e3:g}k"
    return fmt(t)


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>" if text else ""


def _quantile(s: list[float], p: float) -> float:
    k = (len(s) - 1) * p
    i = int(k)
    return s[i] if i + 1 >= len(s) else s[i] + (s[i + 1] - s[i]) * (k - i)
