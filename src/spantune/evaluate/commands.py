"""``spantune eval``: run a system on span data, report, and gate; ``eval trend`` and ``eval gate``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError

DEFAULT_OUT_ROOT = Path("runs") / "eval"


def subsets_of(extra: dict[str, Any]) -> list[str]:
    """Subset names an example is marked with: ``"subsets": [...]`` or ``"subset": "..."``."""
    value = extra.get("subsets", extra.get("subset"))
    return [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]


def select_examples(path: str, subset: str | None, limit: int | None) -> tuple[list[Any], dict[str, Any]]:
    """The examples to evaluate (file order) and the data facts report.json records."""
    from spantune.errors import InputError
    from spantune.evaluate.metrics import REFERENCES_FIELD, accepted_outputs, example_key
    from spantune.io import sha256_file
    from spantune.schema import check_jsonl

    checked = check_jsonl(path)
    if checked.bad:
        raise checked.bad[0][1]
    for lineno, ex, _ in checked.good:
        try:
            accepted_outputs(ex)
        except ValueError as exc:
            raise InputError(path, lineno, REFERENCES_FIELD, str(exc)) from None
    examples = [ex for _, ex, _ in checked.good]
    n_file = len(examples)
    if not examples:
        raise SpantuneError(f"{path}: no examples to evaluate")
    if subset:
        examples = [ex for ex in examples if subset in subsets_of(ex.extra)]
        if not examples:
            raise SpantuneError(f"{path}: no example is marked with subset {subset!r} "
                                f"(field \"subsets\": [\"{subset}\"]); or pass the subset's own file to --data")
    if limit is not None:
        if limit < 1:
            raise SpantuneError("--limit must be at least 1")
        examples = examples[:limit]
    seen: set[str] = set()
    for ex in examples:
        key = example_key(ex)
        if key in seen:
            raise SpantuneError(f"{path}: two examples share the key {key!r} (give them distinct ids)")
        seen.add(key)
    data = {"path": str(path), "sha256": sha256_file(path), "subset": subset, "limit": limit,
            "n_file": n_file, "n_selected": len(examples)}
    return examples, data


def load_run(path: str | Path) -> tuple[dict[str, Any], list[Any]]:
    """A stored eval run (its folder or its report.json): the report and its predictions."""
    from spantune.evaluate.runner import PREDICTIONS, read_predictions

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    report_path = folder / "report.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SpantuneError(f"{report_path}: cannot read the report: {exc}") from None
    return report, read_predictions(folder / PREDICTIONS)


def default_out(system: str, data: str, subset: str | None) -> Path:
    """runs/eval/SYSTEM__DATA[__SUBSET], so that the same command finds its run again for --resume."""
    parts = [system, Path(data).stem] + ([subset] if subset else [])
    return DEFAULT_OUT_ROOT / "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", p).strip("-") for p in parts)


def _finish(out: Path, report: dict[str, Any], gates_path: str | None) -> int:
    """Check gates (if any) into the report, write every output, print the table and gate lines."""
    from spantune.evaluate.gates import check_gates, load_gates
    from spantune.evaluate.report import print_summary, write_report

    failed = []
    if gates_path:
        results = check_gates(load_gates(gates_path), report)
        failed = [r for r in results if not r.passed]
        report["gates"] = {"file": str(gates_path), "passed": not failed, "results": [r.to_dict() for r in results]}
    write_report(out, report)
    print_summary(report)
    print(f"report: {out / 'report.md'} (json, charts and predictions.jsonl beside it)")
    if gates_path:
        for r in failed:
            print(f"gate failed: {r.message}", file=sys.stderr)
        n = len(report["gates"]["results"])
        print(f"gates: {n - len(failed)}/{n} passed ({gates_path})", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from spantune.evaluate.gates import load_gates
    from spantune.evaluate.metrics import example_key
    from spantune.evaluate.report import baseline_section, build_report
    from spantune.evaluate.runner import PREDICTIONS, open_run, run_corrector
    from spantune.evaluate.systems import keep_info, load_system
    from spantune.infer.keep import resolve_keep
    from spantune.io import write_json

    if not args.system or not args.data:
        raise SpantuneError("spantune eval needs --system and --data (or a subcommand: trend, gate)")
    if args.dtype and args.system in ("identity", "harper"):
        raise SpantuneError(f"--dtype does not apply to the {args.system} system")
    if args.bootstrap < 1:
        raise SpantuneError("--bootstrap must be at least 1")
    examples, data = select_examples(args.data, args.subset, args.limit)
    if args.gates:
        load_gates(args.gates)  # fail on a bad gates file before any model is loaded
    baseline = load_run(args.baseline) if args.baseline else None
    out = Path(args.out) if args.out else default_out(args.system, args.data, args.subset)
    keep, keep_from = resolve_keep(args.system, args.keep_margin, args.score_keep)
    print(f"keep margin: {keep.margin:g} nats ({keep_from})")
    keep_record = {**keep_info(keep), "keep_margin": keep.margin, "keep_margin_from": keep_from}
    meta = {"system": args.system, "dtype": args.dtype, "max_new_tokens": args.max_new_tokens,
            "data_sha256": data["sha256"], "subset": args.subset, "limit": args.limit, **keep_record}
    done = open_run(out, meta, args.resume)
    todo = [ex for ex in examples if example_key(ex) not in done]
    system_file = out / "system.json"
    if todo or not system_file.is_file():
        system = load_system(args.system, dtype=args.dtype, device=args.device, max_new_tokens=args.max_new_tokens,
                             keep=keep)
        write_json(system_file, {**system.info, **keep_record})
        new_rows, interrupted = run_corrector(system.corrector, todo, out, already=len(examples) - len(todo))
        done.update((row.key, row) for row in new_rows)
        if interrupted:
            print(f"interrupted: {len(done)} of {len(examples)} predictions kept in {out / PREDICTIONS}; "
                  f"run the same command with --resume to continue", file=sys.stderr)
            return 130
    info = json.loads(system_file.read_text(encoding="utf-8"))
    rows = [done[example_key(ex)] for ex in examples]
    base = None
    if baseline is not None:
        base = baseline_section(rows, baseline[1], baseline[0], str(args.baseline), args.bootstrap, args.seed)
    report = build_report(rows, system=info, data=data, n_selected=len(examples), baseline=base,
                          n_boot=args.bootstrap, seed=args.seed)
    return _finish(out, report, args.gates)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Decode ``--data`` once with keep scoring (``spantune eval`` itself, at margin 0), sweep the margins, and
    write the calibrated margin (keep_margin.json), the sweep table and its plot into the model's folder."""
    from spantune.cli import build_parser
    from spantune.evaluate.margin import (ALL, calibration, check_scored, margin_grid, plot_sweep, smallest_margin,
                                          sweep, sweep_markdown)
    from spantune.evaluate.report import fmt
    from spantune.evaluate.runner import PREDICTIONS, read_predictions
    from spantune.evaluate.systems import ONNX_PREFIX
    from spantune.infer.keep import KEEP_MARGIN_FILE, NO_MODEL_SYSTEMS, margin_folder
    from spantune.io import atomic_dir, atomic_write, sha256_file, write_json

    if not 0 < args.target <= 1:
        raise SpantuneError(f"--target {args.target}: must be a share in (0, 1], e.g. 0.95")
    margins = margin_grid(args.max_margin, args.step)
    if args.model in NO_MODEL_SYSTEMS:
        raise SpantuneError(f"--model {args.model}: calibrate needs a model with log-probabilities")
    if args.model.startswith(ONNX_PREFIX) and not args.out:
        raise SpantuneError(f"--model {args.model}: calibrate the model it was exported from and export again (the "
                            "export carries the margin to onnxruntime and JS), or pass --out DIR")
    folder = Path(args.out) if args.out else margin_folder(args.model)
    if folder is None:
        raise SpantuneError(f"--model {args.model}: not a model or run folder, so there is no folder to keep its "
                            "calibration in; pass --out DIR (and later --keep-margin M explicitly)")
    with atomic_dir(folder / "keep_margin_eval") as run:
        argv = ["eval", "--system", args.model, "--data", args.data, "--out", str(run), "--score-keep",
                "--keep-margin", "0", "--bootstrap", "100", "--seed", str(args.seed), "--device", args.device]
        argv += (["--dtype", args.dtype] if args.dtype else []) + (["--limit", str(args.limit)] if args.limit else [])
        eval_args = build_parser().parse_args(argv)
        if eval_args.func(eval_args) != 0:
            raise SpantuneError("the scored decoding pass (spantune eval) failed")
        rows = read_predictions(run / PREDICTIONS)
        check_scored(rows, str(run / PREDICTIONS))
    result = sweep(rows, margins)
    record = {**calibration(result[ALL], args.target), "model": args.model,
              "data": {"path": str(args.data), "sha256": sha256_file(args.data)}, "limit": args.limit,
              "predictions": str(folder / "keep_margin_eval" / PREDICTIONS)}
    best = {group: smallest_margin(points, args.target) for group, points in result.items()}
    with atomic_write(folder / "keep_margin.md") as fh:
        fh.write(sweep_markdown(result, best, args.target))
    plot_sweep(result, folder / "keep_margin.png")
    write_json(folder / KEEP_MARGIN_FILE, record)
    share = f"{100 * record['noop_kept']:.1f} % of the spans that need no fix unchanged"
    if record["reached"]:
        print(f"calibrated keep margin: {record['margin']:g} nats keeps {share} "
              f"(target {100 * args.target:g} %; {100 * record['at_zero']['noop_kept']:.1f} % at 0)")
    else:
        print(f"no margin up to {record['margin']:g} nats keeps {100 * args.target:g} % of the spans that need no "
              f"fix unchanged; wrote the largest, {record['margin']:g} nats, which keeps {share}", file=sys.stderr)
    for key in ("edit_precision", "edit_recall"):
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
    report, _ = load_run(args.run)
    folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    return _finish(folder, report, args.gates)


def register(subparsers: Any) -> None:
    """Add ``spantune eval`` (and its ``trend`` and ``gate`` subcommands) and ``spantune calibrate`` to the CLI."""
    from spantune.evaluate.margin import DEFAULT_MAX_MARGIN, DEFAULT_STEP

    p = subparsers.add_parser(
        "eval", help="evaluate a system on span data: metrics with CIs, breakdowns, report, gates",
        description="Evaluate a system with the production prompt and post-processing. Systems: a transformers "
                    "model (folder, training run, hub id or 'embedded'), onnx:DIR (exported folder), identity, harper.")
    p.add_argument("--system", help="model folder/run/hub id/'embedded', onnx:DIR, identity or harper")
    p.add_argument("--data", help="span JSONL file (e.g. fixtures/span_eval.jsonl)")
    p.add_argument("--subset", help="only examples marked with this subset (e.g. pr)")
    p.add_argument("--gates", help="gates YAML (e.g. configs/gates.yaml); a failed gate exits 1")
    p.add_argument("--baseline", help="report.json (or run folder) of an earlier eval to compare with")
    p.add_argument("--out", help=f"run folder (default {DEFAULT_OUT_ROOT}/SYSTEM__DATA[__SUBSET])")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--limit", type=int, help="evaluate only the first N selected examples")
    p.add_argument("--dtype", help="model dtype: auto/fp32/bf16/fp16 for transformers; q4 (default)/fp32/fp16/"
                                   "q4f16/int8 for onnx:DIR")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (transformers systems)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--keep-margin", type=float, default=None, metavar="NATS",
                   help="keep the span unless the model prefers its edit by this many nats (0 = off; default: "
                        "the model's calibrated margin from `spantune calibrate`, else 0; docs/keep-margin.md)")
    p.add_argument("--score-keep", action="store_true",
                   help="record keep/answer log-probabilities of every edit (for benchmarks/keep_margin.py)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(func=cmd_eval)
    sub = p.add_subparsers(dest="eval_command", metavar="{trend,gate}")
    trend = sub.add_parser("trend", help="plot metrics across the report.json files under DIR")
    trend.add_argument("dir", help="folder holding eval run folders")
    trend.add_argument("--out", help="chart path (default DIR/trend.png)")
    trend.set_defaults(func=cmd_trend)
    gate = sub.add_parser("gate", help="check a gates YAML against a stored eval run")
    gate.add_argument("run", help="eval run folder or its report.json")
    gate.add_argument("--gates", required=True, help="gates YAML")
    gate.set_defaults(func=cmd_gate)

    cal = subparsers.add_parser(
        "calibrate", help="calibrate the model's keep margin on span data (its default from then on)",
        description="Decode span data once with keep scoring, sweep keep margins, and write the smallest margin that "
                    "leaves --target of the spans needing no fix unchanged into the model's folder "
                    "(keep_margin.json; docs/keep-margin.md).")
    cal.add_argument("--model", required=True, help="training run folder, model folder (or onnx:DIR/hub id with --out)")
    cal.add_argument("--data", required=True, help="span JSONL with spans that need no fix (span_out == span_in)")
    cal.add_argument("--target", type=float, default=0.95,
                     help="share of no-fix spans to leave unchanged (default %(default)s)")
    cal.add_argument("--limit", type=int, help="only the first N examples")
    cal.add_argument("--seed", type=int, default=0, help="bootstrap seed of the decoding pass's report")
    cal.add_argument("--max-margin", type=float, default=DEFAULT_MAX_MARGIN,
                     help="largest margin swept, in nats (default %(default)s)")
    cal.add_argument("--step", type=float, default=DEFAULT_STEP, help="sweep step in nats (default %(default)s)")
    cal.add_argument("--out", help="folder for keep_margin.json (default: the model's folder)")
    cal.add_argument("--dtype", help="as `spantune eval --dtype`")
    cal.add_argument("--device", default="auto", help="auto, cpu or cuda")
    cal.set_defaults(func=cmd_calibrate)
