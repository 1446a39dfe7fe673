"""``spantune data build | split | stats``: registered under the lead's ``spantune data`` group."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from spantune.config import add_override_options, overrides_from_args
from spantune.data.config import DataConfig


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


def register(data_sub: argparse._SubParsersAction) -> None:
    """Add build, split and stats to the ``spantune data`` subparsers."""
    build = data_sub.add_parser("build", help="build train/eval span JSONL from real corrections and synthetic errors",
                                allow_abbrev=False,
                                description="Any scalar config key can be overridden as --section.key VALUE.")
    build.add_argument("--config", default="configs/data/default.yaml", help="data config YAML")
    build.add_argument("--out", default="data", help="output folder")
    add_override_options(build, DataConfig)
    build.set_defaults(func=_cmd_build)

    split = data_sub.add_parser("split", help="stratified train/eval split (tag x span length x source, by sentence)")
    split.add_argument("file", help="span JSONL")
    split.add_argument("--out", required=True, help="folder for train.jsonl and eval.jsonl")
    split.add_argument("--eval-fraction", type=float, default=0.1)
    split.add_argument("--seed", type=int, default=13)
    split.set_defaults(func=_cmd_split)

    stats = data_sub.add_parser("stats", help="table of counts per tag, language, source, span length; PNG chart")
    stats.add_argument("file", help="span JSONL")
    stats.add_argument("--png", help="chart path (default FILE.stats.png)")
    stats.set_defaults(func=_cmd_stats)
