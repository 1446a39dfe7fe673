"""``spantune data check | build | split | stats``: each subcommand's arguments, and the command that runs it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from spantune.config import add_override_options, overrides_from_args
from spantune.data.config import DataConfig
from spantune.errors import SpantuneError


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


def _cmd_build(args: argparse.Namespace) -> int:
    from rich.console import Console

    from spantune.data.build import run_build
    from spantune.data.stats import compute_stats, render_table

    start = time.perf_counter()
    result, written = run_build(args.config, overrides_from_args(args), args.out)
    seconds = time.perf_counter() - start
    console = Console()
    console.print(render_table(compute_stats(result.train), "train.jsonl"))
    report = result.report
    console.print(f"aligner: {report['aligner']}; real sentences {report['real_sentences']} "
                  f"({report['real_eval_sentences']} held out for eval); clean pool {report['clean_pool_sentences']}")
    console.print("removed from train: " + (", ".join(f"{k} {v}" for k, v in report["removed_from_train"].items()) or "none"))
    console.print("removed from eval: " + (", ".join(f"{k} {v}" for k, v in report["removed_from_eval"].items()) or "none"))
    n = len(result.train) + len(result.eval) + len(result.eval_synth)
    console.print(f"train {len(result.train)}, eval {len(result.eval)}, eval_synth {len(result.eval_synth)} "
                  f"examples in {seconds:.1f} s ({n / seconds:.0f} examples/s)")
    for path in written:
        console.print(f"wrote {path}")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from spantune.data.build import write_manifest
    from spantune.data.split import stratified_split
    from spantune.data.stats import compute_stats
    from spantune.schema import read_jsonl, write_jsonl

    examples = read_jsonl(args.file)
    train, held = stratified_split(examples, args.eval_fraction, args.seed)
    out = Path(args.out)
    source = {"name": Path(args.file).name, "kind": "split", "examples": len(examples)}
    report = {"split_of": str(args.file), "eval_fraction": args.eval_fraction, "seed": args.seed,
              "strata": "primary tag x span-length bucket x source, whole sentence groups"}
    for name, part in (("train.jsonl", train), ("eval.jsonl", held)):
        write_jsonl(out / name, part)
        write_manifest(out / name, compute_stats(part), None, [source], report)
        print(f"wrote {len(part)} examples to {out / name}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from rich.console import Console

    from spantune.data.stats import compute_stats, render_table, write_chart
    from spantune.schema import read_jsonl

    examples = read_jsonl(args.file, clip=True)
    stats = compute_stats(examples)
    Console().print(render_table(stats, Path(args.file).name))
    chart = Path(args.png) if args.png else Path(args.file).with_suffix(".stats.png")
    write_chart(stats, examples, chart, Path(args.file).name)
    print(f"wrote {chart}")
    return 0


def add_data(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``spantune data`` group; returns its subparsers, which the other functions here add to."""
    data = subparsers.add_parser("data", help="check, build, split and describe span datasets")
    return data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)


def add_check(data_sub: argparse._SubParsersAction) -> None:
    """``spantune data check FILE ... [--clip] [--skip-bad --out OUT]``."""
    check = data_sub.add_parser("check", help="validate span/chat JSONL files, reporting every bad line")
    check.add_argument("files", nargs="+", help="JSONL files")
    check.add_argument("--clip", action="store_true", help="clip over-long contexts at a word boundary")
    check.add_argument("--max-context", type=int, default=60)
    check.add_argument("--skip-bad", action="store_true", help="write good lines to --out, bad ones to a reject file")
    check.add_argument("--out", help="where --skip-bad writes the good lines")
    check.add_argument("--rejects", help="reject file (default OUT.rejects.jsonl)")
    check.set_defaults(func=_cmd_check)


def add_build(data_sub: argparse._SubParsersAction) -> None:
    """``spantune data build [--config FILE] [--out DIR] [--section.key VALUE ...]``."""
    build = data_sub.add_parser("build", help="build train/eval span JSONL from real corrections and synthetic errors",
                                allow_abbrev=False,
                                description="Any scalar config key can be overridden as --section.key VALUE.")
    build.add_argument("--config", default="configs/data/default.yaml", help="data config YAML")
    build.add_argument("--out", default="data", help="output folder")
    add_override_options(build, DataConfig)
    build.set_defaults(func=_cmd_build)


def add_split(data_sub: argparse._SubParsersAction) -> None:
    """``spantune data split FILE --out DIR [--eval-fraction F] [--seed N]``."""
    split = data_sub.add_parser("split", help="stratified train/eval split (tag x span length x source, by sentence)")
    split.add_argument("file", help="span JSONL")
    split.add_argument("--out", required=True, help="folder for train.jsonl and eval.jsonl")
    split.add_argument("--eval-fraction", type=float, default=0.1)
    split.add_argument("--seed", type=int, default=13)
    split.set_defaults(func=_cmd_split)


def add_stats(data_sub: argparse._SubParsersAction) -> None:
    """``spantune data stats FILE [--png PATH]``."""
    stats = data_sub.add_parser("stats", help="table of counts per tag, language, source, span length; PNG chart")
    stats.add_argument("file", help="span JSONL")
    stats.add_argument("--png", help="chart path (default FILE.stats.png)")
    stats.set_defaults(func=_cmd_stats)
