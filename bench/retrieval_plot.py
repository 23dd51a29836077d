"""Grouped bar panels as PNG, drawn with Pillow (matplotlib is not in the lock): one panel per
(row, metric), one group of bars per search mode, one bar per run label."""

from __future__ import annotations

from pathlib import Path

COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f")
PANEL_H, MARGIN = 270, 46
BAR_W = 30  # pixels per bar: room for its value above it


def grouped_panels(
    path: Path,
    title: str,
    panels: list[list[tuple[str, dict[str, dict[str, float]], float | None]]],
    labels: list[str],
) -> None:
    """``panels[row][col] = (panel title, {group: {label: value}}, y maximum or None for auto)``."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=10)
    big = ImageFont.load_default(size=16)
    rows, cols = len(panels), max(len(row) for row in panels)
    n_groups = max(len(g) for row in panels for _, g, _ in row)
    panel_w = max(340, int(n_groups * len(labels) * BAR_W / 0.8) + MARGIN + 16)
    legend_h = 30
    width, height = cols * panel_w + 20, rows * PANEL_H + 60 + legend_h
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), title, fill="black", font=big)
    for index, label in enumerate(labels):
        x = 10 + index * 170
        draw.rectangle([x, 40, x + 14, 54], fill=COLOURS[index % len(COLOURS)])
        draw.text((x + 20, 40), label[:22], fill="black", font=font)
    for r, row in enumerate(panels):
        for c, (name, groups, top) in enumerate(row):
            x, y = 10 + c * panel_w, 60 + legend_h + r * PANEL_H
            _panel(draw, x, y, panel_w, name, groups, labels, top, font, small)
    image.save(path)


def _panel(draw, x0, y0, panel_w, name, groups, labels, top, font, small) -> None:  # type: ignore[no-untyped-def]
    plot_x, plot_y = x0 + MARGIN, y0 + 28
    plot_w, plot_h = panel_w - MARGIN - 16, PANEL_H - 70
    values = [v for group in groups.values() for v in group.values()]
    top = top or (max(values, default=1.0) * 1.15 or 1.0)
    draw.text((x0 + MARGIN, y0 + 4), name, fill="black", font=font)
    for step in range(5):  # grid lines and y ticks
        value = top * step / 4
        y = plot_y + plot_h - plot_h * step / 4
        draw.line([plot_x, y, plot_x + plot_w, y], fill="#dddddd")
        draw.text((x0 + 4, y - 6), f"{value:.2f}" if top <= 1.5 else f"{value:.0f}", fill="#555555", font=small)
    draw.line([plot_x, plot_y + plot_h, plot_x + plot_w, plot_y + plot_h], fill="black")
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(labels), 1)
    for g, (group, by_label) in enumerate(groups.items()):
        gx = plot_x + g * group_w + group_w * 0.1
        for i, label in enumerate(labels):
            if label not in by_label:
                continue
            value = by_label[label]
            h = plot_h * min(value / top, 1.0)
            x = gx + i * bar_w
            draw.rectangle([x, plot_y + plot_h - h, x + bar_w - 2, plot_y + plot_h], fill=COLOURS[i % len(COLOURS)])
            text = f"{value:.2f}" if top <= 1.5 else f"{value:.0f}"
            draw.text((x, plot_y + plot_h - h - 12), text, fill="black", font=small)
        draw.text((gx + group_w * 0.25, plot_y + plot_h + 6), group, fill="black", font=font)
