"""Every metric on hand-computed cases; chrF against sacrebleu; bootstrap CIs and paired deltas."""

from __future__ import annotations

import pytest
import sacrebleu

from spantune.evaluate.bootstrap import breakdowns, compare, summarize
from spantune.evaluate.metrics import (
    Columns,
    EvalRow,
    compute_metrics,
    corpus_chrf,
    flag_problem,
    make_row,
    normalized_levenshtein,
    sentence_chrf,
    span_length_bucket,
)
from spantune.infer.base import Prediction
from spantune.postprocess import PostResult, postprocess
from spantune.schema import SpanExample


def ex(span_in: str, span_out: str, tags: list[str] | None = None, **kw) -> SpanExample:
    return SpanExample(ctx_before="Before ", span_in=span_in, ctx_after=" after.", span_out=span_out,
                       tags=tags or [], **kw)


def pred(raw: str, example: SpanExample, latency: float = 0.01, tokens: int = 1) -> Prediction:
    return Prediction(raw=raw, result=postprocess(raw, example.span_in), latency_s=latency, new_tokens=tokens)


def test_exact_match_counts_only_identical_strings_whitespace_included():
    examples = [ex("it are", "it is"), ex(" teh", " the"), ex("fine", "fine"), ex("a", "b")]
    # exact; leading space missing (not exact); exact; wrong
    m = compute_metrics(examples, ["it is", "the", "fine", "c"])
    assert m["exact_match"] == pytest.approx(2 / 4)


def test_normalized_levenshtein_hand_computed():
    assert normalized_levenshtein("sitting", "kitten") == pytest.approx(3 / 7)
    assert normalized_levenshtein("", "") == 0.0
    assert normalized_levenshtein("", "abc") == 1.0
    m = compute_metrics([ex("x", "kitten"), ex("x", "abc"), ex("x", "abd")], ["sitting", "abc", "abc"])
    assert m["levenshtein"] == pytest.approx((3 / 7 + 0 + 1 / 3) / 3)


def test_chrf_hand_computed():
    # 1-grams: hyp {a, b}, ref {a, c}, 1 match -> P = R = 1/2; 2-grams: {ab} vs {ac}, 0 matches -> P = R = 0;
    # longer orders have no n-grams. sacrebleu averages P and R over the 2 effective orders: 1/4 each,
    # then F_beta=2 = (1 + 4) * 1/4 * 1/4 / (4 * 1/4 + 1/4) = 1/4 -> 25.
    assert sentence_chrf("ab", "ac") == pytest.approx(25.0)
    assert sentence_chrf("the", "the") == pytest.approx(100.0)
    assert sentence_chrf("", "abc") == 0.0


CHRF_CASES = [
    ("it is", "it is"), ("They're going", "Their going"), ("", "the"), ("x" * 40, "short"),
    ("пішов додому", "пішов до дому"), ("don't know", "doesn't know"), ("a", "a "), ("🙂 ok", "ok"),
]


def test_chrf_equals_sacrebleu_sentence_and_corpus():
    for hyp, ref in CHRF_CASES:
        assert sentence_chrf(hyp, ref) == pytest.approx(sacrebleu.sentence_chrf(hyp, [ref]).score)
    hyps, refs = zip(*CHRF_CASES)
    expected = sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score
    assert corpus_chrf(hyps, refs) == pytest.approx(expected)
    examples = [ex("x", r) for r in refs]
    assert compute_metrics(examples, list(hyps))["chrf"] == pytest.approx(expected)


def test_flag_rates_come_from_postprocess_flags():
    examples = [ex("it are", "it is"), ex("teh", "the"), ex("an test", "a test"), ex("fine", "fine")]
    raws = ["it is", "Span: the", "x" * 100, ""]  # clean; verbose; overrun (falls back); empty (falls back)
    preds = [pred(r, e) for r, e in zip(raws, examples)]
    assert [p.result for p in preds] == [
        PostResult("it is"), PostResult("the", verbose=True),
        PostResult("an test", overrun=True, fallback=True), PostResult("fine", fallback=True)]
    m = compute_metrics(examples, preds)
    assert m["verbose_rate"] == pytest.approx(1 / 4)
    assert m["overrun_rate"] == pytest.approx(1 / 4)
    assert m["fallback_rate"] == pytest.approx(2 / 4)
    assert m["exact_match"] == pytest.approx(3 / 4)


def test_flag_rates_undefined_for_plain_strings():
    m = compute_metrics([ex("a", "b")], ["b"])
    assert m["verbose_rate"] is None and m["overrun_rate"] is None and m["fallback_rate"] is None
    assert m["exact_match"] == 1.0


def test_noop_false_edit_and_missed_fix_rates():
    examples = [
        ex("fine", "fine"),      # no-op, left alone
        ex("good", "good"),      # no-op, changed -> false edit
        ex("okay", "okay"),      # no-op, left alone
        ex("it are", "it is"),   # needs a fix, left unchanged -> missed fix
        ex("teh", "the"),        # needs a fix, fixed
        ex("an test", "a test"), # needs a fix, changed wrongly: neither a false edit nor a missed fix
    ]
    m = compute_metrics(examples, ["fine", "great", "okay", "it are", "the", "an tests"])
    assert m["noop_false_edit_rate"] == pytest.approx(1 / 3)
    assert m["missed_fix_rate"] == pytest.approx(1 / 3)
    rows = [make_row(e, p).to_dict() for e, p in zip(examples, ["fine", "great", "okay", "it are", "the", "x"])]
    assert [r["false_edit"] for r in rows] == [False, True, False, False, False, False]
    assert [r["missed_fix"] for r in rows] == [False, False, False, True, False, False]


def test_conditional_rates_undefined_without_their_examples():
    assert compute_metrics([ex("a", "b")], ["a"])["noop_false_edit_rate"] is None
    assert compute_metrics([ex("a", "a")], ["b"])["missed_fix_rate"] is None


def test_latency_percentiles_and_tokens_per_second():
    examples = [ex("a", "a")] * 4
    preds = [Prediction("a", PostResult("a"), latency_s=s, new_tokens=t)
             for s, t in [(0.04, 4), (0.01, 1), (0.03, 3), (0.02, 2)]]
    m = compute_metrics(examples, preds)
    assert m["latency_p50_ms"] == pytest.approx(25.0)
    # numpy linear interpolation: position 0.95 * 3 = 2.85 between 30 and 40 ms
    assert m["latency_p95_ms"] == pytest.approx(38.5)
    assert m["tokens_per_s"] == pytest.approx(10 / 0.1)


def test_tokens_per_second_undefined_without_generated_tokens():
    preds = [Prediction("a", PostResult("a"), latency_s=0.001, new_tokens=0)]
    assert compute_metrics([ex("a", "a")], preds)["tokens_per_s"] is None


def test_make_row_rejects_unknown_prediction_types():
    with pytest.raises(TypeError):
        make_row(ex("a", "a"), 42)


def test_row_round_trip_through_dict():
    e = ex("teh", "the", tags=["typo"], id="x1", language="en", source="s")
    row = make_row(e, pred("Span: the", e, latency=0.5, tokens=3))
    back = EvalRow.from_dict(row.to_dict())
    assert back == row


def test_span_length_buckets_follow_the_data_builder():
    assert [span_length_bucket(s) for s in ("teh", "it are", "a b c", "a b c d e", "a b c d e f g")] == \
        ["1", "2", "3-4", "5-6", "7+"]


def test_flag_problem_detects_inconsistent_rows():
    e = ex("it are", "it is")
    assert flag_problem(make_row(e, pred("it is", e))) is None
    assert flag_problem(make_row(e, pred("x" * 99, e))) is None  # overrun handled by post-processing
    assert flag_problem(make_row(e, "it is")) == "missing post-processing flags"
    assert flag_problem(EvalRow(e, "it is", overrun=True, verbose=False, fallback=False)) == "overrun without fallback"
    assert flag_problem(EvalRow(e, "it is", overrun=False, verbose=False, fallback=True)) == \
        "fallback but the prediction is not span_in"
    assert flag_problem(EvalRow(e, "x" * 99, overrun=False, verbose=False, fallback=False)) == \
        "accepted edit longer than the length cap"


def _cols(examples, preds) -> Columns:
    return Columns.from_rows([make_row(e, p) for e, p in zip(examples, preds)])


def test_bootstrap_is_seeded_and_brackets_the_value():
    examples = [ex(f"w{i}", f"w{i}" if i % 3 else f"v{i}") for i in range(60)]
    preds = [e.span_out if i % 2 else e.span_in for i, e in enumerate(examples)]
    cols = _cols(examples, preds)
    a, b = summarize(cols, n_boot=300, seed=7), summarize(cols, n_boot=300, seed=7)
    assert a == b
    lo, hi = a["exact_match"]["ci"]
    assert lo < a["exact_match"]["value"] < hi
    assert summarize(cols, n_boot=300, seed=8)["exact_match"]["ci"] != a["exact_match"]["ci"]
    assert a["latency_p50_ms"]["ci"] is None  # machine-dependent: no interval


def test_paired_delta_significance():
    examples = [ex(f"w{i}", f"fixed{i}") for i in range(40)] + [ex(f"n{i}", f"n{i}") for i in range(10)]
    oracle = _cols(examples, [e.span_out for e in examples])
    identity = _cols(examples, [e.span_in for e in examples])
    d = compare(oracle, identity, n_boot=300)
    assert d["exact_match"]["delta"] == pytest.approx(40 / 50)
    assert d["exact_match"]["significant"] and d["exact_match"]["ci"][0] > 0
    assert d["missed_fix_rate"]["delta"] == pytest.approx(-1.0) and d["missed_fix_rate"]["significant"]
    same = compare(identity, identity, n_boot=300)
    assert same["exact_match"]["delta"] == 0 and not same["exact_match"]["significant"]


def test_breakdowns_per_tag_and_length():
    examples = [ex("teh", "the", ["typo"]), ex("dont know", "doesn't know", ["typo", "agreement"]),
                ex("fine", "fine", ["noop"]), ex("a b c d", "a b c d")]
    rows = [make_row(e, p) for e, p in zip(examples, ["the", "dont know", "fine", "a b c d"])]
    b = breakdowns(rows, Columns.from_rows(rows), n_boot=50)
    assert set(b["tag"]) == {"typo", "agreement", "noop", "(untagged)"}
    assert b["tag"]["typo"]["n"] == 2 and b["tag"]["typo"]["metrics"]["exact_match"] == 0.5
    assert b["tag"]["agreement"]["metrics"]["exact_match"] == 0.0
    assert list(b["length"]) == ["1", "2", "3-4"]
    assert b["language"] == {"(unknown)": b["language"]["(unknown)"]} and b["language"]["(unknown)"]["n"] == 4
