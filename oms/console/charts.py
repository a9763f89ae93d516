"""Server-rendered SVG charts: pure geometry from values to coordinates (no JavaScript, no CDN)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    line: str  # "x,y x,y …" for <polyline points>
    area: str  # path of the area between the line and the zero line
    zero_y: float
    top_label: Decimal
    bottom_label: Decimal
    first_at: datetime | None
    last_at: datetime | None
    last_value: Decimal
    points: int


def equity_chart(
    points: list[tuple[datetime, Decimal]], *, width: int = 800, height: int = 170, pad: int = 6
) -> LineChart | None:
    """Scale (time, value) points into an SVG box; the zero line is always inside the range."""
    if not points:
        return None
    values = [float(v) for _, v in points]
    low, high = min(0.0, *values), max(0.0, *values)
    span = (high - low) or 1.0
    count = len(points)
    inner_w, inner_h = width - 2 * pad, height - 2 * pad

    def x(i: int) -> float:
        return pad + (inner_w * i / (count - 1) if count > 1 else inner_w / 2)

    def y(v: float) -> float:
        return pad + inner_h * (high - v) / span

    coords = [(round(x(i), 1), round(y(v), 1)) for i, v in enumerate(values)]
    if count == 1:  # a single trade: draw a flat segment so it is visible
        coords = [(pad, coords[0][1]), (width - pad, coords[0][1])]
    zero_y = round(y(0.0), 1)
    line = " ".join(f"{cx},{cy}" for cx, cy in coords)
    area = f"M{coords[0][0]},{zero_y} " + " ".join(f"L{cx},{cy}" for cx, cy in coords) + f" L{coords[-1][0]},{zero_y} Z"
    return LineChart(
        width=width,
        height=height,
        line=line,
        area=area,
        zero_y=zero_y,
        top_label=Decimal(str(round(high, 4))),
        bottom_label=Decimal(str(round(low, 4))),
        first_at=points[0][0],
        last_at=points[-1][0],
        last_value=points[-1][1],
        points=count,
    )
