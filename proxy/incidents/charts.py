"""Charts for the termly report: small inline SVG bar charts, drawn here with no library.

Inline SVG needs nothing at view time (no script, no network), prints
crisply, and WeasyPrint renders it into the PDF. Every label is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

BAR = "#2b6cb0"
TEXT = "#1a202c"
GRID = "#cbd5e0"


def hbars(items: Sequence[tuple[str, int]], title: str, width: int = 560) -> str:
    """Horizontal bars, one row per label, longest first as given."""
    if not items:
        return f'<p class="empty">{escape(title)}: none in this period.</p>'
    row, label_w, pad = 22, 180, 40
    height = row * len(items) + 30
    top = max(v for _, v in items) or 1
    scale = (width - label_w - pad) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        f'font-size="12"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(items):
        y = 20 + i * row
        w = max(1.0, value * scale) if value else 0.0
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" fill="{TEXT}">'
            f"{escape(label[:28])}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="{BAR}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" fill="{TEXT}">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def columns(items: Sequence[tuple[str, int]], title: str, width: int = 560) -> str:
    """Vertical columns in the order given (weeks of the term), with a baseline."""
    if not items:
        return f'<p class="empty">{escape(title)}: none in this period.</p>'
    height, base, left = 220, 160, 30
    slot = (width - left - 10) / len(items)
    top = max(v for _, v in items) or 1
    scale = (base - 20) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        f'font-size="11"><title>{escape(title)}</title>'
        f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="{GRID}"/>'
    ]
    for i, (label, value) in enumerate(items):
        x = left + i * slot
        h = value * scale
        parts.append(
            f'<rect x="{x + slot * 0.15:.1f}" y="{base - h:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{h:.1f}" fill="{BAR}"/>'
            f'<text x="{x + slot / 2:.1f}" y="{base - h - 4:.1f}" text-anchor="middle" '
            f'fill="{TEXT}">{value}</text>'
            f'<text x="{x + slot / 2:.1f}" y="{base + 12}" text-anchor="end" '
            f'transform="rotate(-45 {x + slot / 2:.1f} {base + 12})" '
            f'fill="{TEXT}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
