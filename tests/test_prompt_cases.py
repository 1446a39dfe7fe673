"""The shared fixture that the JS side must reproduce byte for byte: Python must too."""

from __future__ import annotations

import json

from pathlib import Path
from spantune.postprocess import postprocess
from spantune.prompt import SYSTEM_PROMPT, clip_after, clip_before, select_span, user_message


def test_python_reproduces_every_case() -> None:
    path = Path(__file__).resolve().parents[1] / "fixtures" / "prompt_cases.jsonl"
    cases = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {c["kind"] for c in cases} == {"prompt", "clip", "select", "postprocess"}
    for c in cases:
        i, exp = c["input"], c["expected"]
        if c["kind"] == "prompt":
            assert exp == {"system": SYSTEM_PROMPT, "user": user_message(i["ctx_before"], i["span_in"], i["ctx_after"])}
        elif c["kind"] == "clip":
            assert exp == {"before": clip_before(i["text"], i["limit"]), "after": clip_after(i["text"], i["limit"])}
        elif c["kind"] == "select":
            assert tuple(exp.values()) == select_span(i["text"], i["start"], i["end"])
        else:
            assert exp == postprocess(i["raw"], i["span_in"]).to_dict()
