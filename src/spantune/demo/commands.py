"""``spantune demo`` and ``spantune serve-demo``: parse the arguments, run the demo or serve the browser page."""

from __future__ import annotations

import argparse
from pathlib import Path

from spantune.demo.config import DEFAULT_CONFIG


def cmd_demo(args: argparse.Namespace) -> int:
    from spantune.config import load_config
    from spantune.demo.config import DemoConfig
    from spantune.demo.steps import run_demo

    cfg = load_config(DemoConfig, args.config, [f"--{item}" for item in args.set])
    run_demo(cfg, force=args.force)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from spantune.demo.server import make_server, url_of

    server = make_server(Path(args.model_dir), args.host, args.port, Path(args.js_dir), quiet=args.quiet)
    print(f"spantune demo: {url_of(server)}  (model {args.model_dir}; Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def add_demo(subparsers: argparse._SubParsersAction) -> None:
    """``spantune demo [--config configs/demo.yaml] [--force] [--set SECTION.KEY=VALUE ...]``."""
    p = subparsers.add_parser(
        "demo", help="the whole pipeline on the embedded model: data, train, eval, export, Node",
        description="Build the data, evaluate the untuned model, fine-tune, evaluate the tuned model beside identity "
                    "and Harper, export q4 ONNX with parity, run it in Transformers.js, and print the side-by-side "
                    "table. Finished steps are cached by input hash (RUN_DIR/state.json) and skipped on a re-run.")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="demo config YAML (default %(default)s)")
    p.add_argument("--force", action="store_true", help="redo every step, ignoring the cache in RUN_DIR/state.json")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key, e.g. --set eval.limit=20 (repeatable)")
    p.set_defaults(func=cmd_demo)


def add_serve_demo(subparsers: argparse._SubParsersAction) -> None:
    """``spantune serve-demo MODEL_DIR [--port N] [--host H] [--js-dir DIR] [--quiet]``."""
    from spantune.infer.node_backend import DEFAULT_JS_DIR

    s = subparsers.add_parser("serve-demo", help="serve the in-browser span corrector demo on localhost",
                              description="Serve js/demo with an exported model folder (offline, same origin).")
    s.add_argument("model_dir", metavar="MODEL_DIR",
                   help="folder written by `spantune export`")
    s.add_argument("--port", type=int, default=8000, help="TCP port (0 = any free port; default 8000)")
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    s.add_argument("--js-dir", default=str(DEFAULT_JS_DIR), help="the spantune js/ folder (default: this checkout's)")
    s.add_argument("--quiet", action="store_true", help="do not log each request")
    s.set_defaults(func=cmd_serve)
