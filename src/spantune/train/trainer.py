"""Training itself: TRL's ``SFTTrainer`` with a fresh LoRA adapter on the prepared sequences, and the run folder.

Labels cover the reply and its end-of-turn token only (:mod:`spantune.train.data`); batches are padded per
batch and grouped by length. The run folder holds ``config.yaml`` + ``run_info.json`` (resolved config, data
hashes, package versions, git commit), ``metrics.jsonl``, ``curves.png``, ``checkpoints/``, ``adapter/`` and
a ``README.md`` model card. ``--resume`` continues from the last complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from spantune import allocator
from spantune.io import write_json
from spantune.train.compiled import compile_layers, decoder_layers
from spantune.train.config import LoraSection, TrainConfig
from spantune.train.precision import mixed_precision, use_eager_attention
from spantune.train.prepare import Prepared


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


def lora_config(cfg: LoraSection, model: Any) -> Any:
    """PEFT's LoRA settings for ``model``; with ``top_layers``, on its last N decoder layers only (PEFT takes a
    layer list only with named modules, so ``all-linear`` becomes the names of the layers' linear modules)."""
    import torch
    from peft import LoraConfig

    targets: Any = "all-linear" if cfg.target_modules == ["all-linear"] else list(cfg.target_modules)
    layers = None
    if cfg.top_layers is not None:
        n = model.config.num_hidden_layers
        layers = list(range(max(n - cfg.top_layers, 0), n))
        if targets == "all-linear":
            targets = sorted({name.rsplit(".", 1)[-1] for layer in decoder_layers(model)
                              for name, m in layer.named_modules() if isinstance(m, torch.nn.Linear)})
    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                      layers_to_transform=layers, bias="none", task_type="CAUSAL_LM")


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
    from spantune.train.report import read_metrics

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
            from spantune.train.quant_aware import write_marker

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
    import torch

    from spantune.train.data import to_dataset
    from spantune.train.loss import SpanSFTTrainer, use_packed_attention

    model = load_base_model(prep.config, precision)
    model.config.pad_token_id = prep.tokenizer.pad_token_id
    trainer = SpanSFTTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(prep.train_encoded),
        eval_dataset=to_dataset(prep.eval_encoded) if prep.eval_encoded else None,
        processing_class=prep.tokenizer,
        peft_config=lora_config(prep.config.lora, model),
        callbacks=callbacks,
        shared_prefix=prep.config.train.shared_prefix,
    )
    if precision == "bf16" and not torch.cuda.is_available():
        use_eager_attention(trainer.model)
    if prep.config.train.shared_prefix:
        use_packed_attention(trainer.model)
    if prep.config.train.compile:
        compile_layers(trainer.model)
    qa = prep.config.quant_aware
    if qa.enabled:
        from spantune.train.callbacks import GracefulStop, QuantAwareStart
        from spantune.train.quant_aware import Grid

        stopper = next((c for c in callbacks or [] if isinstance(c, GracefulStop)), None)
        trainer.add_callback(QuantAwareStart(Grid(trainer.model, qa.block_size), qa.start_step, stopper))
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
    from spantune.train.callbacks import GenerationEval, GracefulStop, MetricsLog, saved_schedule_end, sigint_saves
    from spantune.train.report import model_card, plot_curves, read_metrics

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
            drawn = {"drawn": len(prep.train_encoded), "of": prep.train_available}
            write_json(run_dir / "run_info.json", {**info, "precision": precision.detail, "train_examples": drawn})
            metrics_path.unlink(missing_ok=True)
        else:
            _trim_metrics(metrics_path, int(prep.resume_from.rsplit("-", 1)[1]))
            for stale in (run_dir / "checkpoints").glob("checkpoint-*"):  # half-written by a killed run
                if not (stale / "trainer_state.json").is_file():
                    shutil.rmtree(stale)
    state.wait_for_everyone()

    deadline = started + 60 * cfg.train.max_minutes if cfg.train.max_minutes else None
    stopper = GracefulStop(deadline, end=saved_schedule_end(prep.resume_from))
    fsdp = state.distributed_type == DistributedType.FSDP
    callbacks: list[Any] = [
        GenerationEval(prep.eval_sample, prep.tokenizer, cfg.eval.max_new_tokens, cfg.eval.batch_size,
                       shard=not fsdp),
        MetricsLog(metrics_path),
        stopper,
    ]
    if has_eval and cfg.eval.patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.eval.patience))
    trainer = build_trainer(prep, args, precision.name, callbacks)
    if state.is_main_process:
        print(f"precision: {precision.detail}; memory allocator: {allocator.in_use()}")
        if cfg.train.compile:
            print(f"torch.compile: {len(decoder_layers(trainer.model))} decoder layers, dynamic shapes "
                  "(compiled on the first step; evaluations eager)")
        print(f"training examples: {len(prep.train_encoded):,} of {prep.train_available:,} in {prep.data_files['train']}"
              + (" (what train.max_steps draws)" if len(prep.train_encoded) < prep.train_available else ""))
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
            stopped_by=((f"time budget (train.max_minutes; schedule fitted to end at step {stopper.end})"
                         if stopper.end is not None else "time budget (train.max_minutes)") if stopper.out_of_time
                        else "early stopping (eval.patience)" if st.global_step < st.max_steps else None),
            adapter=str(adapter))
        plot_curves(rows, run_dir / "curves.png")
        info = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))
        with atomic_write(run_dir / "README.md") as fh:
            fh.write(model_card(to_dict(cfg), info, summary))
    return summary
