"""``spantune train``: the subcommand's arguments, and the command that prepares, trains and reports."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from spantune.config import add_override_options, overrides_from_args
from spantune.train.config import TrainConfig
from spantune.train.prepare import prepare
from spantune.train.trainer import run_training


def cmd_train(args: argparse.Namespace) -> int:
    from spantune.config import load_config

    started = time.time()
    cfg = load_config(TrainConfig, args.config, overrides_from_args(args))
    if args.qlora:
        cfg.model.qlora = True
    run_dir = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    prep = prepare(cfg, run_dir, args.resume)
    summary = run_training(prep, started)
    if summary["interrupted"]:
        print(f"interrupted at step {summary['global_step']}: checkpoint saved in {run_dir / 'checkpoints'}; "
              f"continue with the same command and --resume")
        return 130
    if "adapter" in summary:
        best = summary["best"]
        tail = f"; best {best['metric']} {best['value']:.4f} at step {best['step']}" if best else ""
        print(f"trained {summary['global_step']} steps → {summary['adapter']}{tail}")
    return 0


def add_train(subparsers: argparse._SubParsersAction) -> None:
    """``spantune train --config FILE [--section.key VALUE ...] [--resume] [--qlora] [--out RUN_DIR]``."""
    p = subparsers.add_parser("train", help="LoRA/QLoRA fine-tuning on span data", allow_abbrev=False,
                              usage="spantune train --config FILE [--section.key VALUE ...] [--resume] [--qlora] "
                                    "[--out RUN_DIR]",
                              description="Fine-tune a chat model to answer span prompts with the corrected span. "
                                          "Any config key can be overridden as --section.key VALUE.")
    p.add_argument("--config", required=True, help="recipe YAML, e.g. configs/train/smollm2-135m_lora_cpu-demo.yaml")
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--qlora", action="store_true", help="4-bit NF4 base model (needs CUDA and bitsandbytes)")
    add_override_options(p, TrainConfig)
    p.set_defaults(func=cmd_train)
