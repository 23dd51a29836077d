"""``lakehouse report``: the analyst views rendered to one static HTML file with plots.

The plots are inline SVG drawn here (bars and lines need no more), so the file opens anywhere
without a server, a network or JavaScript. (matplotlib is not in the project's lock; adding it
would rebuild every clone's venv for a few bar charts.)
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

_COLOURS = ("#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6")
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 24px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: 13px; } .empty { color: #999; font-style: italic; }
.flag { background: #fde2e1; }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, limit: int = 40) -> str:
    if not rows:
        return '<p class="empty">no rows yet</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows[:limit]:
        flagged = any(isinstance(v, list) and v for v in row)
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row)
        body.append(f'<tr class="flag">{cells}</tr>' if flagged else f"<tr>{cells}</tr>")
    more = f'<p class="note">… {len(rows) - limit} more rows</p>' if len(rows) > limit else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def bar_chart(
    labels: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, unit: str = "", width: int = 1000
) -> str:
    """Grouped vertical bars, one group per label, one colour per series, as an SVG element."""
    if not labels:
        return ""
    height, left, bottom, top = 260, 72, 70, 30
    plot_w, plot_h = width - left - 20, height - bottom - top
    peak = max((v for values in series.values() for v in values if v is not None and not math.isnan(v)), default=0)
    peak = peak or 1.0
    group_w = plot_w / len(labels)
    bar_w = max(group_w * 0.8 / max(len(series), 1), 1)
    parts = [f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>']
    for tick in range(5):
        value = peak * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{_fmt(value)}</text>')
    for g, label in enumerate(labels):
        x0 = left + g * group_w + group_w * 0.1
        for s, values in enumerate(series.values()):
            value = values[g] if values[g] is not None and not math.isnan(values[g]) else 0.0
            h = plot_h * value / peak
            parts.append(
                f'<rect x="{x0 + s * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}"'
                f' fill="{_COLOURS[s % len(_COLOURS)]}">'
                f"<title>{html.escape(label)}: {_fmt(value)} {unit}</title></rect>"
            )
        if len(labels) <= 40 or g % math.ceil(len(labels) / 40) == 0:
            cx = left + g * group_w + group_w / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 12}" font-size="10" text-anchor="end"'
                f' transform="rotate(-35 {cx:.1f} {top + plot_h + 12})">{html.escape(label[-28:])}</text>'
            )
    x = left + plot_w - sum(24 + 7 * len(name) for name in series)
    for s, name in enumerate(series):
        parts.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{_COLOURS[s % len(_COLOURS)]}"/>')
        parts.append(f'<text x="{x + 14}" y="17" font-size="11">{html.escape(name)}</text>')
        x += 24 + 7 * len(name)
    if unit:
        cy = top + plot_h / 2
        parts.append(
            f'<text x="12" y="{cy}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {cy})">'
            f"{html.escape(unit)}</text>"
        )
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{"".join(parts)}</svg>'


# (title, SQL, chart: None or (label column index, {series name: column index}, unit), note)
SECTIONS: list[tuple[str, str, tuple[int, dict[str, int], str] | None, str]] = [
    ("Daily active students", "SELECT course_id, day, active_students FROM v_daily_active_students",
     (1, {"active students": 2}, "students"), "Students with a quiz answer, a flashcard review or an event that day."),
    ("Weekly active students", "SELECT course_id, week, active_students FROM v_weekly_active_students", None, ""),
    ("Ingestion latency (upload → searchable / indexed), seconds",
     "SELECT * FROM v_ingestion_latency", (0, {"p50": 2, "p95": 3, "p99": 4}, "seconds"), ""),
    ("Pages processed per hour", "SELECT * FROM v_pages_per_hour", (0, {"pages": 1}, "pages"), ""),
    ("Failure reasons", "SELECT * FROM v_failure_reasons", (0, {"jobs": 1}, "jobs"), ""),
    ("Quiz score distribution", "SELECT course_id, score_range, sum(attempts) AS attempts FROM"
     " v_quiz_score_distribution GROUP BY course_id, bucket, score_range ORDER BY course_id, bucket",
     (1, {"attempts": 2}, "attempts"), "Attempts per score decile, per course."),
    ("Item analysis", "SELECT quiz_id, item_id, question, answers, difficulty, discrimination, strong_answers,"
     " flags FROM v_item_analysis", (1, {"difficulty (share correct)": 4, "discrimination (point-biserial)": 5}, ""),
     "Highlighted rows carry a flag: everyone_correct, nobody_correct, strong_students_miss (students scoring"
     " ≥ 75 % correct under half the time), negative_discrimination."),
    ("Distractor pick rates", "SELECT item_id, option_id, option_text, is_key, picks, answers, pick_rate"
     " FROM v_item_options", None, ""),
    ("Flashcard retention", "SELECT * FROM v_flashcard_retention", (0, {"retention": 6}, "share recalled"),
     "Reviews of cards seen before that were not rated Again."),
    ("Searches that found nothing good", "SELECT * FROM v_low_score_searches LIMIT 100", None,
     "No result, or a top fused score below 0.025."),
]  # fmt: skip


def render_report(client: Client, path: Path, *, title: str = "Lakehouse for Learning — analyst report") -> Path:
    """Queries every view and writes the HTML report to ``path``; returns it."""
    rendered = f"Rendered {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the warehouse views."
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="note">{rendered}</p>']
    for heading, sql, chart, note in SECTIONS:
        result = client.query(sql)
        columns, rows = list(result.column_names), [list(r) for r in result.result_rows]
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if note:
            body.append(f'<p class="note">{html.escape(note)}</p>')
        if chart and rows:
            label_at, series, unit = chart
            per_course = columns[0] == "course_id" and label_at != 0
            labels = [_label(r, label_at) if per_course else _fmt(r[label_at]) for r in rows]
            values = {name: [_number(r[i]) for r in rows] for name, i in series.items()}
            body.append(bar_chart(labels, values, title=heading, unit=unit))
        body.append(_table(columns, rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
    return path


def _label(row: Sequence[Any], at: int) -> str:
    """A per-course series' label: the course id's last 8 characters (uuid7s share their first), then the value."""
    return f"{str(row[0])[-8:]} {_fmt(row[at])}"


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(number) else number
