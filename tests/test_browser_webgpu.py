"""The demo page on WebGPU answers as the Node harness does: prefix cache in GPU buffers, decoding without drafts.

Headless Chromium with ``--enable-unsafe-webgpu`` offers a WebGPU adapter even without a GPU (SwiftShader, a CPU
emulation of Vulkan): right for checking the WebGPU code path of js/src/corrector.js, not for timing it.
Skips where Chromium is not installed (`make browser`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from spantune.demo.page import CHROMIUM
from spantune.demo.server import DEFAULT_JS_DIR, make_server, serve_in_thread, url_of

CASES = [
    {"text": "She go to the store yesterday and buyed three apple.", "start": 0, "end": 52},
    {"text": "She go to the store yesterday.", "start": 4, "end": 6},
    {"text": "I has went home.", "start": 2, "end": 5},
]

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"Chromium is not installed at {CHROMIUM}")


def test_webgpu_page_equals_node(lively_export: Path, tmp_path: Path) -> None:
    cases, result = tmp_path / "cases.json", tmp_path / "result.json"
    cases.write_text(json.dumps(CASES), encoding="utf-8")
    server = make_server(lively_export, port=0, quiet=True)
    serve_in_thread(server)
    try:
        run = subprocess.run(["node", "demo/test/e2e.mjs", "--url", url_of(server), "--model", str(lively_export),
                              "--cases", str(cases), "--out", str(result), "--device", "webgpu", "--dtype", "q4"],
                             cwd=DEFAULT_JS_DIR, capture_output=True, text=True, timeout=1200, check=False)
    finally:
        server.shutdown()
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(result.read_text(encoding="utf-8"))
    browser, node = out["browser"], out["node"]
    assert browser["errors"] == [] and browser["webgpu"]
    assert (browser["device"], browser["dtype"]) == ("webgpu", "q4")
    for seen, ref in zip(browser["answers"], node, strict=True):
        assert (seen["raw"], seen["tokens"]) == (ref["raw"], ref["tokens"])
        assert seen["passes"] in (ref["tokens"], ref["tokens"] + 1)  # no drafts on WebGPU: one token per pass
    assert len({ref["raw"] for ref in node}) == len(CASES)
