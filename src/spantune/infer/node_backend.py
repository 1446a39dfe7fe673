"""The Transformers.js backend (``--system node:DIR``): ``js/src/corrector.js`` in Node answers each span, as
the browser does, so its answers are measured with the same eval as PyTorch's and onnxruntime's.

One Node process (``js/scripts/node_harness.mjs``) loads the export once, then answers one JSON line per span
over stdin/stdout. The js/ folder (its harness and node_modules) is the caller's: found from the path passed
in, never from the working directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import weakref
from pathlib import Path
from typing import Any, TextIO, cast

from spantune.errors import SpantuneError
from spantune.infer.base import KEEP_SCORES, Prediction
from spantune.infer.keep import KeepMargin
from spantune.postprocess import PostResult
from spantune.schema import SpanExample, dumps

#: js/ of the checkout this package runs from (an editable install): the default of ``--js-dir``.
DEFAULT_JS_DIR = Path(__file__).resolve().parents[3] / "js"


def harness_path(js_dir: Path) -> Path:
    """The Node side of this backend inside a js/ folder."""
    return js_dir / "scripts" / "node_harness.mjs"


def _stop(proc: subprocess.Popen[str]) -> None:
    """End of stdin ends the harness; one that hangs is killed."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class NodeCorrector:
    """The :class:`~spantune.infer.base.Corrector` for an export run by Transformers.js in Node. The keep
    margin is applied by the JS corrector (the same rule and scores as :mod:`spantune.infer.keep`).

    ``load_s`` (the model load in Node) and ``runtime`` (the Node version) are facts for the report; the
    process ends when the corrector is garbage-collected.
    """

    def __init__(self, model_dir: str | Path, js_dir: Path, dtype: str = "q4", max_new_tokens: int = 32,
                 keep: KeepMargin = KeepMargin()) -> None:
        from spantune.infer.onnx_backend import onnx_file

        self.model_dir = Path(model_dir)
        node = shutil.which("node")
        if node is None:
            raise SpantuneError("node not found on PATH: install Node.js >= 18 to run a node: system")
        if not (js_dir / "node_modules" / "@huggingface" / "transformers").is_dir():
            raise SpantuneError(f"{js_dir / 'node_modules'} lacks @huggingface/transformers: "
                                "run `make js` (cd js && npm ci)")
        harness = harness_path(js_dir)
        if not harness.is_file():
            raise SpantuneError(f"{harness} not found: pass the spantune js/ folder (--js-dir)")
        if not onnx_file(self.model_dir, dtype).is_file():
            raise SpantuneError(f"{onnx_file(self.model_dir, dtype)} not found: export the model with "
                                "`spantune export` (and this dtype)")
        self.name = f"node:{self.model_dir}:{dtype}"
        cmd = [node, str(harness), "--model", str(self.model_dir.resolve()), "--dtype", dtype,
               "--max-new-tokens", str(max_new_tokens), "--keep-margin", repr(keep.margin)]
        cmd += ["--score-keep"] if keep.score else []
        # stderr is inherited: Transformers.js messages and errors reach the terminal as they come
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, encoding="utf-8")
        weakref.finalize(self, _stop, self.proc)
        self._to_node, self._from_node = cast(TextIO, self.proc.stdin), cast(TextIO, self.proc.stdout)
        ready = self._answer()
        self.load_s = round(ready["load_ms"] / 1000, 2)
        self.runtime = f"node {ready['node']}"

    def _answer(self) -> dict[str, Any]:
        line = self._from_node.readline()
        if not line:
            raise SpantuneError(f"the Transformers.js harness exited (code {self.proc.wait()}); its messages are above")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise SpantuneError(f"the Transformers.js harness answered {line[:200]!r}, not a JSON line") from None

    def correct(self, example: SpanExample) -> Prediction:
        try:
            self._to_node.write(dumps(example.to_dict()) + "\n")
            self._to_node.flush()
        except BrokenPipeError:
            pass  # the harness has exited: _answer says how
        o = self._answer()
        return Prediction(raw=o["raw"], result=PostResult(o["text"], o["overrun"], o["verbose"], o["fallback"]),
                          latency_s=o["latency_ms"] / 1000, new_tokens=len(o["tokens"]),
                          **{k: o.get(k) for k in KEEP_SCORES})
