"""Where a figure's text lands once drawn: every tick label, axis label, title, legend entry and
annotation as a box on the canvas (matplotlib's own extents, `Text.get_window_extent`), and the
two defects a reader sees at once: two texts on top of each other, and a text cut off by the edge
of the figure. `k1 figures` records what it finds in figures.json; the figure test requires none.

Only what is drawn counts: invisible texts, empty strings, tick labels outside the axis' view
interval (matplotlib does not draw them) and the ticks of hidden axes are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.text import Text

#: two boxes overlap when they share more than this many points in both directions (antialiasing aside)
OVERLAP_TOLERANCE_PT = 0.5


@dataclass(frozen=True)
class PlacedText:
    kind: str  # "tick label", "axis label", "title", "legend", "text", ...
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in points from the figure's lower left corner


def _ticks_drawn(axis: Axis) -> Iterator[Text]:
    lo, hi = sorted(axis.get_view_interval())
    span = hi - lo
    for tick in axis.get_major_ticks() + axis.get_minor_ticks():
        loc = tick.get_loc()
        if loc is None or not (lo - 1e-9 * abs(span) <= loc <= hi + 1e-9 * abs(span)) or not tick.get_visible():
            continue
        for label in (tick.label1, tick.label2):
            yield label


def _texts(container: Figure | SubFigure) -> Iterator[tuple[str, Text]]:
    for ax in container.axes:
        if not ax.get_visible():
            continue
        if ax.axison:
            for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
                if not axis.get_visible():
                    continue
                for label in _ticks_drawn(axis):
                    yield f"{name} tick label", label
                yield f"{name} axis label", axis.label
                if axis.offsetText is not None:
                    yield f"{name} offset", axis.offsetText
        for attr in ("title", "_left_title", "_right_title"):
            title = getattr(ax, attr, None)
            if isinstance(title, Text):
                yield "title", title
        for text in ax.texts:
            yield "text", text
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            yield "legend title", legend.get_title()
            for text in legend.get_texts():
                yield "legend", text
    for legend in container.legends:
        if legend.get_visible():
            yield "legend title", legend.get_title()
            for text in legend.get_texts():
                yield "legend", text
    for attr in ("_suptitle", "_supxlabel", "_supylabel"):
        text = getattr(container, attr, None)
        if isinstance(text, Text):
            yield "figure title", text
    for text in container.texts:
        yield "text", text
    for sub in getattr(container, "subfigs", []):
        yield from _texts(sub)


def placed_texts(fig: Figure) -> list[PlacedText]:
    """Every drawn, non-empty text of `fig` with its box in points (the figure is drawn first)."""
    if not hasattr(fig.canvas, "get_renderer"):  # a bare Figure: the headless Agg canvas, as savefig uses
        FigureCanvasAgg(fig)
    # constrained layout sizes the axes from the first draw's tick labels, and the ticks then follow the new
    # sizes: the layout settles on the second draw, which is what savefig writes
    fig.draw_without_rendering()
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    scale = 72.0 / fig.dpi
    out, seen = [], set()
    for kind, text in _texts(fig):
        if id(text) in seen or not text.get_visible() or not text.get_text().strip():
            continue  # (a suptitle is also one of the figure's texts)
        seen.add(id(text))
        box = text.get_window_extent(renderer)
        if not np.all(np.isfinite(box.extents)) or box.width <= 0 or box.height <= 0:
            continue
        x0, y0, x1, y1 = (float(v) * scale for v in box.extents)
        out.append(PlacedText(kind, text.get_text(), (x0, y0, x1, y1)))
    return out


def overlapping_texts(texts: list[PlacedText], tolerance: float = OVERLAP_TOLERANCE_PT) -> list[tuple[PlacedText, PlacedText]]:
    """Every pair of texts whose boxes share more than `tolerance` points in both directions."""
    if len(texts) < 2:
        return []
    b = np.array([t.box for t in texts])
    dx = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    dy = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    i, j = np.nonzero(np.triu((dx > tolerance) & (dy > tolerance), k=1))
    return [(texts[a], texts[c]) for a, c in zip(i, j)]


def texts_outside(fig: Figure, texts: list[PlacedText], tolerance: float = OVERLAP_TOLERANCE_PT) -> list[PlacedText]:
    """Texts that reach beyond the figure's edge (cut off when printed)."""
    width, height = (float(v) * 72.0 for v in fig.get_size_inches())
    return [t for t in texts if t.box[0] < -tolerance or t.box[1] < -tolerance
            or t.box[2] > width + tolerance or t.box[3] > height + tolerance]


def layout_problems(fig: Figure) -> list[str]:
    """One line per overlapping pair of texts and per text cut off by the figure's edge; [] when clean."""
    texts = placed_texts(fig)
    lines = [f"{a.kind} {a.text!r} overlaps {b.kind} {b.text!r}" for a, b in overlapping_texts(texts)]
    lines += [f"{t.kind} {t.text!r} is cut off by the figure's edge" for t in texts_outside(fig, texts)]
    return lines


def describe_size(fig: Any) -> str:
    """"7.0 × 3.2 in" (the printed size)."""
    w, h = fig.get_size_inches()
    return f"{w:.1f} × {h:.1f} in"
