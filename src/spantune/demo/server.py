"""The browser demo's server (``spantune serve-demo MODEL_DIR``): js/demo and an exported model on localhost.

Everything the page needs comes from this one origin, so the browser fetches nothing from the
internet: the page itself (``/``), the JS mirror of the prompt contract (``/lib/`` = js/src), the
Transformers.js browser build and ONNX Runtime's wasm files (``/vendor/``, from js/node_modules) and
the exported model (``/models/<name>/``). Responses carry the cross-origin-isolation headers so
that ONNX Runtime can use wasm threads (SharedArrayBuffer).
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError
from spantune.infer.node_backend import DEFAULT_JS_DIR

MODEL_NAME = "spantune"
REQUIRED_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")  #: and at least one onnx/model*.onnx
TRANSFORMERS_DIST = "node_modules/@huggingface/transformers/dist"
ORT_DIST_CANDIDATES = (  # npm nests onnxruntime-web under transformers when versions conflict
    "node_modules/@huggingface/transformers/node_modules/onnxruntime-web/dist",
    "node_modules/onnxruntime-web/dist",
)
#: ONNX Runtime wasm build per device. Transformers.js defaults to the asyncify build (it carries the
#: WebGPU EP) for both, but that build has no CPU kernel for GatherBlockQuantized, the 4-bit embedding
#: of spantune's q4 export; the plain build has it and runs the WASM backend.
ORT_BUILDS = {"wasm": "ort-wasm-simd-threaded", "webgpu": "ort-wasm-simd-threaded.asyncify"}
#: The bare import that js/src modules use; browsers (and module workers) cannot resolve it.
BARE_IMPORT = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(["'])@huggingface/transformers\2""")
VENDOR_TRANSFORMERS = "/vendor/transformers/transformers.js"


@dataclass(frozen=True)
class DemoSite:
    """Where each URL prefix of the demo lives on disk."""

    model_dir: Path
    js_dir: Path

    @property
    def routes(self) -> dict[str, Path]:
        ort = next((self.js_dir / c for c in ORT_DIST_CANDIDATES if (self.js_dir / c).is_dir()),
                   self.js_dir / ORT_DIST_CANDIDATES[-1])
        return {
            f"/models/{MODEL_NAME}/": self.model_dir,
            "/vendor/transformers/": self.js_dir / TRANSFORMERS_DIST,
            "/vendor/ort/": ort,
            "/lib/": self.js_dir / "src",
            "/": self.js_dir / "demo",
        }

    def dtypes(self) -> list[str]:
        """Exported precisions present in the model folder (``onnx/model_<dtype>.onnx``)."""
        names = sorted(p.stem for p in (self.model_dir / "onnx").glob("model*.onnx"))
        return [("fp32" if n == "model" else n.removeprefix("model_")) for n in names]

    def demo_config(self) -> dict[str, object]:
        """What the page asks the server first: which model to load, from where."""
        return {"model": MODEL_NAME, "modelRoot": "/models/", "dtypes": self.dtypes(),
                "wasmPaths": {device: {"mjs": f"/vendor/ort/{stem}.mjs", "wasm": f"/vendor/ort/{stem}.wasm"}
                              for device, stem in ORT_BUILDS.items()}}


def check_site(model_dir: Path, js_dir: Path = DEFAULT_JS_DIR) -> DemoSite:
    """Fail early, in one line, when the model or the JS dependencies are not where they must be."""
    if not model_dir.is_dir():
        raise SpantuneError(f"{model_dir}: not a folder (pass the folder written by `spantune export`)")
    missing = [f for f in REQUIRED_MODEL_FILES if not (model_dir / f).is_file()]
    if not any((model_dir / "onnx").glob("model*.onnx")):  # the page loads the file its device needs
        missing.append("onnx/model*.onnx")
    if missing:
        raise SpantuneError(f"{model_dir}: missing {', '.join(missing)} "
                            "(export it with: spantune export --model MODEL --out DIR)")
    if not (js_dir / "demo" / "index.html").is_file():
        raise SpantuneError(f"{js_dir / 'demo'}: the demo page is missing (index.html)")
    site = DemoSite(model_dir.resolve(), js_dir.resolve())
    needed = [site.routes["/vendor/transformers/"] / "transformers.js"]
    needed += [site.routes["/vendor/ort/"] / f"{stem}.{ext}" for stem in ORT_BUILDS.values() for ext in ("mjs", "wasm")]
    if not all(p.is_file() for p in needed):
        raise SpantuneError(f"{js_dir / 'node_modules'}: Transformers.js is not installed; run: cd js && npm ci")
    return site


class DemoHandler(SimpleHTTPRequestHandler):
    """Static files from several roots, with the headers a wasm-threaded page needs."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
                      ".onnx": "application/octet-stream", ".onnx_data": "application/octet-stream"}

    def __init__(self, *args: object, site: DemoSite, quiet: bool = False, **kwargs: object) -> None:
        self.site = site
        self.quiet = quiet
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def resolve(self, url_path: str) -> Path | None:
        """The file or folder for a URL under the longest matching route; None if it would escape it."""
        path = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(url_path).path))
        path = path if path.startswith("/") else "/" + path
        for prefix, root in self.site.routes.items():
            if path.startswith(prefix) or path == prefix.rstrip("/"):
                target = (root / path[len(prefix):]).resolve()
                return target if target.is_relative_to(root.resolve()) else None
        return None

    def translate_path(self, path: str) -> str:
        resolved = self.resolve(path)
        return str(resolved) if resolved is not None else ""

    def send_head(self):  # type: ignore[no-untyped-def]  (stdlib signature)
        if self.resolve(self.path) is None:
            self.send_error(404, "outside the demo's folders")
            return None
        return super().send_head()

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def do_GET(self) -> None:
        """Serve the demo config, js/src modules with their bare import resolved, or a static file."""
        url = urllib.parse.urlsplit(self.path).path
        if url == "/demo-config.json":
            self._send_bytes(json.dumps(self.site.demo_config()).encode(), "application/json")
        elif url.startswith("/lib/") and url.endswith(".js"):
            path = self.resolve(self.path)
            if path is None or not path.is_file():
                self.send_error(404)
                return
            source = BARE_IMPORT.sub(rf"\1\2{VENDOR_TRANSFORMERS}\2", path.read_text(encoding="utf-8"))
            self._send_bytes(source.encode(), "text/javascript")
        else:
            super().do_GET()

    def _send_bytes(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        if not self.quiet:
            super().log_message(format, *args)


class DemoServer(ThreadingHTTPServer):
    """The stdlib server, minus the traceback it prints when a browser drops a connection mid-file (a page
    closed or a request cancelled while the model downloads): that is the client's choice, not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def make_server(model_dir: Path, host: str = "127.0.0.1", port: int = 8000, js_dir: Path = DEFAULT_JS_DIR,
                quiet: bool = False) -> ThreadingHTTPServer:
    """A ready (bound, not yet serving) demo server; port 0 picks a free port (tests use it)."""
    site = check_site(model_dir, js_dir)
    try:
        return DemoServer((host, port), partial(DemoHandler, site=site, quiet=quiet))
    except OSError as exc:
        raise SpantuneError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Serve in a daemon thread (tests and benchmarks); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


def drive_browser(model_dir: Path, cases: list[dict[str, object]], work_dir: Path, screenshot: Path | None = None,
                  warmup: int = 0, dtype: str = "q4", threads: int | None = None, timeout_s: float = 1800,
                  js_dir: Path = DEFAULT_JS_DIR) -> dict[str, object]:
    """Serve ``model_dir`` and run js/demo/test/e2e.mjs: Chromium and the Node harness answer ``cases``.

    Each case is ``{"text", "start", "end"}`` in code points. Returns the driver's JSON (see e2e.mjs).
    Used by the demo's page step, tests/test_browser.py and benchmarks/browser_latency.py. Paths may be
    relative to the working directory: the driver runs from ``js_dir``, so they are made absolute here.
    """
    import subprocess

    model_dir, work_dir, js_dir = model_dir.resolve(), work_dir.resolve(), js_dir.resolve()
    screenshot = screenshot.resolve() if screenshot is not None else None
    if not (js_dir / "node_modules" / "playwright-core").is_dir():
        raise SpantuneError(f"{js_dir / 'node_modules'} lacks playwright-core; run: cd js && npm ci")
    work_dir.mkdir(parents=True, exist_ok=True)
    cases_file, result_file = work_dir / "cases.json", work_dir / "result.json"
    cases_file.write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
    result_file.unlink(missing_ok=True)
    command = ["node", "demo/test/e2e.mjs", "--model", str(model_dir), "--cases", str(cases_file),
               "--out", str(result_file), "--warmup", str(warmup), "--dtype", dtype]
    if threads:
        command += ["--threads", str(threads)]
    if screenshot is not None:
        command += ["--screenshot", str(screenshot)]
    server = make_server(model_dir, port=0, js_dir=js_dir, quiet=True)
    serve_in_thread(server)
    try:
        proc = subprocess.run([*command, "--url", url_of(server)], cwd=js_dir, capture_output=True,
                              text=True, timeout=timeout_s)
    finally:
        server.shutdown()
        server.server_close()
    if proc.returncode != 0:
        raise SpantuneError(f"the browser driver failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return json.loads(result_file.read_text(encoding="utf-8"))
