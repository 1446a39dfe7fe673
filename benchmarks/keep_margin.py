"""Keep-margin sweep: exact match, edit precision, edit recall and no-op false edits against the margin, per source.

    python benchmarks/keep_margin.py --system SYSTEM --data FILE [--dtype q4] [--limit N] --out DIR
    python benchmarks/keep_margin.py --run EVAL_RUN --out DIR        # a run made with --score-keep

One decoding pass (``spantune eval --score-keep`` into DIR/eval, report included) records each edit's
keep and answer log-probabilities; every margin of the grid (default 0 to 2 nats per token by 0.025) is then applied
to those numbers (docs/keep-margin.md), so the sweep costs no further decoding. Writes DIR/keep_margin.md
(one table per source), DIR/keep_margin.json and DIR/keep_margin.png, and prints the smallest margin that
leaves at least 95 % of the spans needing no fix unchanged (overall and per source).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spantune.cli import main as spantune_main
from spantune.errors import SpantuneError
from spantune.evaluate.margin import (ALL, DEFAULT_MAX_MARGIN, DEFAULT_STEP, check_scored, margin_grid, plot_sweep,
                                      smallest_margin, sweep, sweep_markdown)
from spantune.evaluate.runner import PREDICTIONS, read_predictions
from spantune.infer.keep import KEEP_MARGIN_UNIT
from spantune.io import atomic_write, write_json


def decode(args: argparse.Namespace, out: Path) -> Path:
    """The one scored decoding pass, through ``spantune eval`` itself; returns its run folder."""
    run = out / "eval"
    argv = ["eval", "--system", args.system, "--data", args.data, "--out", str(run), "--score-keep",
            "--keep-margin", "0", "--bootstrap", "100"]
    argv += ["--dtype", args.dtype] if args.dtype else []
    argv += ["--limit", str(args.limit)] if args.limit else []
    if spantune_main(argv) != 0:
        raise SystemExit("spantune eval failed")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--system", help="what `spantune eval --system` takes (a model, onnx:DIR)")
    source.add_argument("--run", help="an eval run folder made with --score-keep (or --keep-margin)")
    parser.add_argument("--data", help="span JSONL (with --system)")
    parser.add_argument("--dtype", help="as `spantune eval --dtype`")
    parser.add_argument("--limit", type=int, help="only the first N examples")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--max-margin", type=float, default=DEFAULT_MAX_MARGIN)
    parser.add_argument("--step", type=float, default=DEFAULT_STEP)
    parser.add_argument("--keep-share", type=float, default=0.95,
                        help="share of no-fix spans that must stay unchanged (default 0.95)")
    args = parser.parse_args(argv)
    if args.system and not args.data:
        parser.error("--system needs --data")
    if args.step <= 0 or args.max_margin < 0:
        parser.error("--step must be > 0 and --max-margin >= 0")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        run = Path(args.run) if args.run else decode(args, out)
        rows = read_predictions(run / PREDICTIONS)
        check_scored(rows, str(run / PREDICTIONS))
    except SpantuneError as exc:
        print(f"keep_margin: error: {exc}", file=sys.stderr)
        return 1
    margins = margin_grid(args.max_margin, args.step)
    result = sweep(rows, margins)
    best = {group: smallest_margin(points, args.keep_share) for group, points in result.items()}
    write_json(out / "keep_margin.json", {"run": str(run), "keep_share": args.keep_share, "smallest_margin": best,
                                          "sweep": result})
    with atomic_write(out / "keep_margin.md") as fh:
        fh.write(sweep_markdown(result, best, args.keep_share))
    plot_sweep(result, out / "keep_margin.png")
    print(sweep_markdown({ALL: result[ALL]}, best, args.keep_share))
    for group, found in best.items():
        print(f"smallest margin keeping >= {100 * args.keep_share:.0f}% of no-fix spans unchanged, {group}: "
              + (f"none up to {margins[-1]:g}" if found is None else f"{found:g}") + f" {KEEP_MARGIN_UNIT}")
    print(f"wrote {out / 'keep_margin.md'}, {out / 'keep_margin.json'}, {out / 'keep_margin.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
