"""Small inline-SVG line charts of ratios (0 to 1) over days, laid out on the server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date


@dataclass
class ChartPoint:
    x: float
    y: float
    day: date
    value: float
    count: int


@dataclass
class LineChart:
    """Coordinates for a template: a polyline, dots with tooltips, and reference lines."""

    width: int
    height: int
    points: list[ChartPoint] = field(default_factory=list)
    polyline: str = ""
    # (y, label) of horizontal reference lines, e.g. the agreement at activation.
    guides: list[tuple[float, str]] = field(default_factory=list)
    first_day: date | None = None
    last_day: date | None = None

    @property
    def empty(self) -> bool:
        return not self.points


PAD = 6


def line_chart(
    series: Sequence[tuple[date, float | None, int]],
    *,
    width: int = 600,
    height: int = 160,
    guides: Sequence[tuple[float, str]] = (),
) -> LineChart:
    """Lay out ``(day, ratio, count)`` points; days with no ratio are skipped."""
    chart = LineChart(width=width, height=height)
    values = [(d, v, n) for d, v, n in series if v is not None]
    if not values:
        return chart
    first, last = values[0][0], values[-1][0]
    span = max((last - first).days, 1)
    inner_w, inner_h = width - 2 * PAD, height - 2 * PAD

    def y_of(value: float) -> float:
        return round(PAD + (1 - max(0.0, min(1.0, value))) * inner_h, 1)

    for day, value, count in values:
        x = PAD + inner_w / 2 if first == last else PAD + (day - first).days / span * inner_w
        chart.points.append(ChartPoint(round(x, 1), y_of(value), day, value, count))
    chart.polyline = " ".join(f"{p.x},{p.y}" for p in chart.points)
    chart.guides = [(y_of(value), label) for value, label in guides]
    chart.first_day, chart.last_day = first, last
    return chart
