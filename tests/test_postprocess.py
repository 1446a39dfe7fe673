from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spantune.postprocess import length_cap, postprocess


def test_plain_and_whitespace() -> None:
    r = postprocess("it is", "it are")
    assert (r.text, r.verbose, r.overrun, r.fallback) == ("it is", False, False, False)
    assert postprocess("  it is \n", "it are").text == "it is"
    assert postprocess("the", " teh ").text == " the "  # the span's own whitespace is kept


def test_strips_labels_quotes_and_extra_lines() -> None:
    for raw in ("Span: it is", "«it is»", '"it is"', "Corrected: “it is”", "it is\nBecause agreement."):
        r = postprocess(raw, "it are")
        assert r.text == "it is" and r.verbose and not r.fallback, raw


def test_keeps_what_the_span_itself_has() -> None:
    assert postprocess('"quoted"', '"quoted"').text == '"quoted"'
    r = postprocess("Answer: 42", "Answer: 41")
    assert r.text == "Answer: 42" and not r.verbose


def test_overrun_and_empty_fall_back() -> None:
    assert length_cap("teh") == 23
    assert postprocess("x" * 23, "teh").text == "x" * 23
    r = postprocess("x" * 24, "teh")
    assert r.text == "teh" and r.overrun and r.fallback
    r = postprocess("", "it are")
    assert r.text == "it are" and r.fallback and not r.overrun
    assert postprocess("abcdef", "abc", cap=5).overrun


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300), st.text(min_size=1, max_size=40))
def test_never_exceeds_the_cap_and_never_inserts_a_line(raw: str, span: str) -> None:
    r = postprocess(raw, span)
    assert len(r.text.strip()) <= max(length_cap(span), len(span))
    if r.fallback:
        assert r.text == span
    else:
        assert "\n" not in r.text.strip()


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab «»\n\r\u00a0:Span\ufffd\"")), max_size=60),
       st.text(alphabet=st.sampled_from(list("ab «»\n:x\"")), max_size=20), st.text(min_size=1, max_size=10))
def test_settled_output_cannot_change(raw: str, more: str, span: str) -> None:
    """Stopping decoding once settled() is true never changes what is inserted or flagged."""
    from spantune.postprocess import settled

    if settled(raw):
        assert postprocess(raw + more, span) == postprocess(raw, span)


def test_settled_examples() -> None:
    from spantune.postprocess import settled

    assert not settled("it is") and not settled("it is\n") and not settled("\n\nit is\n  ")
    assert settled("Span: it\n\nThe corrected")
