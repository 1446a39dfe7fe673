"""The Harper peer adapter on a few sentences (skipped, saying why, where harper-py is not installed)."""

from __future__ import annotations

import pytest

from spantune.schema import SpanExample

harper = pytest.importorskip("harper", reason="harper-py is not installed (pip install 'spantune[peers]')")


@pytest.fixture(scope="module")
def corrector():
    from spantune.peers.harper import HarperCorrector

    return HarperCorrector()


def test_fixes_inside_the_span(corrector):
    assert corrector.correct_text("I went to ", "teh", " store.") == "the"
    assert corrector.correct_text("This is ", "an test", " of it.") == "a test"
    assert corrector.correct_text("", "Their going too", " the park.").endswith("going to")


def test_ignores_lints_in_or_across_the_context(corrector):
    # Harper flags "has" (agreement) in the context: the span must not change because of it
    assert corrector.correct_text("I has ", "a dog", " at home.") == "a dog"
    # "like like" straddles the span's start, so the repetition lint is not applied
    assert corrector.correct_text("I like ", "like cats", " a lot.") == "like cats"


def test_keeps_the_span_edges_and_contexts(corrector):
    out = corrector.correct_text("Yesterday", " i went", " home.")
    assert out == " I went"


def test_prediction_goes_through_postprocessing(corrector):
    ex = SpanExample(ctx_before="I went to ", span_in="teh", ctx_after=" store.", span_out="the")
    p = corrector.correct(ex)
    assert p.raw == "the" and p.text == "the"
    assert not (p.result.verbose or p.result.overrun or p.result.fallback)
    assert p.latency_s > 0
