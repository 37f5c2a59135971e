"""Line charts drawn on the server as inline SVG: no script, no CDN, readable without
JavaScript (the job page refreshes its chart by htmx while the job runs)."""

from collections.abc import Mapping, Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2f5bd3", "#d3492f", "#1f7a3d", "#9a6700", "#7a3db3", "#138a8a", "#b3261e", "#5b6475")
WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 640, 220, 56, 12, 12, 28

Point = tuple[float, float]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def line_chart(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    x_label: str = "step",
    x_ticks: Mapping[float, str] | None = None,
) -> SafeString:
    """One polyline per series (a legend names each), axes labelled with the ranges; every
    value escaped. ``x_ticks`` labels chosen x positions (a version number, say)."""
    points = [p for values in series.values() for p in values]
    if not points:
        return mark_safe("")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    if y0 == y1:
        y0, y1 = y0 - abs(y0 or 1) * 0.05, y1 + abs(y1 or 1) * 0.05
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return PAD_T + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" width="100%" style="max-width:{WIDTH}px">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#dde2ea"/>',
        f'<text x="{PAD_L - 4}" y="{PAD_T + 10}" text-anchor="end" font-size="10" '
        f'fill="#5b6475">{_fmt(y1)}</text>',
        f'<text x="{PAD_L - 4}" y="{PAD_T + plot_h}" text-anchor="end" font-size="10" '
        f'fill="#5b6475">{_fmt(y0)}</text>',
    ]
    ticks = dict(x_ticks or {})
    if not ticks:
        ticks = {x0: _fmt(x0), x1: _fmt(x1)}
    for x, label in ticks.items():
        parts.append(
            f'<text x="{sx(x):.1f}" y="{HEIGHT - 12}" text-anchor="middle" font-size="10" '
            f'fill="#5b6475">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{PAD_L + plot_w / 2:.1f}" y="{HEIGHT - 1}" text-anchor="middle" '
        f'font-size="10" fill="#5b6475">{escape(x_label)}</text>'
    )
    for i, (name, values) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{coords}" '
            f'data-series="{escape(name)}"><title>{escape(name)}</title></polyline>'
        )
        if len(values) <= 40:
            parts.extend(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(name)} {_fmt(x)}: {_fmt(y)}</title></circle>"
                for x, y in values
            )
        parts.append(
            f'<text x="{PAD_L + 8}" y="{PAD_T + 14 + 12 * i}" font-size="11" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every value above is escaped
