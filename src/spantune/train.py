"""``spantune train``: LoRA/QLoRA supervised fine-tuning that teaches a model to return the corrected span.

Order of work, so that mistakes cost seconds: config (types, unknown keys, values) → data files and
schema → tokenizer and sequence lengths → run folder → only then the model. Training is TRL's
``SFTTrainer`` on pre-tokenized sequences whose labels cover the reply and its end-of-turn token only
(``spantune.train_data``); batches are padded per batch and grouped by length.

The run folder holds ``config.yaml`` + ``run_info.json`` (resolved config, data hashes, package
versions, git commit), ``metrics.jsonl``, ``curves.png``, ``checkpoints/``, ``adapter/`` and a
``README.md`` model card. ``--resume`` continues from the last complete checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spantune.config import add_override_options, overrides_from_args
from spantune.errors import InputError, SpantuneError
from spantune.io import write_json
from spantune.schema import SpanExample

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BEST_METRICS = ("exact_match", "chrf", "eval_loss")


@dataclass
class ModelSection:
    name: str = "embedded"  #: hub id, local model folder, or "embedded"
    qlora: bool = False  #: load the base in 4-bit NF4 (CUDA + bitsandbytes)
    precision: str = "auto"  #: auto = bf16 on GPUs and CPUs that compute it natively, fp32 otherwise
    gradient_checkpointing: bool = False
    pad_token: str | None = None  #: default: a vocabulary token that never ends a turn


@dataclass
class DataSection:
    train: str = "data/train.jsonl"
    eval: str | None = "data/eval.jsonl"
    clip: bool = True  #: clip contexts at a word boundary, as the editor does at inference
    max_context: int = 60
    limit: int | None = None  #: use only the first N training examples (quick runs)


@dataclass
class LoraSection:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])  #: or ["all-linear"]


@dataclass
class QuantAwareSection:
    """Train on the 4-bit grid the browser file uses (spantune.quant_aware), so model_q4.onnx answers like the
    tuned model instead of differing on ~1 span in 5 (benchmarks/RESULTS.md, quant-aware training)."""

    enabled: bool = False
    block_size: int = 32  #: must match the export's --block-size (32 by default)
    start_step: int = 0  #: train plainly before this optimizer step, on the grid from it on


@dataclass
class TrainSection:
    seed: int = 42
    learning_rate: float = 5e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    epochs: float = 3.0
    max_steps: int = -1  #: > 0 overrides epochs
    max_minutes: float | None = None  #: wall-clock budget from process start; stops with a checkpoint
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    group_by_length: bool = True
    logging_steps: int = 10
    save_steps: int = 50
    save_total_limit: int = 2
    threads: int | None = None  #: torch CPU threads (None: torch's default)


@dataclass
class EvalSection:
    steps: int = 50  #: evaluate every N optimizer steps; 0 = never
    sample: int = 64  #: eval examples decoded greedily at each evaluation; 0 = loss only
    loss_examples: int = 256  #: eval examples (a seeded sample) for the eval loss
    batch_size: int = 8
    max_new_tokens: int = 32
    metric: str = "exact_match"  #: picks the best checkpoint and drives early stopping
    patience: int = 3  #: evaluations without improvement before stopping; 0 = never stop early


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    lora: LoraSection = field(default_factory=LoraSection)
    quant_aware: QuantAwareSection = field(default_factory=QuantAwareSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)


@dataclass
class Split:
    """Examples of one data file with their line numbers (for errors that point at a line)."""

    path: str
    examples: list[SpanExample]
    lines: list[int]


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


# ---------------------------------------------------------------- validation (no model loaded)


def check_values(cfg: TrainConfig) -> None:
    """Value checks the types cannot express; each error names its key."""

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise SpantuneError(f"config key {key}: {msg}")

    need(cfg.model.precision in PRECISIONS, "model.precision", f"choose one of {', '.join(PRECISIONS)}")
    need(cfg.data.max_context > 0, "data.max_context", "must be > 0")
    need(cfg.data.limit is None or cfg.data.limit > 0, "data.limit", "must be > 0")
    need(cfg.lora.r > 0, "lora.r", "must be > 0")
    need(cfg.lora.alpha > 0, "lora.alpha", "must be > 0")
    need(0.0 <= cfg.lora.dropout < 1.0, "lora.dropout", "must be in [0, 1)")
    need(bool(cfg.lora.target_modules), "lora.target_modules", "name at least one module (or all-linear)")
    q = cfg.quant_aware
    need(q.block_size >= 16 and q.block_size & (q.block_size - 1) == 0, "quant_aware.block_size",
         "must be a power of two >= 16 (onnxruntime's block quantizers)")
    if q.enabled:
        need(cfg.lora.dropout == 0.0, "lora.dropout", "must be 0 with quant_aware.enabled (the 4-bit weight is "
             "the merged base + LoRA weight, which dropout on the LoRA input cannot be folded into)")
        need(not cfg.model.qlora, "quant_aware.enabled", "needs a float base (plain LoRA), not --qlora")
        need(0 <= q.start_step and (cfg.train.max_steps <= 0 or q.start_step < cfg.train.max_steps),
             "quant_aware.start_step", "must be >= 0 and below train.max_steps (else nothing trains on the grid)")
    t = cfg.train
    need(t.learning_rate > 0, "train.learning_rate", "must be > 0")
    need(t.lr_scheduler in SCHEDULERS, "train.lr_scheduler", f"choose one of {', '.join(SCHEDULERS)}")
    need(0.0 <= t.warmup_ratio < 1.0, "train.warmup_ratio", "must be in [0, 1)")
    need(t.epochs > 0 or t.max_steps > 0, "train.epochs", "must be > 0 (or set train.max_steps)")
    need(t.max_minutes is None or t.max_minutes > 0, "train.max_minutes", "must be > 0")
    for key in ("batch_size", "grad_accum", "max_length", "logging_steps", "save_steps", "save_total_limit"):
        need(getattr(t, key) > 0, f"train.{key}", "must be > 0")
    need(t.threads is None or t.threads > 0, "train.threads", "must be > 0")
    e = cfg.eval
    for key in ("steps", "sample", "loss_examples", "patience"):
        need(getattr(e, key) >= 0, f"eval.{key}", "must be >= 0")
    need(e.batch_size > 0 and e.max_new_tokens > 0, "eval.batch_size/max_new_tokens", "must be > 0")
    need(e.metric in BEST_METRICS, "eval.metric", f"choose one of {', '.join(BEST_METRICS)}")
    need(e.metric == "eval_loss" or e.sample > 0, "eval.metric",
         f"{e.metric} needs decoded examples: set eval.sample > 0 or eval.metric eval_loss")
    if cfg.data.eval is not None and e.steps > 0:
        need(t.save_steps % e.steps == 0, "train.save_steps",
             f"{t.save_steps} must be a multiple of eval.steps ({e.steps}) so the best checkpoint is saved")


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
    from spantune.train_data import choose_pad_token, encode_all

    check_values(cfg)
    check_qlora(cfg)
    mixed_precision(cfg)  # bf16/fp16 asked for on a machine that lacks it fails here
    train = load_split(cfg.data.train, "data.train", cfg.data)
    if cfg.data.limit is not None:
        train = Split(train.path, train.examples[: cfg.data.limit], train.lines[: cfg.data.limit])
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
        loss_idx = seeded_subset(len(evals.examples), cfg.eval.loss_examples, cfg.train.seed)
        eval_encoded = encode_all(tokenizer, [evals.examples[i] for i in loss_idx], cfg.train.max_length,
                                  evals.path, [evals.lines[i] for i in loss_idx])
        sample = [evals.examples[i] for i in seeded_subset(len(evals.examples), cfg.eval.sample, cfg.train.seed)]
    files = {"train": train.path, **({"eval": evals.path} if evals is not None else {})}
    return Prepared(cfg, run_dir, tokenizer, train_encoded, eval_encoded, sample, resume_from, files)


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class Precision:
    """The resolved training precision, and the sentence that says why (training log, run_info.json, model card)."""

    name: str  #: fp32, bf16 or fp16
    detail: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    @property
    def fp16(self) -> bool:
        return self.name == "fp16"


def cpu_bf16() -> str | None:
    """The CPU's native bf16 instructions (``amx`` or ``avx512_bf16``), None without: there bf16 is emulated and
    slower than fp32. Asked of torch's own capability probes, never guessed from the vendor."""
    import torch

    for name, probe in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        if getattr(torch.cpu, probe, lambda: False)():
            return name
    return None


def mixed_precision(cfg: TrainConfig) -> Precision:
    """bf16 on GPUs and CPUs that compute it natively, fp32 elsewhere; asking for what the machine lacks fails.

    bf16 means frozen base weights stored in bf16, LoRA weights and optimizer state in fp32, the forward under
    ``torch.autocast`` (the Trainer's bf16 mode): on an AVX512-BF16 CPU a LoRA step of the CPU recipe took 1.45x
    less CPU time than fp32 on shared cores (2.3x in the issue's idle-machine timing), and less than autocast over
    fp32 weights, with 0.7x the peak memory (benchmarks/RESULTS.md). Quant-aware
    training stays fp32 on CPU: its 4-bit grid is the one the export computes from fp32 weights.
    """
    import torch

    want, qa = cfg.model.precision, cfg.quant_aware.enabled
    # TRL casts QLoRA adapters to bf16 (the QLoRA paper's recipe); PEFT keeps other adapters fp32
    weights = "frozen weights 4-bit NF4, LoRA bf16" if cfg.model.qlora else "frozen weights bf16, LoRA fp32"
    if torch.cuda.is_available():
        supported = torch.cuda.is_bf16_supported()
        if want == "bf16" and not supported:
            raise SpantuneError("config key model.precision: this GPU has no bf16 support; use fp16 or fp32")
        name = ("bf16" if supported else "fp32") if want == "auto" else want
        how = {"bf16": f": {weights}, autocast", "fp16": ": fp16 autocast"}.get(name, "")
        return Precision(name, f"{name} (cuda{how})")
    native = cpu_bf16()
    if want == "fp16":
        raise SpantuneError("config key model.precision: fp16 needs a CUDA GPU; on CPU use auto, bf16 or fp32")
    if want == "bf16" and native is None:
        raise SpantuneError("config key model.precision: bf16 needs a CUDA GPU or a CPU with native bf16 "
                            "(AVX512-BF16 or AMX), which this CPU lacks; use auto or fp32")
    if want == "bf16" and qa:
        raise SpantuneError("config key model.precision: bf16 with quant_aware.enabled on CPU is not supported "
                            "(the 4-bit grid must come from fp32 weights, as the export's does); use auto or fp32")
    if want == "fp32":
        return Precision("fp32", "fp32 (cpu, as configured)")
    if native is None:
        return Precision("fp32", "fp32 (cpu without native bf16)")
    if qa:
        return Precision("fp32", f"fp32 (cpu {native}, but quant-aware training keeps its 4-bit grid on fp32 weights)")
    return Precision("bf16", f"bf16 (cpu {native}: {weights}, autocast)")


def load_base_model(cfg: TrainConfig, precision: str) -> Any:
    """The frozen base: bf16 weights under bf16 training (PEFT keeps the LoRA weights it adds in fp32), fp32
    otherwise, 4-bit NF4 with QLoRA."""
    import torch

    if not cfg.model.qlora:
        from spantune.models import load_model_and_tokenizer

        dtype = "bf16" if precision == "bf16" else "fp32"
        return load_model_and_tokenizer(cfg.model.name, device="cpu", dtype=dtype)[0]

    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from spantune.models import resolve_model_path

    compute = torch.bfloat16 if precision == "bf16" else torch.float16
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=compute)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg.model.name)[0], quantization_config=quant,
                                                 dtype=compute, device_map={"": local_rank})
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.model.gradient_checkpointing)


def lora_config(cfg: LoraSection) -> Any:
    from peft import LoraConfig

    targets: Any = "all-linear" if cfg.target_modules == ["all-linear"] else list(cfg.target_modules)
    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")


def sft_config(cfg: TrainConfig, run_dir: Path, bf16: bool, fp16: bool, has_eval: bool) -> Any:
    import torch
    from trl import SFTConfig

    t, e = cfg.train, cfg.eval
    best = "eval_loss" if e.metric == "eval_loss" else f"eval_{e.metric}"
    return SFTConfig(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=e.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_ratio=t.warmup_ratio,
        weight_decay=t.weight_decay,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        max_length=t.max_length,
        group_by_length=t.group_by_length,
        logging_steps=t.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=e.steps if has_eval else None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=has_eval,
        metric_for_best_model=best if has_eval else None,
        greater_is_better=e.metric != "eval_loss",
        seed=t.seed,
        data_seed=t.seed,
        bf16=bf16,
        fp16=fp16,
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        ddp_find_unused_parameters=False,
        report_to="none",
        dataloader_num_workers=0,
    )


def _trim_metrics(path: Path, step: int) -> None:
    """On resume, drop metric rows logged after the checkpoint (those steps are trained again)."""
    from spantune.io import atomic_write
    from spantune.train_report import read_metrics

    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    with atomic_write(path) as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def _save_adapter(trainer: Any, run_dir: Path, base_name: str, quant_block: int | None) -> Path:
    """Adapter + tokenizer into ``run_dir/adapter`` in one rename (every rank takes part, for FSDP).

    The adapter names its base as the user did (a hub id or ``embedded``), not by this machine's
    cache path, so the run folder loads on any machine that has that base.
    """
    tmp = run_dir / ".adapter.partial"
    trainer.save_model(str(tmp))  # the adapter, and the tokenizer (our pad token included)
    trainer.accelerator.wait_for_everyone()
    final = run_dir / "adapter"
    if trainer.is_world_process_zero():
        if quant_block is not None:
            from spantune.quant_aware import write_marker

            write_marker(tmp, quant_block)
        if not Path(base_name).expanduser().is_dir():
            cfg_path = tmp / "adapter_config.json"
            adapter_cfg = json.loads(cfg_path.read_text())
            adapter_cfg["base_model_name_or_path"] = base_name
            write_json(cfg_path, adapter_cfg)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    return final


def build_trainer(prep: Prepared, args: Any, precision: str, callbacks: list[Any] | None = None) -> Any:
    """The base model with a fresh LoRA adapter inside TRL's SFTTrainer, on the prepared sequences."""
    from spantune.train_data import to_dataset
    from spantune.train_loss import SpanSFTTrainer

    model = load_base_model(prep.config, precision)
    model.config.pad_token_id = prep.tokenizer.pad_token_id
    trainer = SpanSFTTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(prep.train_encoded),
        eval_dataset=to_dataset(prep.eval_encoded) if prep.eval_encoded else None,
        processing_class=prep.tokenizer,
        peft_config=lora_config(prep.config.lora),
        callbacks=callbacks,
    )
    qa = prep.config.quant_aware
    if qa.enabled:
        from spantune.quant_aware import Grid
        from spantune.train_callbacks import QuantAwareStart

        trainer.add_callback(QuantAwareStart(Grid(trainer.model, qa.block_size), qa.start_step))
    return trainer


def run_training(prep: Prepared, started: float) -> dict[str, Any]:
    """Load the model, train, and write the run folder; returns the summary in the model card."""
    import datasets
    import torch
    from accelerate import PartialState
    from accelerate.utils import DistributedType
    from transformers import EarlyStoppingCallback

    from spantune.config import to_dict
    from spantune.io import atomic_write
    from spantune.runinfo import write_run_info
    from spantune.train_callbacks import GenerationEval, GracefulStop, MetricsLog, sigint_saves
    from spantune.train_report import model_card, plot_curves, read_metrics

    datasets.disable_progress_bars()  # TRL's per-split map bars; the training bar stays

    cfg, run_dir = prep.config, prep.run_dir
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    precision = mixed_precision(cfg)
    has_eval = bool(prep.eval_encoded)
    # sft_config initializes torch.distributed under a launcher
    args = sft_config(cfg, run_dir, precision.bf16, precision.fp16, has_eval)
    state = PartialState()
    state.wait_for_everyone()  # every rank has checked the run folder before rank 0 writes to it
    metrics_path = run_dir / "metrics.jsonl"
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if prep.resume_from is None:
            info = write_run_info(run_dir, cfg, prep.data_files)
            write_json(run_dir / "run_info.json", {**info, "precision": precision.detail})
            metrics_path.unlink(missing_ok=True)
        else:
            _trim_metrics(metrics_path, int(prep.resume_from.rsplit("-", 1)[1]))
            for stale in (run_dir / "checkpoints").glob("checkpoint-*"):  # half-written by a killed run
                if not (stale / "trainer_state.json").is_file():
                    shutil.rmtree(stale)
    state.wait_for_everyone()

    deadline = started + 60 * cfg.train.max_minutes if cfg.train.max_minutes else None
    stopper = GracefulStop(deadline)
    fsdp = state.distributed_type == DistributedType.FSDP
    callbacks: list[Any] = [
        GenerationEval(prep.eval_sample, prep.tokenizer, cfg.eval.max_new_tokens, shard=not fsdp),
        MetricsLog(metrics_path),
        stopper,
    ]
    if has_eval and cfg.eval.patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.eval.patience))
    trainer = build_trainer(prep, args, precision.name, callbacks)
    if state.is_main_process:
        print(f"precision: {precision.detail}")
        trainer.model.print_trainable_parameters()
    with sigint_saves(stopper):
        output = trainer.train(resume_from_checkpoint=prep.resume_from)
    summary: dict[str, Any] = {"global_step": trainer.state.global_step, "interrupted": stopper.interrupted}
    if stopper.interrupted:
        return summary

    adapter = _save_adapter(trainer, run_dir, prep.config.model.name,
                            cfg.quant_aware.block_size if cfg.quant_aware.enabled else None)
    if state.is_main_process:
        rows = read_metrics(metrics_path)
        speeds = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
        losses = [r["loss"] for r in rows if r.get("loss") is not None]
        st = trainer.state
        best = None
        if st.best_metric is not None and st.best_global_step:
            best = {"step": st.best_global_step, "metric": args.metric_for_best_model, "value": st.best_metric}
        summary.update(
            precision=precision.detail, world_size=state.num_processes, pad_token=prep.tokenizer.pad_token,
            train_runtime_s=output.metrics.get("train_runtime", 0.0), best=best, run_dir=str(run_dir),
            tokens_per_s=round(sum(speeds) / len(speeds), 1) if speeds else None,
            last_loss=round(losses[-1], 4) if losses else None,
            stopped_by=("time budget (train.max_minutes)" if stopper.out_of_time
                        else "early stopping (eval.patience)" if st.global_step < st.max_steps else None),
            adapter=str(adapter))
        plot_curves(rows, run_dir / "curves.png")
        info = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))
        with atomic_write(run_dir / "README.md") as fh:
            fh.write(model_card(to_dict(cfg), info, summary))
    return summary


# ---------------------------------------------------------------- CLI


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


def register(subparsers: Any) -> None:
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
