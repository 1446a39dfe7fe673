"""The browser demo end to end: Debian's Chromium (headless, offline) runs js/demo on an exported tiny model.

The page's suggestion must equal the Node harness's (js/src/corrector.js on onnxruntime-node) for the
same text and selection: same span, same raw greedy output, same post-processed text. The test skips
only where Chromium is not installed (`make browser` / `.ci/run` install it with apt).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spantune.demo.page import CHROMIUM
from spantune.prompt import select_span

ROOT = Path(__file__).resolve().parents[1]
JS_DIR = ROOT / "js"
ARTIFACTS = JS_DIR / "demo" / "test" / ".artifacts"

TEXT = "She go to the store yesterday and buyed three apple.\nI has went to the park."
CASES = [
    # "span": where the span the page must pick lies (code points), to check what Accept writes.
    # A whole-line selection (long enough that the random model's answer fits the length cap: a suggestion).
    {"text": TEXT, "start": 0, "end": 52, "span": [0, 52], "screenshot": True},
    # A short selection.
    {"text": TEXT, "start": 4, "end": 13, "span": [4, 13]},
    # A caret inside "buyed": the page picks the span with select_span's caret rule.
    {"text": TEXT, "start": 36, "end": 36, "span": [34, 39]},
    # A caret in the spaces after "has" picks the word just typed; the emoji makes UTF-16 ≠ code points.
    {"text": "I 😀 has  went home.", "start": 8, "end": 8, "span": [4, 7]},
    # A selection after a non-BMP character.
    {"text": "I 😀 has went home.", "start": 4, "end": 12, "span": [4, 12]},
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install -y chromium; `make browser`)",
)


def test_browser_suggestion_equals_node_harness(lively_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spantune.demo.server import drive_browser

    # Paths relative to the working directory, as the demo passes them (the driver itself runs from js/).
    monkeypatch.chdir(ROOT)
    work = ARTIFACTS.relative_to(ROOT)
    result = drive_browser(Path(os.path.relpath(lively_export)), CASES, work, screenshot=work / "demo.png")
    browser, node = result["browser"], result["node"]
    assert browser["errors"] == []
    origin = browser["requests"][0].split("?")[0]
    assert all(url.startswith((origin, f"blob:{origin}")) for url in browser["requests"]), browser["requests"]
    assert any(url.endswith("onnx/model_q4.onnx") for url in browser["requests"])

    changed = 0
    for case, seen, ref in zip(CASES, browser["answers"], node, strict=True):
        python_parts = select_span(case["text"], case["start"], case["end"])
        assert tuple(ref["example"].values()) == python_parts
        assert seen["spanIn"] == ref["example"]["span_in"]
        assert seen["raw"] == ref["raw"]
        suggested = ref["result"]["text"] != ref["example"]["span_in"]
        assert seen["state"] == ("suggestion" if suggested else "unusable" if ref["result"]["fallback"] else "no-change")
        assert seen["suggestion"] == (ref["result"]["text"] if suggested else "")
        assert seen["latency"].endswith("tokens")
        start, end = case["span"]
        assert case["text"][start:end] == python_parts[1]
        if suggested:
            assert seen["afterAccept"] == case["text"][:start] + ref["result"]["text"] + case["text"][end:]
        changed += suggested
    # The random model must give varied answers and at least one real suggestion, or agreement is trivial.
    assert len({ref["raw"] for ref in node}) > 1
    assert changed >= 1

    shot = ARTIFACTS / "demo.png"
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
