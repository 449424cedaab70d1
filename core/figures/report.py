"""The shareable report: ONE self-contained HTML file for a run and a split.

It holds the verdict and the health checklist (core.analysis.health, as on the Overview), the
headline
metrics, the per-class table, the interactive confusion matrix and recall chart (plotly.js
inlined once, no CDN), the overfitting comparison when the run has a train split, the top
weak segments (core.analysis.slices), and the
most confidently wrong images as embedded PNG thumbnails. It opens offline: nothing is
fetched, every image is a ``data:`` URI. Every class name, file name and message is
HTML-escaped (plotly escapes ``<``/``/`` in its JSON itself).
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from html import escape
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline
from PIL import Image

from core.analysis import diagnostics, health, tables
from core.analysis.diagnostics import Thresholds, pct
from core.contracts import SplitMetrics
from core.figures import charts
from core.figures import confusion as confusion_fig
from core.images import checkup, gallery
from core.runs import Run

TOP_SEGMENTS = 5  # weak segments listed (core.analysis.slices)
TOP_MISTAKES = 24  # thumbnails embedded: enough to see a pattern, small enough to mail
THUMB_PX = 96
LEVEL_COLORS = {"good": "#e8f5e9", "needs attention": "#fff4e0", "bad": "#fdecea"}
CHECK_CSS = {"pass": "good", "attention": "attn", "fail": "bad"}  # health levels -> td colors
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1f2933}
h1{margin-bottom:.2rem} .muted{color:#667085;font-size:.9rem}
.verdict{border-radius:8px;padding:1rem 1.2rem;margin:1rem 0;border:1px solid #d0d5dd}
table{border-collapse:collapse;margin:.5rem 0 1.5rem} th,td{padding:.3rem .7rem;
border-bottom:1px solid #eaecf0;text-align:right} th:first-child,td:first-child{text-align:left}
td.bad{background:#fdecea} td.attn{background:#fff4e0} td.good{background:#e8f5e9}
#health td{text-align:left;vertical-align:top} #health td.sentence{max-width:640px}
.grid{display:flex;flex-wrap:wrap;gap:.8rem} figure{margin:0;width:150px;font-size:.8rem}
figure img{width:100%;image-rendering:pixelated;border:1px solid #d0d5dd}
figcaption{overflow-wrap:anywhere}
"""


def build_report(
    run: Run,
    split: str,
    *,
    thresholds: Thresholds = Thresholds(),
    top_mistakes: int = TOP_MISTAKES,
    created: datetime | None = None,
) -> str:
    """Return the report of ``run`` on ``split`` as one self-contained HTML document."""
    if split not in run.metrics["splits"]:
        raise ValueError(f"split {split!r} is not in this run (it has: {', '.join(run.splits)}).")
    m = run.metrics["splits"][split]
    t = thresholds
    when = (created or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    title = f"ClassLens report: {run.meta['checkpoint']['name']} on {split}"
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">{escape(_facts(run, split))} · exported {when}</p>',
        _verdict(checkup.run_summary(run, split, t)),
        "<h2>Headline metrics</h2>",
        _headline(run),
        f"<h2>Classes on the {escape(split)} split</h2>",
        _figure(charts.recall_bars(tables.per_class_table(m, t), t, accuracy=m["accuracy"])),
        _per_class(m, t),
        "<h2>Confusion matrix</h2>",
        '<p class="muted">Rows: true class; columns: predicted class.</p>',
        # every cell with its hover at any size (the page's image from 100 classes is not used)
        _figure(
            confusion_fig.matrix_figure(m["confusion_matrix"], run.class_names, image=False).figure,
            "confusion",
        ),
        _overfitting(run, t),
        _segments(run, split),
        _mistakes(run, split, top_mistakes),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style>"
        # plotly.js once, inline: the report must open with no network at all.
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
        "</head><body>\n" + "\n".join(p for p in parts if p) + "\n</body></html>\n"
    )


def _facts(run: Run, split: str) -> str:
    dataset = run.meta["dataset"]["root"].rstrip("/").split("/")[-1]
    return (
        f"{run.meta['checkpoint']['name']} · {run.meta.get('architecture', '?')} · "
        f"dataset {dataset} · {len(run.class_names)} classes · split {split} · "
        f"run {run.run_id}"
    )


def _verdict(summary: health.Summary) -> str:
    """Return the verdict box and the health checklist (core.analysis.health), as on the
    Overview."""
    level = health.VERDICT_LEVEL[summary.level]
    reasons = "".join(f"<li>{escape(r)}</li>" for r in summary.worst.details)
    rows = "".join(
        f"<tr data-check='{escape(c.key)}' data-level='{escape(c.level)}'>"
        f"<td class='{CHECK_CSS.get(c.level, '')}'>{escape(c.level)}</td>"
        f"<td>{escape(c.title)}</td><td class='sentence'>{escape(c.sentence)}</td>"
        f"<td class='muted'>{escape(health.PAGES[c.page])}</td></tr>"
        for c in summary.checks
    )
    return (
        f'<div class="verdict" id="verdict" data-level="{escape(level)}" '
        f'style="background:{LEVEL_COLORS[level]}"><b>{escape(summary.headline)}</b>'
        f"<ul>{reasons}</ul></div>"
        '<h2>Health checklist</h2><p class="muted">Every finding of ClassLens on this run: '
        "its level, what the numbers say, and the dashboard page that shows them.</p>"
        f'<table id="health"><tr><th>level</th><th>check</th><th>finding</th><th>page</th></tr>'
        f"{rows}</table>"
    )


def _headline(run: Run) -> str:
    head = tables.headline_table(run.metrics)
    cols = {
        "accuracy": "Accuracy",
        "balanced_accuracy": "Balanced accuracy",
        "macro_f1": "Macro F1",
    }
    rows = "".join(
        f"<tr data-split='{escape(r.split)}'><td>{escape(r.split)}</td>"
        f"<td data-metric='n'>{r.n:,}</td>"
        + "".join(
            f"<td data-metric='{c}' data-value='{float(getattr(r, c))!r}'>{pct(getattr(r, c))}</td>"
            for c in cols
        )
        + "</tr>"
        for r in head.itertuples()
    )
    header = "".join(f"<th>{label}</th>" for label in cols.values())
    return f'<table id="headline"><tr><th>split</th><th>images</th>{header}</tr>{rows}</table>'


def _per_class(m: SplitMetrics, t: Thresholds) -> str:
    table = tables.per_class_table(m, t)
    metrics = ["precision", "recall", "f1", "specificity"]
    css = {"bad": "bad", "needs attention": "attn", "good": "good"}
    rows = []
    for _, r in table.iterrows():
        cells = []
        for c in metrics:
            level = diagnostics.level_of(r[c], t) if c != "specificity" else ""
            cells.append(
                f"<td class='{css.get(level, '')}' data-metric='{c}' data-value='{float(r[c])!r}'>"
                f"{pct(r[c])}</td>"
            )
        rows.append(
            f"<tr data-class='{escape(str(r['class']))}'><td>{escape(str(r['class']))}</td>"
            f"{''.join(cells)}<td data-metric='support'>{int(r['support'])}</td>"
            f"<td>{escape(str(r['status']))}</td></tr>"
        )
    header = "".join(f"<th>{c}</th>" for c in ["class", *metrics, "support", "status"])
    return f'<table id="per-class"><tr>{header}</tr>{"".join(rows)}</table>'


def _overfitting(run: Run, t: Thresholds) -> str:
    whole = run.parent.metrics if run.parent is not None else None
    ov = diagnostics.overfitting(run.metrics, t, whole=whole)
    if not ov.available:
        return ""
    comparison = tables.split_comparison(run.metrics, ov)
    header = "".join(f"<th>{escape(str(c))}</th>" for c in comparison.columns)
    rows = "".join(
        f"<tr><td>{escape(str(name))}</td>"
        + "".join(
            f"<td>{v:+.1%}</td>" if col == "gap" else f"<td>{v:.1%}</td>" for col, v in row.items()
        )
        + "</tr>"
        for name, row in comparison.iterrows()
    )
    return (
        f'<h2>Overfitting</h2><div class="verdict" id="overfitting" '
        f'style="background:{LEVEL_COLORS[ov.level]}">{escape(ov.message)}</div>'
        f"<table><tr><th></th>{header}</tr>{rows}</table>"
        + _figure(charts.gap_bars(ov.class_gaps, t, other=ov.other))
    )


def _segments(run: Run, split: str, top: int = TOP_SEGMENTS) -> str:
    """Return the weak segments of ``split`` (the Slices page's search), best first."""
    search = checkup.weak_segments(run, split)
    head = (
        f"<h2>Weak segments</h2><p class='muted'>{search.tried:,} slices of {escape(split)} "
        "tried (metadata, sub-folders, measured image properties, true and predicted class; "
        "single conditions and pairs); Fisher's exact test with Benjamini-Hochberg correction."
        "</p>"
    )
    if not search.segments:
        return head + "<p>No slice is significantly worse than the rest.</p>"
    items = "".join(
        f"<li data-segment='{escape(s.text())}'>{escape(s.sentence())}</li>"
        for s in search.segments[:top]
    )
    return head + f'<ol id="segments">{items}</ol>'


def _mistakes(run: Run, split: str, top: int) -> str:
    rows = gallery.sort_rows(gallery.filter_mistakes(run.predictions(), splits=[split]))
    if rows.empty or top < 1:
        return "<h2>Top mistakes</h2><p>No misclassified images on this split.</p>"
    names = run.class_names
    shown = rows.head(top)
    figures = []
    for r in shown.itertuples():
        try:
            pixels = gallery.thumbnail(gallery.image_path(run, split, r.path), size=THUMB_PX)
            img = f"<img alt='{escape(r.path)}' src='data:image/png;base64,{_png(pixels)}'>"
        except (OSError, ValueError):  # the dataset moved: say so instead of a broken image
            img = "<div class='muted'>(image not found)</div>"
        figures.append(
            f"<figure>{img}<figcaption><b>{escape(names[r.y_true])}</b> → "
            f"{escape(names[r.y_pred])} ({pct(r.confidence, 0)})<br>"
            f"<span class='muted'>{escape(r.path)}</span></figcaption></figure>"
        )
    return (
        f"<h2>Top mistakes</h2><p class='muted'>The {len(shown)} most confidently wrong of "
        f"{len(rows):,} misclassified images: true class → predicted (confidence).</p>"
        f"<div class='grid' id='mistakes'>{''.join(figures)}</div>"
    )


def _png(pixels: Any) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def report_layout(fig: go.Figure) -> go.Figure:
    """Return ``fig`` with room for its axis labels whatever plotly template is active: the
    dashboard's process makes Streamlit's template the default, which has no automargin, so
    a report exported there had its tick labels clipped by the 10 px figure margins."""
    fig.update_layout(template="plotly")
    return charts.label_room(fig)


def _figure(fig: go.Figure, div_id: str | None = None) -> str:
    """Return the figure as a div + script; plotly.js itself is in the page head."""
    return pio.to_html(
        report_layout(fig),
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"responsive": True},
    )
