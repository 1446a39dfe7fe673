"""The ``spantune`` command: parses arguments, calls library functions, prints results."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from spantune import __version__, allocator, interrupts
from spantune.errors import SpantuneError

#: Every subcommand, in the order ``spantune --help`` lists them, with the function that adds its parser (and,
#: through ``set_defaults(func=...)``, the command it runs). "data check" goes under "data"; a group's function
#: returns the subparsers its children go into. Named as strings, imported only when the parser is built.
COMMANDS: dict[str, str] = {
    "fix": "spantune.cli:add_fix",
    "data": "spantune.data.commands:add_data",
    "data check": "spantune.data.commands:add_check",
    "data build": "spantune.data.commands:add_build",
    "data split": "spantune.data.commands:add_split",
    "data stats": "spantune.data.commands:add_stats",
    "train": "spantune.train.commands:add_train",
    "eval": "spantune.evaluate.commands:add_eval",
    "eval trend": "spantune.evaluate.commands:add_trend",
    "eval gate": "spantune.evaluate.commands:add_gate",
    "calibrate": "spantune.evaluate.commands:add_calibrate",
    "demo": "spantune.demo.commands:add_demo",
    "serve-demo": "spantune.demo.commands:add_serve_demo",
    "export": "spantune.export.commands:add_export",
}
#: What a ``COMMANDS`` function does: add one parser; a group returns the subparsers for its children.
AddParser = Callable[[argparse._SubParsersAction], argparse._SubParsersAction | None]


def _cmd_fix(args: argparse.Namespace) -> int:
    from spantune.evaluate.systems import load_system
    from spantune.infer.keep import KEEP_MARGIN_UNIT, resolve_keep
    from spantune.schema import SpanExample, read_jsonl

    if args.jsonl is None and args.span is None:
        raise SpantuneError("give --span (with --before/--after) or --jsonl IN --out OUT")
    if args.jsonl is not None and args.out is None:
        raise SpantuneError("--jsonl needs --out")
    examples = None if args.jsonl is None else read_jsonl(args.jsonl, clip=args.clip)  # before the model loads
    keep, keep_from = resolve_keep(args.model, args.keep_margin)
    corrector = load_system(args.model, dtype=args.dtype, device=args.device, max_new_tokens=args.max_new_tokens,
                            keep=keep).corrector
    # after loading, so that errors stay one line
    print(f"keep margin: {keep.margin:g} {KEEP_MARGIN_UNIT} ({keep_from})", file=sys.stderr)
    if examples is not None:
        from spantune.infer.files import correct_file

        n = correct_file(corrector, examples, args.out, label=f"fix {Path(args.jsonl).name}")
        print(f"wrote {n} corrected spans to {args.out}")
        return 0
    from spantune.prompt import MAX_CONTEXT, clip_after, clip_before

    example = SpanExample(ctx_before=clip_before(args.before, MAX_CONTEXT), span_in=args.span,
                          ctx_after=clip_after(args.after, MAX_CONTEXT), span_out=args.span)
    print(corrector.correct(example).text)
    return 0


def add_fix(subparsers: argparse._SubParsersAction) -> None:
    """``spantune fix``: lives here because its library code (``infer/``) has no ``commands.py``."""
    fix = subparsers.add_parser("fix", help="correct one span (or a JSONL file of spans) with a model")
    fix.add_argument("--model", default="embedded",
                     help="hub id, local folder, training run folder or 'embedded' (PyTorch); onnx:EXPORT_DIR "
                          "(onnxruntime) or node:EXPORT_DIR (Transformers.js): any `spantune eval --system`")
    fix.add_argument("--before", default="", help="text before the span (clipped to 60 characters)")
    fix.add_argument("--span", help="the span to correct")
    fix.add_argument("--after", default="", help="text after the span (clipped to 60 characters)")
    fix.add_argument("--jsonl", help="span JSONL file to correct")
    fix.add_argument("--out", help="output JSONL for --jsonl")
    fix.add_argument("--clip", action="store_true", help="clip over-long contexts instead of rejecting them")
    fix.add_argument("--device", default="auto", help="auto, cpu or cuda")
    fix.add_argument("--dtype", help="as `spantune eval --dtype` (the exported file for onnx: and node:, q4 by default)")
    fix.add_argument("--max-new-tokens", type=int, default=32)
    fix.add_argument("--keep-margin", type=float, default=None, metavar="NATS_PER_TOKEN",
                     help="keep the span unless the model prefers its edit by this many nats per reply token (0 = "
                          "off; default: "
                          "the model's calibrated margin from `spantune calibrate`, else 0)")
    fix.set_defaults(func=_cmd_fix)


def _resolve(target: str) -> AddParser:
    """``"module:function"`` → the function; the import happens here so that ``import spantune.cli`` stays light."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``spantune`` parser, built from :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="spantune", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version",
                        version=f"spantune {__version__} (memory allocator: {allocator.in_use()})")
    groups = {"": parser.add_subparsers(dest="command", metavar="COMMAND")}
    for name, target in COMMANDS.items():
        children = _resolve(target)(groups[name.rpartition(" ")[0]])
        if children is not None:
            groups[name] = children
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command; started as a process (``argv`` None), it first runs itself again on tcmalloc or jemalloc where
    the machine has one (:mod:`spantune.allocator`)."""
    if argv is None:
        try:
            allocator.relaunch_with_allocator(sys.argv[1:])
        except SpantuneError as exc:
            print(f"spantune: error: {exc}", file=sys.stderr)
            return 1
    interrupts.install()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SpantuneError as exc:
        print(f"spantune: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        interrupts.ignore_further()
        print("spantune: interrupted", file=sys.stderr)
        return 130
