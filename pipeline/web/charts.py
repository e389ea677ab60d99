"""Inline SVG charts: drawn on the server, shown by any browser without JavaScript. The geometry is
worked out here; templates/daily_bars.html draws it."""
from __future__ import annotations

from datetime import date, timedelta

MAX_DAYS = 90
SERIES = (("messages", "messages", "#4a78b5"), ("deferred", "deferred (450)", "#e0a100"),
          ("rejected", "rejected (550)", "#c0392b"))
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 960, 240, 44, 36, 24


def daily_chart(days: list[dict]) -> dict | None:
    """Messages, deferred and rejected attempts per day as grouped bars: the last MAX_DAYS days up to
    the newest one, days without any shown as empty; None without days. Each bar names its day,
    count and series, for the chart to show on hover."""
    if not days:
        return None
    counts = {date.fromisoformat(d["day"]): d for d in days}
    last = max(counts)
    first = max(min(counts), last - timedelta(days=MAX_DAYS - 1))
    span = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    peak = max(max(counts.get(day, {}).get(name, 0) for name, _, _ in SERIES) for day in span) or 1
    slot = (WIDTH - LEFT) / len(span)
    bar = float(min(max(slot / (len(SERIES) + 1), 1), 16))
    plot = HEIGHT - BOTTOM - TOP
    bars, labels = [], []
    label_every = max(1, len(span) // 8)
    for index, day in enumerate(span):
        x = LEFT + index * slot
        for series, (name, label, colour) in enumerate(SERIES):
            value = counts.get(day, {}).get(name, 0)
            if value:
                height = plot * value / peak
                bars.append({"x": round(x + series * bar, 1), "y": round(TOP + plot - height, 1),
                             "width": round(bar, 1), "height": round(height, 1), "colour": colour,
                             "day": day.isoformat(), "value": value, "label": label})
        if index % label_every == 0:
            labels.append({"x": round(x, 1), "day": day.isoformat()})
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "top": TOP, "axis_y": TOP + plot,
        "labels_y": HEIGHT - BOTTOM + 16, "peak": peak, "bars": bars, "labels": labels,
        "legend": [{"x": LEFT + series * 150, "colour": colour, "label": label}
                   for series, (_, label, colour) in enumerate(SERIES)],
    }
