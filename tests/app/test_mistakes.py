"""The Mistakes page through AppTest: its count and thumbnails against run.predictions()."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import Run
from tests.app.conftest import open_page

pytestmark = pytest.mark.slow

ZOOM = "mk_gallery-zoom-"


COUNT = re.compile(r"^\*\*([\d,]+)\*\* misclassified images match these filters$")


def _count(at: AppTest) -> int:
    """Return the number in the page's count line."""
    found = [int(m[1].replace(",", "")) for e in at.markdown if (m := COUNT.match(e.value))]
    assert len(found) == 1, [e.value for e in at.markdown]
    return found[0]


def _shown_rows(at: AppTest) -> list[int]:
    return [int(b.key.removeprefix(ZOOM)) for b in at.button if (b.key or "").startswith(ZOOM)]


def _reference(run: Run, splits=(), trues=(), preds=(), by: str = "confidence") -> list[int]:
    """Return the matching misclassified rows in display order, from a plain loop."""
    df = run.predictions()
    keep = [
        i
        for i, r in zip(df.index, df.itertuples(index=False), strict=True)
        if r.y_true != r.y_pred
        and (not splits or r.split in splits)
        and (not trues or r.y_true in trues)
        and (not preds or r.y_pred in preds)
    ]
    return sorted(keep, key=lambda i: (-float(df.at[i, by]), i))


def _set(at: AppTest, **values) -> AppTest:
    for key, value in values.items():
        if key == "mk_sort":
            at.selectbox(key=key).set_value(value)
        else:
            at.multiselect(key=key).set_value(value)
    at.run()
    assert not at.exception, at.exception
    return at


def test_default_view_counts_the_test_split_mistakes(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = open_page("mistakes", run)
    assert at.title[0].value == "Mistakes"
    df = run.predictions()
    test = df[df.split == "test"]
    expected = int((test.y_true != test.y_pred).sum())
    assert _count(at) == expected
    # independent of the dashboard: the contract's matrix has the same off-diagonal total
    cm = run.metrics["splits"]["test"]["confusion_matrix"]
    assert expected == sum(cm[i][j] for i in range(len(cm)) for j in range(len(cm)) if i != j)
    assert _shown_rows(at) == _reference(run, splits=["test"])[:24]
    assert len(at.image) == min(expected, 24)


FILTERS = [
    pytest.param({"mk_splits": []}, id="all-splits"),
    pytest.param({"mk_splits": ["train"]}, id="train"),
    pytest.param({"mk_true": [3]}, id="true-3"),
    pytest.param({"mk_pred": [8, 9]}, id="pred-8-9"),
    pytest.param({"mk_splits": [], "mk_true": [1, 7], "mk_pred": [1, 7, 2]}, id="combined"),
]


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("model", ["imbalanced", "overfit"])
def test_count_and_thumbnails_follow_the_filters(
    sample_runs: dict[str, Run], model: str, filters: dict
) -> None:
    run = sample_runs[model]
    at = _set(open_page("mistakes", run), **filters)
    splits = filters.get("mk_splits", ["test"])
    expected = _reference(run, splits, filters.get("mk_true", ()), filters.get("mk_pred", ()))
    assert _count(at) == len(expected)
    assert _shown_rows(at) == expected[:24]


def test_sort_by_loss_and_page_through(sample_runs: dict[str, Run]) -> None:
    run = max(sample_runs.values(), key=lambda r: len(_reference(r)))
    at = _set(open_page("mistakes", run), mk_splits=[], mk_sort="loss")
    expected = _reference(run, by="loss")
    assert len(expected) > 24, "the sample should have enough mistakes to page"
    size = 48 if len(expected) > 48 else 24
    at.selectbox(key="mk_gallery-size").set_value(size).run()
    first = _shown_rows(at)
    at.number_input(key="mk_gallery-page").set_value(2).run()
    assert not at.exception
    assert first + _shown_rows(at) == expected[: 2 * size]
    # changing a filter goes back to page 1
    _set(at, mk_true=[int(run.predictions().loc[expected[0], "y_true"])])
    assert at.number_input(key="mk_gallery-page").value == 1


def test_thumbnail_captions_give_the_classes_and_top3(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    at = open_page("mistakes", run)
    row = _reference(run, splits=["test"])[0]
    r = run.predictions().loc[row]
    names = run.class_names
    probs = run.probs()[row]
    top3 = sorted(range(len(names)), key=lambda c: -probs[c])[:3]
    assert any(
        e.value.startswith(f"**{names[r.y_true]}** → :red[**{names[r.y_pred]}**]")
        for e in at.markdown
    )
    caption = next(c.value for c in at.caption if c.value.startswith("Top 3: "))
    assert caption == "Top 3: " + " · ".join(f"**{names[c]}** {probs[c]:.0%}" for c in top3)
    assert top3[0] == r.y_pred


def test_no_match_says_so(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["good"]
    df = run.predictions()
    test = df[(df.split == "test") & (df.y_true != df.y_pred)]
    present = set(zip(test.y_true, test.y_pred, strict=True))
    never = next((t, p) for t in range(10) for p in range(10) if t != p and (t, p) not in present)
    at = _set(open_page("mistakes", run), mk_true=[never[0]], mk_pred=[never[1]])
    assert _count(at) == 0
    assert any("No misclassified image" in s.value for s in at.success)


def test_enlarge_shows_the_full_view(sample_runs: dict[str, Run]) -> None:
    run = sample_runs["overfit"]
    at = open_page("mistakes", run)
    row = _shown_rows(at)[0]
    n_charts = len(at.get("plotly_chart"))
    at.button(key=f"{ZOOM}{row}").click().run()
    assert not at.exception
    r = run.predictions().loc[row]
    assert any(f"`{r.split}/{r.path}`" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == n_charts + 1  # the probability bar chart
