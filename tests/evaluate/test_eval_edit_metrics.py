"""Edit precision and recall on hand-counted rows, overall and per source, in every report table."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from spantune.errors import InputError
from spantune.evaluate.evaluation import select_examples
from spantune.evaluate.bootstrap import breakdowns, summarize
from spantune.evaluate.metrics import Columns, EvalRow, compute_metrics, make_row
from spantune.evaluate.report import build_report, markdown, print_summary
from spantune.infer.base import Prediction
from spantune.postprocess import PostResult
from spantune.schema import SpanExample

#: (span_in, span_out, further references, source, prediction) and what each row counts as.
ROWS = [
    ("teh", "the", [], "fce", "the"),               # changed, right; needs a fix: fixed
    ("it are", "it is", [], "fce", "it be"),        # changed, wrong; needs a fix: not fixed
    ("fine", "fine", [], "fce", "fine!"),           # changed, wrong (a no-op edited)
    ("good", "good", [], "fce", "good"),            # unchanged no-op: in neither metric
    ("an test", "a test", [], "synthetic", "an test"),  # needs a fix, left alone: not fixed
    ("wnet", "went", ["gone"], "synthetic", "gone"),    # changed into another reference: right, fixed
    ("a", "b", [], "synthetic", "b"),               # changed, right; fixed
    ("x", "x", [], "synthetic", "y"),               # changed, wrong (a no-op edited)
]


def _example(span_in: str, span_out: str, refs: list[str], source: str) -> SpanExample:
    extra = {"references": refs} if refs else {}
    return SpanExample(ctx_before="Before ", span_in=span_in, ctx_after=" after.", span_out=span_out,
                       source=source, extra=extra)


@pytest.fixture
def rows() -> list[EvalRow]:
    return [make_row(_example(*r[:4]), Prediction(r[4], PostResult(r[4]), latency_s=0.01, new_tokens=1))
            for r in ROWS]


def test_edit_precision_and_recall_hand_counted(rows):
    m = compute_metrics([r.example for r in rows], [r.prediction for r in rows])
    # changed: rows 1, 2, 3, 6, 7, 8; right among them: 1, 6 (a further reference), 7 -> 3/6
    assert m["edit_precision"] == pytest.approx(3 / 6)
    # needing a fix: rows 1, 2, 5, 6, 7; fixed exactly: 1, 6, 7 -> 3/5
    assert m["edit_recall"] == pytest.approx(3 / 5)
    # exact match still compares with span_out only: rows 1, 4, 7
    assert m["exact_match"] == pytest.approx(3 / 8)


def test_edit_metrics_undefined_without_their_examples():
    assert compute_metrics([_example("a", "b", [], "s")], ["a"])["edit_precision"] is None
    assert compute_metrics([_example("a", "a", [], "s")], ["a"])["edit_recall"] is None
    # an unchanged span is never a fix, even when a further reference equals span_in
    assert compute_metrics([_example("a", "b", ["a"], "s")], ["a"])["edit_recall"] == 0.0


def test_edit_metrics_have_bootstrap_intervals(rows):
    s = summarize(Columns.from_rows(rows * 5), n_boot=200, seed=1)
    for name in ("edit_precision", "edit_recall"):
        lo, hi = s[name]["ci"]
        assert lo <= s[name]["value"] <= hi and lo < hi


def test_per_source_breakdown(rows):
    b = breakdowns(rows, Columns.from_rows(rows), n_boot=20)["source"]
    assert {g: v["n"] for g, v in b.items()} == {"fce": 4, "synthetic": 4}
    # fce: changed 1, 2, 3 -> right 1; needing a fix 1, 2 -> fixed 1
    assert b["fce"]["metrics"]["edit_precision"] == pytest.approx(1 / 3)
    assert b["fce"]["metrics"]["edit_recall"] == pytest.approx(1 / 2)
    # synthetic: changed 6, 7, 8 -> right 6, 7; needing a fix 5, 6, 7 -> fixed 6, 7
    assert b["synthetic"]["metrics"]["edit_precision"] == pytest.approx(2 / 3)
    assert b["synthetic"]["metrics"]["edit_recall"] == pytest.approx(2 / 3)


def test_report_tables_show_edit_metrics_per_source(rows):
    report = build_report(rows, system={"spec": "hand", "kind": "identity"},
                          data={"path": "x.jsonl", "sha256": "0"}, n_selected=len(rows), n_boot=20)
    md = markdown(report)
    assert "| Edit precision | 50.0% |" in md
    source_table = md.split("### By source")[1].split("##")[0]
    header = source_table.strip().splitlines()[0]
    assert "Edit precision" in header and "Edit recall" in header
    assert "| fce | 4 |" in source_table and "33.3%" in source_table
    out = io.StringIO()
    print_summary(report, file=out)
    text = out.getvalue()
    assert "Edit recall" in text and "by source" in text and "synthetic" in text


def test_row_keeps_keep_margin_fields_through_dict():
    e = _example("teh", "the", [], "fce")
    row = EvalRow(e, "teh", raw="the", overrun=False, verbose=False, fallback=False, kept=True,
                  keep_logprob=-1.25, answer_logprob=-0.5, edit_preference=0.375)
    back = EvalRow.from_dict(json.loads(json.dumps(row.to_dict())))
    assert back == row


def test_bad_references_field_names_file_line_and_field(tmp_path: Path):
    good = _example("teh", "the", [], "fce").to_dict()
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "id": "b", "references": "the"}) + "\n")
    with pytest.raises(InputError) as err:
        select_examples(str(path), None, None)
    assert str(err.value).startswith(f"{path}:3: references: expected a list of strings")
