"""The exported HTML report: self-contained, escaped, and its numbers are scikit-learn's."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from core.analysis.diagnostics import Thresholds, health
from core.engine.evaluate import evaluate
from core.figures.report import build_report
from core.images import checkup
from core.runs import Run
from tests.conftest import classlens_meta, make_model, save_safetensors, write_dataset

EVIL = "<script>"  # a class folder named like a tag: must be shown, never interpreted
CLASSES = (EVIL, "cat", "dog&co")


@pytest.fixture
def evil_run(tmp_path: Path, runs_dir: Path) -> Run:
    """Return a run on a train/test dataset whose class names need escaping."""
    data = write_dataset(tmp_path / "evil", classes=CLASSES, per_class=5)
    ckpt = save_safetensors(
        make_model(seed=3), tmp_path / "m.safetensors", classlens_meta(class_names=None)
    )
    return evaluate(ckpt, data, runs_dir=runs_dir, num_workers=0)


@pytest.fixture
def report(evil_run: Run) -> str:
    return build_report(evil_run, "test")


def _values(html: str, row_attr: str, row_value: str) -> dict[str, float]:
    row = re.search(rf"<tr {row_attr}='{re.escape(row_value)}'>(.*?)</tr>", html)
    assert row, f"no row {row_attr}={row_value!r}"
    return {k: float(v) for k, v in re.findall(r"data-metric='(\w+)' data-value='([^']+)'", row[1])}


def test_no_network_references(report: str) -> None:
    # Scripts are inlined: no <script src=...>; outside them no tag fetches from the network
    # (plotly.js's own code mentions URLs, e.g. its logo link, but loads nothing).
    assert not re.search(r"<script[^>]*\ssrc\s*=", report, re.I)
    markup = re.sub(r"(?s)<script[^>]*>.*?</script>", "", report)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", markup, re.I)
    assert "<link" not in markup and "@import" not in markup
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", markup)
    assert "plotly.js v" in report  # the library itself is inlined


def test_class_and_file_names_are_escaped(report: str, evil_run: Run) -> None:
    # Every opened <script> tag is one of ours (plotly.js + one per figure) and is closed:
    # the class name never opens one.
    figures = report.count("Plotly.newPlot(")
    assert len(re.findall(r"<script[^>]*>", report)) == 1 + figures
    assert f"data-class='{'&lt;script&gt;'}'" in report
    assert "dog&amp;co" in report and "dog&co<" not in report
    # inside the figures' JSON the name is entity-escaped (charts.plot_text: plotly reads
    # some HTML in labels), so it shows as typed and never as markup
    assert '"&lt;script&gt;"' in report and '"<script>"' not in report


def test_numbers_equal_sklearn_and_core_metrics(report: str, evil_run: Run) -> None:
    df = evil_run.predictions()
    names = evil_run.class_names
    for split in ("test", "train"):
        part = df[df["split"] == split]
        y_true, y_pred = part["y_true"].to_numpy(), part["y_pred"].to_numpy()
        got = _values(report, "data-split", split)
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
        assert got["balanced_accuracy"] == pytest.approx(
            skm.balanced_accuracy_score(y_true, y_pred)
        )
        macro = skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
        assert got["macro_f1"] == pytest.approx(macro)
        assert got["accuracy"] == evil_run.metrics["splits"][split]["accuracy"]
    test = df[df["split"] == "test"]
    p, r, f, _ = skm.precision_recall_fscore_support(
        test["y_true"], test["y_pred"], labels=range(len(names)), zero_division=0
    )
    for i, name in enumerate(names):
        got = _values(report, "data-class", html.escape(name))
        got_plain = {k: got[k] for k in ("precision", "recall", "f1")}
        assert got_plain == pytest.approx({"precision": p[i], "recall": r[i], "f1": f[i]})


def test_verdict_overfitting_and_mistake_thumbnails(report: str, evil_run: Run) -> None:
    verdict = health(evil_run.metrics["splits"]["test"], Thresholds())
    assert html.escape(verdict.headline) in report
    assert 'id="overfitting"' in report  # the run has a train split
    df = evil_run.predictions()
    wrong = int(np.sum((df["split"] == "test") & (df["y_true"] != df["y_pred"])))
    assert wrong > 0
    assert report.count("<figure>") == min(wrong, 24)
    assert report.count("src='data:image/png;base64,") == min(wrong, 24)


def test_unknown_split_is_refused(evil_run: Run) -> None:
    with pytest.raises(ValueError, match="split 'val' is not in this run"):
        build_report(evil_run, "val")


def test_export_tables_equal_sklearn_and_hand_counts() -> None:
    from core.analysis import calibration, exports, thresholds

    y_true = np.array([0, 1, 1, 0, 2, 1])
    probs = np.array(
        [[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1],
         [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.1, 0.85, 0.05]]
    )  # fmt: skip
    curve = exports.curve_table(thresholds.class_curves(y_true, probs, 1))
    precision, recall, cuts = skm.precision_recall_curve(y_true == 1, probs[:, 1])
    # sklearn: increasing thresholds, with a final (precision 1, recall 0) point; ours: highest
    # threshold first, one row per distinct score.
    assert curve["threshold"].tolist() == pytest.approx(cuts[::-1].tolist())
    assert curve["precision"].tolist() == pytest.approx(precision[:-1][::-1].tolist())
    assert curve["recall"].tolist() == pytest.approx(recall[:-1][::-1].tolist())
    fpr, _, _ = skm.roc_curve(y_true == 1, probs[:, 1], drop_intermediate=False)
    assert curve["false_positive_rate"].tolist() == pytest.approx(fpr[1:].tolist())

    y_pred = probs.argmax(1)
    rel = calibration.top_label(y_true, y_pred, probs.max(1))
    bins = exports.reliability_table(rel)
    assert int(bins["images"].sum()) == 6
    # Hand count: confidences 0.7, 0.6, 0.5, 0.7, 0.8, 0.85; 0.7 twice (one right, one wrong).
    seventy = bins[(bins["low"] < 0.7) & (bins["high"] >= 0.7)]
    assert seventy["images"].tolist() == [2] and seventy["accuracy"].tolist() == [0.5]

    rows = pd.DataFrame(
        {"split": ["test"] * 2, "path": ["a.png", "b.png"], "y_true": [0, 2], "y_pred": [2, 1],
         "confidence": [0.9, 0.5], "loss": [2.0, 1.0]}
    )  # fmt: skip
    table = exports.images_table(rows, ["cat", "dog", "<script>"])
    assert table[["true", "predicted"]].values.tolist() == [
        ["cat", "<script>"],
        ["<script>", "dog"],
    ]


def test_report_carries_the_overviews_health_summary(report: str, evil_run: Run) -> None:
    """The same checklist as the Overview (core.images.checkup.run_summary), escaped, one row
    each."""
    from core.analysis import calibration, suspicious
    from core.analysis import health as health_checks
    from core.images import leakage

    df = evil_run.predictions()
    test = df[df["split"] == "test"]
    hashes = leakage.run_hashes(evil_run)
    pairs = leakage.leak_pairs(evil_run, hashes, "test", max_distance=leakage.DEFAULT_DISTANCE)
    leak = health_checks.leak_finding(
        pairs,
        evil_run.metrics["splits"]["test"],
        leakage.metrics_without(evil_run, "test", pairs["path"]),
        split="test",
        method="pHash within 4 bits",
    )
    expected = health_checks.summary(
        evil_run.metrics,
        evil_run.meta,
        "test",
        reliability=calibration.top_label(test["y_true"], test["y_pred"], test["confidence"]),
        suspicious=len(
            suspicious.suspicious_labels(
                df, evil_run.probs(), class_names=evil_run.class_names, splits=["test"]
            )
        ),
        leak=leak,
        segments=checkup.weak_segments(evil_run, "test"),  # issue 14: the Slices page's search
    )
    rows = re.findall(
        r"<tr data-check='(\w+)' data-level='([\w ]+)'><td[^>]*>[^<]*</td><td>([^<]*)</td>"
        r"<td class='sentence'>([^<]*)</td>",
        report,
    )
    assert [(k, lvl, html.unescape(s)) for k, lvl, _, s in rows] == [
        (c.key, c.level, c.sentence) for c in expected.checks
    ]
    assert html.escape(expected.headline) in report
    assert len(rows) == len(expected.checks)
    # the worst check's reasons name the '<script>' class: escaped like everywhere else
    details = [d for d in expected.worst.details if "'<script>'" in d]
    assert details and all(f"<li>{html.escape(d)}</li>" in report for d in details)


def test_report_axes_keep_room_for_their_labels_under_streamlits_template(
    evil_run: Run,
) -> None:
    """Inside the dashboard Streamlit makes its plotly template the default (no automargin),
    which clipped the report's tick labels; the report's figures set their own."""
    import json

    import plotly.io as pio
    from streamlit.elements.lib.streamlit_plotly_theme import configure_streamlit_plotly_theme

    from core.figures import confusion as confusion_fig
    from core.figures import report

    before = pio.templates.default
    try:
        configure_streamlit_plotly_theme()
        assert pio.templates.default == "streamlit"
        assert pio.templates["streamlit"].layout.xaxis.automargin is None  # the cause
        drawn = confusion_fig.matrix_figure(np.eye(3, dtype=int), list("abc"))
        fig = report.report_layout(drawn.figure)
        assert fig.layout.xaxis.automargin and fig.layout.yaxis.automargin
        assert fig.layout.template.layout.xaxis.automargin is True
        html_text = build_report(evil_run, "test")
    finally:
        pio.templates.default = before
    layouts = [
        json.loads(m)
        for m in re.findall(
            r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*\[.*?\],\s*(\{.*?\}),\s*\{\"respon", html_text, re.S
        )
    ]
    assert layouts and len(layouts) == html_text.count("Plotly.newPlot(")
    for layout in layouts:
        axes = [v for k, v in layout.items() if k.startswith(("xaxis", "yaxis"))]
        assert axes and all(a.get("automargin") is True for a in axes), layout.keys()


def test_every_figure_keeps_room_for_its_axis_labels() -> None:
    """Each figure the dashboard shows sets automargin on all its axes (Streamlit's template
    has none: the 10 px margins clipped titles such as the reliability diagram's)."""
    from core.analysis import calibration, tables, thresholds
    from core.analysis.metrics import split_report
    from core.figures import calibration as calibration_fig
    from core.figures import charts
    from core.figures import confusion as confusion_fig
    from core.figures import robustness as robustness_fig
    from core.figures import thresholds as thresholds_fig

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), 200)
    pred = probs.argmax(1)
    m = split_report(y, pred, class_names=["a", "b", "c"])
    table = tables.per_class_table(m)
    curves = thresholds.class_curves(y, probs, 0)
    figures = {
        "recall_bars": charts.recall_bars(table, Thresholds(), accuracy=m["accuracy"]),
        "per_class_bars": charts.per_class_bars(table),
        "reliability": calibration_fig.reliability_figure(
            calibration.top_label(y, pred, probs.max(1))
        ),
        "confidence": calibration_fig.confidence_histogram(y, pred, probs.max(1)),
        "pr": thresholds_fig.pr_figure(curves, class_name="a"),
        "roc": thresholds_fig.roc_figure(curves, class_name="a"),
        "confusion": confusion_fig.matrix_figure(m["confusion_matrix"], ["a", "b", "c"]).figure,
        "robustness": robustness_fig.severity_figure(
            pd.DataFrame(
                {
                    "corruption": ["blur"],
                    "severity": [1],
                    "n": [3],
                    "accuracy": [0.5],
                    "drop": [0.1],
                }
            ),  # fmt: skip
            clean_accuracy=0.6,
        ),
    }
    for name, fig in figures.items():
        layout = fig.to_plotly_json()["layout"]
        axes = {k: v for k, v in layout.items() if k.startswith(("xaxis", "yaxis"))}
        assert {"xaxis", "yaxis"} <= axes.keys(), name
        assert all(a.get("automargin") is True for a in axes.values()), (name, axes)
