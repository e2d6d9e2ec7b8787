"""recall@k before and after training as an SVG line chart, from a run's metrics."""

from __future__ import annotations

import math
from html import escape
from typing import Any

WIDTH, HEIGHT = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 30, 70, 60
LINES = (  # (metrics key, label, colour, dash)
    ("before", "before training", "#8a8f98", "6 4"),
    ("after", "after training", "#2563eb", ""),
)


def _ks(metrics: dict[str, Any]) -> list[int]:
    return sorted(int(key.split("@")[1]) for key in metrics["before"])


def recall_svg(metrics: dict[str, Any]) -> str:
    ks = _ks(metrics)
    span = math.log10(ks[-1]) - math.log10(ks[0]) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(k: int) -> float:
        return LEFT + plot_w * (math.log10(k) - math.log10(ks[0])) / span

    def y(recall: float) -> float:
        return TOP + plot_h * (1 - recall)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="28" font-size="17" font-weight="bold">'
        "recall@k on held-out questions</text>",
        f'<text x="{LEFT}" y="50" font-size="13" fill="#555">{escape(_subtitle(metrics))}</text>',
    ]
    for tick in range(0, 11, 2):
        level = tick / 10
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
            'stroke="#e5e7eb"/>'
        )
        parts.append(
            f'<text x="{LEFT - 10}" y="{y(level) + 4:.1f}" font-size="12" text-anchor="end" '
            f'fill="#555">{level:.1f}</text>'
        )
    for k in ks:
        parts.append(
            f'<text x="{x(k):.1f}" y="{TOP + plot_h + 20}" font-size="12" text-anchor="middle" '
            f'fill="#555">{k}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 14}" font-size="13" '
        'text-anchor="middle" fill="#333">k (log scale)</text>'
    )
    for key, _, colour, dash in LINES:
        values = metrics.get(key) or {}
        points = [(k, x(k), y(values[f"recall@{k}"])) for k in ks if f"recall@{k}" in values]
        if not points:
            continue
        path = " ".join(f"{px:.1f},{py:.1f}" for _, px, py in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5" '
            f'stroke-dasharray="{dash}"/>'
        )
        # Values above the line after training, below it before: the two never overlap.
        offset = -10 if key == "after" else 18
        for k, px, py in points:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}"/>')
            parts.append(
                f'<text x="{px:.1f}" y="{py + offset:.1f}" font-size="11" text-anchor="middle" '
                f'fill="{colour}">{values[f"recall@{k}"]:.2f}</text>'
            )
    for row, (_, label, colour, dash) in enumerate(LINES):
        ly = TOP + plot_h - 40 + 20 * row
        lx = WIDTH - RIGHT - 170
        parts.append(
            f'<line x1="{lx}" x2="{lx + 30}" y1="{ly}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="2.5" stroke-dasharray="{dash}"/>'
        )
        parts.append(f'<text x="{lx + 38}" y="{ly + 4}" font-size="13">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _subtitle(metrics: dict[str, Any]) -> str:
    held = metrics.get("eval_pairs")
    trained = metrics.get("train_pairs")
    embedder = metrics.get("embedder")
    bits = [f"{held} held-out questions" if held else "", f"{trained} trained" if trained else ""]
    bits.append(f"embedder {embedder}" if embedder else "")
    return ", ".join(b for b in bits if b)
