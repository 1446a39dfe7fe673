"""``node:DIR`` systems: Transformers.js in Node is evaluated like any backend and answers like onnxruntime.

Skipped, saying why, where Node or js/node_modules is missing (``make js``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spantune.errors import SpantuneError
from spantune.evaluate import run_eval
from spantune.evaluate.runner import PREDICTIONS, read_predictions
from spantune.evaluate.systems import load_system
from spantune.infer.node_backend import DEFAULT_JS_DIR

SPANS = Path(__file__).parent / "fixtures" / "spans.jsonl"

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (DEFAULT_JS_DIR / "node_modules" / "@huggingface" / "transformers").is_dir(),
    reason="node or js/node_modules is missing (install Node.js >= 18, then make js)",
)


def test_a_js_dir_without_its_packages_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SpantuneError, match="node"):
        load_system(f"node:{tmp_path}", js_dir=tmp_path)


@needs_node
def test_node_system_answers_like_onnxruntime(lively_export: Path, tmp_path: Path) -> None:
    common = {"limit": 6, "dtype": "fp32", "max_new_tokens": 8, "n_boot": 20}
    node = run_eval(f"node:{lively_export}", SPANS, out=tmp_path / "node", js_dir=DEFAULT_JS_DIR, **common)
    ort = run_eval(f"onnx:{lively_export}", SPANS, out=tmp_path / "ort", **common)
    system = node.content["system"]
    assert system["kind"] == "transformers.js" and system["runtime"].startswith("node v") and system["load_s"] >= 0
    assert system["sha256"] == ort.content["system"]["sha256"]  # the same export files
    rows, ort_rows = (read_predictions(r.out / PREDICTIONS) for r in (node, ort))
    assert len(rows) == 6
    assert [(r.raw, r.prediction) for r in rows] == [(r.raw, r.prediction) for r in ort_rows]
    assert node.metrics["exact_match"] == ort.metrics["exact_match"]
