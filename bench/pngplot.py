"""A stacked horizontal bar chart as PNG, drawn with Pillow (matplotlib is not in the lock)."""

from __future__ import annotations

from pathlib import Path

COLOURS = (
    *("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"),
    *("#bab0ac", "#1f3a5f", "#8cd17d"),
)


def stacked_bars(
    path: Path, title: str, rows: list[tuple[str, list[tuple[str, float]]]], *, unit: str, width: int = 1000
) -> None:
    """One bar per row, its segments stacked left to right (one colour per segment name)."""
    from PIL import Image, ImageDraw

    names: list[str] = []
    for _, segments in rows:
        names += [n for n, _ in segments if n not in names]
    label_w, bar_h, gap, top = 260, 22, 10, 40
    legend_h = 20 * ((len(names) + 4) // 5)
    height = top + len(rows) * (bar_h + gap) + legend_h + 30
    longest = max((sum(v for _, v in segments) for _, segments in rows), default=1.0) or 1.0
    scale = (width - label_w - 90) / longest
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 12), title, fill="black")
    for index, (label, segments) in enumerate(rows):
        y = top + index * (bar_h + gap)
        draw.text((10, y + 5), label[:42], fill="black")
        x = float(label_w)
        for name, value in segments:
            w = max(value * scale, 0.0)
            draw.rectangle([x, y, x + w, y + bar_h], fill=COLOURS[names.index(name) % len(COLOURS)])
            x += w
        draw.text((x + 6, y + 5), f"{sum(v for _, v in segments):.1f} {unit}", fill="black")
    y = top + len(rows) * (bar_h + gap) + 10
    for index, name in enumerate(names):
        x = label_w + (index % 5) * 140
        row_y = y + 20 * (index // 5)
        draw.rectangle([x, row_y, x + 12, row_y + 12], fill=COLOURS[index % len(COLOURS)])
        draw.text((x + 16, row_y), name[:20], fill="black")
    image.save(path)
