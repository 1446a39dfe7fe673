"""The ``spantune`` command: parses arguments, calls library functions, prints results."""

from __future__ import annotations

import _thread
import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from spantune import __version__
from spantune.errors import SpantuneError

#: Stage modules that add their own subcommands through ``register(subparsers)``.
COMMAND_MODULES: list[str] = ["spantune.train.commands", "spantune.evaluate.commands", "spantune.demo.commands",
                             "spantune.export.commands"]
#: Modules that add subcommands under ``spantune data``.
DATA_COMMAND_MODULES: list[str] = ["spantune.data.commands"]


def _cmd_fix(args: argparse.Namespace) -> int:
    from spantune.infer.keep import resolve_keep
    from spantune.infer.torch_backend import TorchCorrector
    from spantune.schema import SpanExample, read_jsonl

    if args.jsonl is None and args.span is None:
        raise SpantuneError("give --span (with --before/--after) or --jsonl IN --out OUT")
    if args.jsonl is not None and args.out is None:
        raise SpantuneError("--jsonl needs --out")
    examples = None if args.jsonl is None else read_jsonl(args.jsonl, clip=args.clip)  # before the model loads
    keep, keep_from = resolve_keep(args.model, args.keep_margin)
    corrector = TorchCorrector.load(args.model, device=args.device, max_new_tokens=args.max_new_tokens, keep=keep)
    print(f"keep margin: {keep.margin:g} nats ({keep_from})", file=sys.stderr)  # after loading: errors stay one line
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


def _cmd_check(args: argparse.Namespace) -> int:
    from spantune.schema import check_jsonl, dumps, write_lines

    if args.skip_bad and args.out is None:
        raise SpantuneError("--skip-bad needs --out OUT")
    good_lines: list[str] = []
    reject_lines: list[str] = []
    n_good = n_bad = 0
    for path in args.files:
        result = check_jsonl(path, clip=args.clip, max_context=args.max_context)
        for _, err, raw in result.bad:
            print(err, file=sys.stderr)
            reject_lines.append(dumps({"file": str(path), "line": err.line, "field": err.field,
                                       "error": err.message, "raw": raw[:2000]}))
        n_good += len(result.good)
        n_bad += len(result.bad)
        good_lines += [dumps(ex.to_dict()) if args.clip else raw for _, ex, raw in result.good]
    print(f"{n_good} good, {n_bad} bad line(s) in {len(args.files)} file(s)")
    if args.skip_bad:
        write_lines(args.out, good_lines)
        rejects = args.rejects or f"{args.out}.rejects.jsonl"
        write_lines(rejects, reject_lines)
        print(f"wrote {n_good} good line(s) to {args.out} and {n_bad} reject(s) to {rejects}")
        return 0
    return 1 if n_bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spantune", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"spantune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    fix = sub.add_parser("fix", help="correct one span (or a JSONL file of spans) with a model")
    fix.add_argument("--model", default="embedded", help="hub id, local folder, training run folder, or 'embedded'")
    fix.add_argument("--before", default="", help="text before the span (clipped to 60 characters)")
    fix.add_argument("--span", help="the span to correct")
    fix.add_argument("--after", default="", help="text after the span (clipped to 60 characters)")
    fix.add_argument("--jsonl", help="span JSONL file to correct")
    fix.add_argument("--out", help="output JSONL for --jsonl")
    fix.add_argument("--clip", action="store_true", help="clip over-long contexts instead of rejecting them")
    fix.add_argument("--device", default="auto", help="auto, cpu or cuda")
    fix.add_argument("--max-new-tokens", type=int, default=32)
    fix.add_argument("--keep-margin", type=float, default=None, metavar="NATS",
                     help="keep the span unless the model prefers its edit by this many nats (0 = off; default: "
                          "the model's calibrated margin from `spantune calibrate`, else 0)")
    fix.set_defaults(func=_cmd_fix)

    data = sub.add_parser("data", help="check, build, split and describe span datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    check = data_sub.add_parser("check", help="validate span/chat JSONL files, reporting every bad line")
    check.add_argument("files", nargs="+", help="JSONL files")
    check.add_argument("--clip", action="store_true", help="clip over-long contexts at a word boundary")
    check.add_argument("--max-context", type=int, default=60)
    check.add_argument("--skip-bad", action="store_true", help="write good lines to --out, bad ones to a reject file")
    check.add_argument("--out", help="where --skip-bad writes the good lines")
    check.add_argument("--rejects", help="reject file (default OUT.rejects.jsonl)")
    check.set_defaults(func=_cmd_check)

    for name in DATA_COMMAND_MODULES:
        importlib.import_module(name).register(data_sub)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a job scheduler, a CI timeout) takes the Ctrl-C path: temp folders and files are
    removed, training saves its checkpoint, and the next run resumes instead of finding half-written work."""
    raise KeyboardInterrupt


def _resend_swallowed_interrupt(unraisable: sys.UnraisableHookArgs) -> None:
    """Python prints and drops an exception raised inside a finaliser (``__del__``), so a signal that lands there
    would be lost and the job would run on; send it again so it reaches ``main`` at the next safe point.

    It is sent a moment later from a timer thread because a re-raise from this one (``os.kill``,
    ``interrupt_main``) runs the handler at once, inside this hook, where Python drops it the same way."""
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        resend = threading.Timer(0.05, _thread.interrupt_main, args=(signal.SIGTERM,))
        resend.daemon = True
        resend.start()
        return
    sys.__unraisablehook__(unraisable)


def install_interrupt_handlers() -> None:
    """Make SIGTERM behave like Ctrl-C, and never lose either to a finaliser (see the two functions above)."""
    signal.signal(signal.SIGTERM, _interrupt)
    sys.unraisablehook = _resend_swallowed_interrupt


def main(argv: Sequence[str] | None = None) -> int:
    install_interrupt_handlers()
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
        print("spantune: interrupted", file=sys.stderr)
        return 130
