"""`spantune serve-demo`: routes, headers, import mapping and one-line errors (no browser needed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from spantune.cli import main
from spantune.demo.server import DEFAULT_JS_DIR, REQUIRED_MODEL_FILES, make_server, serve_in_thread, url_of
from spantune.errors import SpantuneError

needs_node_modules = pytest.mark.skipif(
    not (DEFAULT_JS_DIR / "node_modules" / "@huggingface" / "transformers").is_dir(),
    reason="js/node_modules is not installed (cd js && npm ci)",
)


def fake_model(folder: Path) -> Path:
    """A folder with the files serve-demo checks for (their content does not matter to the server)."""
    for name in REQUIRED_MODEL_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    (folder / "onnx").mkdir(exist_ok=True)
    for name in ("model.onnx", "model_q4.onnx"):
        (folder / "onnx" / name).write_text("onnx")
    return folder


@pytest.fixture()
def base_url(tmp_path: Path) -> Iterator[str]:
    server = make_server(fake_model(tmp_path / "model"), port=0, quiet=True)
    serve_in_thread(server)
    yield url_of(server)
    server.shutdown()
    server.server_close()


def get(url: str) -> tuple[int, Message, bytes]:
    try:
        with urllib.request.urlopen(url) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, b""


def test_a_folder_without_onnx_files_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = fake_model(tmp_path / "model")
    for onnx in (model / "onnx").glob("*.onnx"):
        onnx.unlink()
    assert main(["serve-demo", str(model), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("spantune: error: ") and "missing onnx/model*.onnx" in err and "\n" not in err


def test_any_exported_file_is_enough(tmp_path: Path) -> None:
    model = fake_model(tmp_path / "model")
    (model / "onnx" / "model_q4.onnx").unlink()  # an export of fp32 and int8 only: the page picks among those
    make_server(model, port=0, quiet=True).server_close()


def test_a_browser_dropping_a_download_prints_no_traceback(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    server = make_server(fake_model(tmp_path / "model"), port=0, quiet=True)
    for error, printed in ((ConnectionResetError(104, "Connection reset by peer"), False), (ValueError("bug"), True)):
        try:
            raise error
        except Exception:
            server.handle_error(None, ("127.0.0.1", 1))
        assert ("Traceback" in capsys.readouterr().err) is printed
    server.server_close()


def test_missing_node_modules_says_npm_ci(tmp_path: Path) -> None:
    js = tmp_path / "js"
    (js / "demo").mkdir(parents=True)
    (js / "demo" / "index.html").write_text("<!doctype html>")
    with pytest.raises(SpantuneError, match=r"run: cd js && npm ci"):
        make_server(fake_model(tmp_path / "model"), port=0, js_dir=js)


@needs_node_modules
def test_routes_headers_and_config(base_url: str) -> None:
    status, headers, body = get(base_url)
    assert status == 200 and b'src="app.js"' in body
    # Cross-origin isolation, so that ONNX Runtime may use wasm threads.
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"

    config = json.loads(get(base_url + "demo-config.json")[2])
    assert config["model"] == "spantune" and config["dtypes"] == ["fp32", "q4"]
    for device, paths in config["wasmPaths"].items():
        for url in paths.values():
            status, headers, _ = get(base_url + url.lstrip("/"))
            assert status == 200, (device, url)
    assert get(base_url + config["wasmPaths"]["wasm"]["wasm"].lstrip("/"))[1]["Content-Type"] == "application/wasm"
    assert get(base_url + "models/spantune/onnx/model_q4.onnx")[2] == b"onnx"
    assert get(base_url + "vendor/transformers/transformers.js")[0] == 200


@needs_node_modules
def test_lib_modules_resolve_the_bare_transformers_import(base_url: str) -> None:
    status, headers, body = get(base_url + "lib/corrector.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"'/vendor/transformers/transformers.js'" in body or b'"/vendor/transformers/transformers.js"' in body
    assert b"@huggingface/transformers" not in body
    assert get(base_url + "lib/prompt.js")[0] == 200


@needs_node_modules
@pytest.mark.parametrize("path", ["models/spantune/../../../etc/passwd", "models/spantune/%2e%2e/%2e%2e/pyproject.toml",
                                  "lib/../../pyproject.toml", "nope.txt"])
def test_nothing_outside_the_served_folders(base_url: str, path: str) -> None:
    assert get(base_url + path)[0] == 404
