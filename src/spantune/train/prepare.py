"""Everything ``spantune train`` checks before it loads a model, so that mistakes cost seconds.

Order of work: config values → CUDA for QLoRA → precision → data files and schema → run folder → tokenizer and
sequence lengths. Only then does :func:`spantune.train.trainer.run_training` load the model.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spantune.errors import InputError, SpantuneError
from spantune.schema import SpanExample
from spantune.train.config import DataSection, TrainConfig, check_values
from spantune.train.precision import mixed_precision


@dataclass
class Split:
    """Examples of one data file with their line numbers (for errors that point at a line)."""

    path: str
    examples: list[SpanExample]
    lines: list[int]

    def take(self, positions: Sequence[int]) -> Split:
        """The examples at ``positions``, with their line numbers."""
        return Split(self.path, [self.examples[i] for i in positions], [self.lines[i] for i in positions])


@dataclass
class Prepared:
    """Everything validated before the model is loaded."""

    config: TrainConfig
    run_dir: Path
    tokenizer: Any
    train_encoded: list[Any]
    eval_encoded: list[Any]
    eval_sample: list[SpanExample]
    resume_from: str | None
    data_files: dict[str, str]
    train_available: int  #: examples in the training file (train_encoded holds those a max_steps run draws)


def check_qlora(cfg: TrainConfig) -> None:
    """QLoRA needs CUDA and bitsandbytes; say so before anything is loaded."""
    if not cfg.model.qlora:
        return
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise SpantuneError("--qlora (model.qlora) needs a CUDA GPU: 4-bit NF4 training runs on bitsandbytes' "
                            "CUDA kernels; on this machine train plain LoRA (drop --qlora)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SpantuneError("--qlora needs bitsandbytes: pip install 'spantune[qlora]'")


def load_split(path: str, key: str, cfg: DataSection) -> Split:
    """Read a span/chat JSONL file; the first bad line is a ``FILE:LINE: field: message`` error."""
    from spantune.schema import check_jsonl

    if not Path(path).is_file():
        raise SpantuneError(f"config key {key}: data file {path} not found")
    result = check_jsonl(path, clip=cfg.clip, max_context=cfg.max_context)
    if result.bad:
        raise result.bad[0][1]
    if not result.good:
        raise InputError(path, None, "<file>", "no examples")
    return Split(path, [ex for _, ex, _ in result.good], [n for n, _, _ in result.good])


def seeded_subset(n: int, k: int, seed: int) -> list[int]:
    """``k`` positions out of ``n``, the same for a given seed, in file order."""
    return sorted(random.Random(seed).sample(range(n), min(k, n)))


def examples_drawn(cfg: TrainConfig) -> int | None:
    """How many training examples a ``max_steps`` run draws in all (every process's batches); None for epochs."""
    if cfg.train.max_steps <= 0:
        return None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return cfg.train.max_steps * cfg.train.batch_size * cfg.train.grad_accum * world


def draw_training_examples(split: Split, cfg: TrainConfig) -> Split:
    """A ``max_steps`` run sees at most :func:`examples_drawn` examples: draw those (seeded, in file order)
    before tokenizing, instead of encoding a 139k-example build to train on 6,400 of it (minutes on 2 cores).
    The trainer's sampler then shuffles them as it would have shuffled the whole file."""
    n = examples_drawn(cfg)
    if n is None or n >= len(split.examples):
        return split
    return split.take(seeded_subset(len(split.examples), n, cfg.train.seed))


def last_checkpoint(ckpt_dir: Path) -> Path | None:
    """Newest checkpoint whose trainer_state.json exists (written last, so the folder is complete)."""
    done = [p for p in ckpt_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


def check_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool) -> str | None:
    """Refuse to mix two runs in one folder; with ``resume``, the checkpoint to continue from."""
    from spantune.config import dump_yaml

    saved = run_dir / "config.yaml"
    if not resume:
        if saved.exists() or (run_dir / "checkpoints").exists():
            raise SpantuneError(f"{run_dir} already holds a run: pass --resume to continue it, or --out NEW_DIR")
        return None
    if (run_dir / "adapter").exists():
        raise SpantuneError(f"{run_dir} holds a finished run (adapter/ exists); nothing to resume")
    if saved.exists() and saved.read_text(encoding="utf-8") != dump_yaml(cfg):
        import yaml

        old, new = yaml.safe_load(saved.read_text(encoding="utf-8")), yaml.safe_load(dump_yaml(cfg))
        diff = next((f"{s}.{k}" for s in new for k in new[s] if (old.get(s) or {}).get(k) != new[s][k]), "?")
        raise SpantuneError(f"--resume with a different config than {saved} (config key {diff} differs); "
                            "resume with the same config and overrides")
    ckpt = last_checkpoint(run_dir / "checkpoints")
    return str(ckpt) if ckpt else None


def prepare(cfg: TrainConfig, run_dir: Path, resume: bool) -> Prepared:
    """All checks that need no model: values, CUDA for QLoRA, data, tokenizer, lengths, run folder."""
    from spantune.models import load_tokenizer, resolve_model_path
    from spantune.train.data import choose_pad_token, encode_all

    check_values(cfg)
    check_qlora(cfg)
    mixed_precision(cfg)  # bf16/fp16 asked for on a machine that lacks it fails here
    train = load_split(cfg.data.train, "data.train", cfg.data)
    if cfg.data.limit is not None:
        train = train.take(range(min(cfg.data.limit, len(train.examples))))
    available = len(train.examples)
    train = draw_training_examples(train, cfg)
    evals = load_split(cfg.data.eval, "data.eval", cfg.data) if cfg.data.eval is not None else None
    resume_from = check_run_dir(cfg, run_dir, resume)

    if resolve_model_path(cfg.model.name)[1] is not None:
        raise SpantuneError(f"config key model.name: {cfg.model.name} is a trained adapter; "
                            "train from a base model (hub id, model folder or 'embedded')")
    tokenizer = load_tokenizer(cfg.model.name)
    choose_pad_token(tokenizer, cfg.model.pad_token)
    train_encoded = encode_all(tokenizer, train.examples, cfg.train.max_length, train.path, train.lines)
    eval_encoded: list[Any] = []
    sample: list[SpanExample] = []
    if evals is not None and cfg.eval.steps > 0:
        loss = evals.take(seeded_subset(len(evals.examples), cfg.eval.loss_examples, cfg.train.seed))
        eval_encoded = encode_all(tokenizer, loss.examples, cfg.train.max_length, loss.path, loss.lines)
        sample = [evals.examples[i] for i in seeded_subset(len(evals.examples), cfg.eval.sample, cfg.train.seed)]
    files = {"train": train.path, **({"eval": evals.path} if evals is not None else {})}
    return Prepared(cfg, run_dir, tokenizer, train_encoded, eval_encoded, sample, resume_from, files, available)
