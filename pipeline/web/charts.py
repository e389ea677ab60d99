"""Inline SVG charts: drawn on the server, shown by any browser without JavaScript."""
from __future__ import annotations

from datetime import date, timedelta
from html import escape

MAX_DAYS = 90
SERIES = (("messages", "messages", "#4a78b5"), ("deferred", "deferred (450)", "#e0a100"),
          ("rejected", "rejected (550)", "#c0392b"))
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 960, 240, 44, 36, 24


def daily_bars(days: list[dict]) -> str:
    """Messages, deferred and rejected attempts per day as grouped bars: the last MAX_DAYS days up to
    the newest one, days without any shown as empty. Each bar names its day and count on hover."""
    if not days:
        return "<p>No messages recorded for this server.</p>"
    counts = {date.fromisoformat(d["day"]): d for d in days}
    last = max(counts)
    first = max(min(counts), last - timedelta(days=MAX_DAYS - 1))
    span = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    peak = max(max(counts.get(day, {}).get(name, 0) for name, _, _ in SERIES) for day in span) or 1
    slot = (WIDTH - LEFT) / len(span)
    bar = min(max(slot / (len(SERIES) + 1), 1), 16)
    plot = HEIGHT - BOTTOM - TOP
    shapes = [f'<line x1="{LEFT}" y1="{TOP + plot}" x2="{WIDTH}" y2="{TOP + plot}" stroke="#888"/>',
              f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end" font-size="11">{peak}</text>',
              f'<text x="{LEFT - 4}" y="{TOP + plot}" text-anchor="end" font-size="11">0</text>']
    label_every = max(1, len(span) // 8)
    for index, day in enumerate(span):
        x = LEFT + index * slot
        for series, (name, label, colour) in enumerate(SERIES):
            value = counts.get(day, {}).get(name, 0)
            if value:
                height = plot * value / peak
                shapes.append(f'<rect x="{x + series * bar:.1f}" y="{TOP + plot - height:.1f}" width="{bar:.1f}" '
                              f'height="{height:.1f}" fill="{colour}"><title>{day.isoformat()}: {value} {escape(label)}'
                              "</title></rect>")
        if index % label_every == 0:
            shapes.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11">{day.isoformat()}</text>')
    for series, (_, label, colour) in enumerate(SERIES):
        x = LEFT + series * 150
        shapes.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{colour}"/>'
                      f'<text x="{x + 14}" y="13" font-size="12">{escape(label)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}" role="img" aria-label="messages, deferred and rejected attempts per day">'
            + "".join(shapes) + "</svg>")
