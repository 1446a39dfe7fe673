from __future__ import annotations

import json
from pathlib import Path

import pytest

from spantune.errors import InputError
from spantune.schema import SpanExample, check_jsonl, from_chat, read_jsonl, to_chat, write_jsonl

GOOD = {"language": "en", "ctx_before": "She said", "span_in": "it are", "ctx_after": " fine.", "span_out": "it is",
        "tags": ["agreement"], "id": "x1", "source": "test", "note": "kept"}


def test_round_trip_keeps_unknown_fields(tmp_path: Path) -> None:
    ex = SpanExample.from_dict(GOOD)
    assert ex.extra == {"note": "kept"}
    assert ex.to_dict() == GOOD
    write_jsonl(tmp_path / "a.jsonl", [ex])
    assert read_jsonl(tmp_path / "a.jsonl")[0] == ex


def test_chat_round_trip(tmp_path: Path) -> None:
    ex = SpanExample.from_dict({**GOOD, "span_in": "«x»\nno"[:3], "ctx_before": "a\nb»"})
    chat = to_chat(ex)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant"]
    assert from_chat(chat) == ex
    write_jsonl(tmp_path / "c.jsonl", [ex], chat=True)
    assert read_jsonl(tmp_path / "c.jsonl") == [ex]


def test_chat_that_is_not_our_prompt_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}) + "\n")
    with pytest.raises(InputError, match=r"c\.jsonl:1: messages\.user: not a span prompt"):
        read_jsonl(p)


@pytest.mark.parametrize("record, field, msg", [
    ({k: v for k, v in GOOD.items() if k != "span_out"}, "span_out", "missing required field"),
    ({**GOOD, "span_in": 3}, "span_in", "expected a string"),
    ({**GOOD, "span_in": "  "}, "span_in", "empty span"),
    ({**GOOD, "tags": "x"}, "tags", "list of strings"),
    ({**GOOD, "span_out": "a\nb"}, "span_out", "line break"),
    ({**GOOD, "ctx_before": "w " * 40}, "ctx_before", "over the 60-character"),
])
def test_validation_errors(record: dict, field: str, msg: str) -> None:
    with pytest.raises(InputError) as err:
        SpanExample.from_dict(record, "f.jsonl", 7)
    assert str(err.value).startswith(f"f.jsonl:7: {field}: ") and msg in str(err.value)


def test_clip_instead_of_error() -> None:
    ex = SpanExample.from_dict({**GOOD, "ctx_before": "word " * 20}, clip=True)
    assert len(ex.ctx_before) <= 60


def test_check_reports_every_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "mixed.jsonl"
    lines = [json.dumps(GOOD).encode(), b"{not json", json.dumps({**GOOD, "span_in": 1}).encode(), b"\xff\xfe",
             json.dumps(GOOD).encode(), b"", json.dumps({**GOOD, "pad": "x" * 100_000}).encode()]
    p.write_bytes(b"\n".join(lines) + b"\n")
    result = check_jsonl(p)
    assert [n for n, _, _ in result.good] == [1, 5]
    assert [n for n, _, _ in result.bad] == [2, 3, 4, 7]
    fields = [e.field for _, e, _ in result.bad]
    assert fields == ["<json>", "span_in", "<line>", "<line>"]


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No such file"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_a_utf8_bom_at_the_start_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    line = '{"ctx_before": "I ", "span_in": "beleive", "ctx_after": " it.", "span_out": "believe"}\n'
    path.write_bytes(b"\xef\xbb\xbf" + (line * 2).encode())
    assert [ex.span_in for ex in read_jsonl(path)] == ["beleive", "beleive"]
