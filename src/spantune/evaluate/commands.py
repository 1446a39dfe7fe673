"""``spantune eval``, ``eval trend``, ``eval gate`` and ``spantune calibrate``: parse the arguments, call
the library (:func:`~spantune.evaluate.evaluation.run_eval` and friends), print the outcome."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from spantune.errors import SpantuneError
from spantune.evaluate.evaluation import EvalInterrupted, Report, regate, run_eval

DEFAULT_OUT_ROOT = Path("runs") / "eval"


def default_out(system: str, data: str, subset: str | None) -> Path:
    """runs/eval/SYSTEM__DATA[__SUBSET], so that the same command finds its run again for --resume."""
    parts = [system, Path(data).stem] + ([subset] if subset else [])
    return DEFAULT_OUT_ROOT / "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", p).strip("-") for p in parts)


def _print_outcome(report: Report) -> int:
    """Print the summary table, where the report is, and each failed gate; exit 1 when a gate failed."""
    from spantune.evaluate.report import print_summary

    print_summary(report.content)
    print(f"report: {report.out / 'report.md'} (json, charts and predictions.jsonl beside it)")
    gates = report.content["gates"]
    if not gates:
        return 0
    failed = report.failed_gates
    for result in failed:
        print(f"gate failed: {result['message']}", file=sys.stderr)
    n = len(gates["results"])
    print(f"gates: {n - len(failed)}/{n} passed ({gates['file']})", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def cmd_eval(args: argparse.Namespace) -> int:
    if not args.system or not args.data:
        raise SpantuneError("spantune eval needs --system and --data (or a subcommand: trend, gate)")
    out = Path(args.out) if args.out else default_out(args.system, args.data, args.subset)
    try:
        report = run_eval(args.system, args.data, out=out, subset=args.subset, limit=args.limit, dtype=args.dtype,
                          device=args.device, max_new_tokens=args.max_new_tokens, keep_margin=args.keep_margin,
                          score_keep=args.score_keep, js_dir=Path(args.js_dir) if args.js_dir else None,
                          baseline=args.baseline, gates=args.gates, n_boot=args.bootstrap, seed=args.seed,
                          resume=args.resume)
    except EvalInterrupted as stop:
        print(f"interrupted: {stop}; run the same command with --resume to continue", file=sys.stderr)
        return 130
    return _print_outcome(report)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``spantune calibrate``: :func:`~spantune.evaluate.margin.calibrate`, then what it chose."""
    from spantune.evaluate.margin import calibrate, margin_grid
    from spantune.evaluate.report import fmt
    from spantune.infer.keep import KEEP_MARGIN_FILE

    folder, record = calibrate(args.model, args.data, margin_grid(args.max_margin, args.step), target=args.target,
                               confidence=args.confidence, out=Path(args.out) if args.out else None, limit=args.limit, dtype=args.dtype,
                               device=args.device, seed=args.seed)
    share = f"{100 * record['noop_kept']:.1f} % of the {record['n_noop']} spans that need no fix unchanged"
    if args.confidence > 0:
        share += f" (lower bound at {100 * args.confidence:g} % confidence: {100 * record['noop_kept_bound']:.1f} %)"
    if record["reached"]:
        print(f"calibrated keep margin: {record['margin']:g} {record['unit']} keeps {share} "
              f"(target {100 * args.target:g} %; {100 * record['at_zero']['noop_kept']:.1f} % at 0)")
    else:
        print(f"no margin up to {record['margin']:g} {record['unit']} keeps {100 * args.target:g} % of the spans that "
              f"need no fix unchanged; wrote the largest, {record['margin']:g} {record['unit']}, which keeps {share}",
              file=sys.stderr)
    for key in ("edit_precision", "edit_recall") if record["at_zero"]["edit_recall"] is not None else ():
        print(f"{key.replace('_', ' ')}: {fmt(key, record['at_zero'][key])} at 0 -> {fmt(key, record[key])}")
    print(f"wrote {folder / KEEP_MARGIN_FILE} (sweep: keep_margin.md, keep_margin.png); `spantune fix`, "
          "`spantune eval` and `spantune export` now use this margin by default")
    return 0


def cmd_trend(args: argparse.Namespace) -> int:
    from spantune.evaluate.trend import load_reports, plot_trend, print_trend

    reports = load_reports(args.dir)
    out = Path(args.out) if args.out else Path(args.dir) / "trend.png"
    plot_trend(reports, out)
    print_trend(reports)
    print(f"trend chart: {out}")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    """Re-check gates on a stored run (report.json), rewriting its report with the gate results."""
    return _print_outcome(regate(args.run, args.gates))


def add_eval(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """``spantune eval``; returns the subparsers that ``eval trend`` and ``eval gate`` go into."""
    p = subparsers.add_parser(
        "eval", help="evaluate a system on span data: metrics with CIs, breakdowns, report, gates",
        description="Evaluate a system with the production prompt and post-processing. Systems: a transformers "
                    "model (folder, training run, hub id or 'embedded'), onnx:DIR (exported folder, onnxruntime), "
                    "node:DIR (exported folder, Transformers.js in Node), identity, harper.")
    p.add_argument("--system", help="model folder/run/hub id/'embedded', onnx:DIR, node:DIR, identity or harper")
    p.add_argument("--data", help="span JSONL file (e.g. fixtures/span_eval.jsonl)")
    p.add_argument("--subset", help="only examples marked with this subset (e.g. pr)")
    p.add_argument("--gates", help="gates YAML (e.g. configs/gates.yaml); a failed gate exits 1")
    p.add_argument("--baseline", help="report.json (or run folder) of an earlier eval to compare with")
    p.add_argument("--out", help=f"run folder (default {DEFAULT_OUT_ROOT}/SYSTEM__DATA[__SUBSET])")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--limit", type=int, help="evaluate only the first N selected examples")
    p.add_argument("--dtype", help="model dtype: auto/fp32/bf16/fp16 for transformers; q4 (default)/fp32/fp16/"
                                   "q4f16/q8/int8 for onnx:DIR and node:DIR")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (transformers systems)")
    p.add_argument("--js-dir", help="the spantune js/ folder a node:DIR system runs (default: this checkout's)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--keep-margin", type=float, default=None, metavar="NATS_PER_TOKEN",
                   help="keep the span unless the model prefers its edit by this many nats per reply token (0 = off; "
                        "default: "
                        "the model's calibrated margin from `spantune calibrate`, else 0; docs/keep-margin.md)")
    p.add_argument("--score-keep", action="store_true",
                   help="record the keep scores of every edit (for benchmarks/keep_margin.py)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(func=cmd_eval)
    return p.add_subparsers(dest="eval_command", metavar="{trend,gate}")


def add_trend(eval_sub: argparse._SubParsersAction) -> None:
    """``spantune eval trend DIR [--out PNG]``."""
    trend = eval_sub.add_parser("trend", help="plot metrics across the report.json files under DIR")
    trend.add_argument("dir", help="folder holding eval run folders")
    trend.add_argument("--out", help="chart path (default DIR/trend.png)")
    trend.set_defaults(func=cmd_trend)


def add_gate(eval_sub: argparse._SubParsersAction) -> None:
    """``spantune eval gate RUN --gates FILE``."""
    gate = eval_sub.add_parser("gate", help="check a gates YAML against a stored eval run")
    gate.add_argument("run", help="eval run folder or its report.json")
    gate.add_argument("--gates", required=True, help="gates YAML")
    gate.set_defaults(func=cmd_gate)


def add_calibrate(subparsers: argparse._SubParsersAction) -> None:
    """``spantune calibrate --model M --data FILE [--target SHARE] ...``."""
    from spantune.evaluate.margin import DEFAULT_MAX_MARGIN, DEFAULT_STEP

    cal = subparsers.add_parser(
        "calibrate", help="calibrate the model's keep margin on span data (its default from then on)",
        description="Decode span data once with keep scoring, sweep keep margins, and write the smallest margin that "
                    "leaves --target of the spans needing no fix unchanged into the model's folder "
                    "(keep_margin.json; docs/keep-margin.md).")
    cal.add_argument("--model", required=True,
                     help="training run folder, model folder (or onnx:DIR/node:DIR/hub id with --out)")
    cal.add_argument("--data", required=True, help="span JSONL with spans that need no fix (span_out == span_in)")
    cal.add_argument("--target", type=float, default=0.95,
                     help="share of no-fix spans to leave unchanged (default %(default)s)")
    cal.add_argument("--confidence", type=float, default=0.95,
                     help="reach --target at this one-sided confidence (Wilson lower bound), so the margin holds on "
                          "spans the sample never saw; 0 = the observed share (default %(default)s)")
    cal.add_argument("--limit", type=int, help="only the first N examples")
    cal.add_argument("--seed", type=int, default=0, help="bootstrap seed of the decoding pass's report")
    cal.add_argument("--max-margin", type=float, default=DEFAULT_MAX_MARGIN,
                     help="largest margin swept, in nats per token (default %(default)s)")
    cal.add_argument("--step", type=float, default=DEFAULT_STEP,
                     help="sweep step in nats per token (default %(default)s)")
    cal.add_argument("--out", help="folder for keep_margin.json (default: the model's folder)")
    cal.add_argument("--dtype", help="as `spantune eval --dtype`")
    cal.add_argument("--device", default="auto", help="auto, cpu or cuda")
    cal.set_defaults(func=cmd_calibrate)
