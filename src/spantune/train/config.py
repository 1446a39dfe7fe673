"""``spantune train``'s recipe: the config sections (YAML keys, ``--section.key VALUE`` overrides) and the value
checks their types cannot express, so a bad recipe fails before any data or model is read."""

from __future__ import annotations

from dataclasses import dataclass, field

from spantune.errors import SpantuneError

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
    #: adapters on the last N decoder layers only (null: every layer): the backward pass then stops at the lowest
    #: adapted layer, so a step costs less
    top_layers: int | None = None


@dataclass
class QuantAwareSection:
    """Train on the 4-bit grid the browser file uses (spantune.train.quant_aware), so model_q4.onnx answers like the
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
    max_minutes: float | None = None  #: wall-clock budget from process start: the schedule is fitted to it
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    group_by_length: bool = True
    logging_steps: int = 10
    save_steps: int = 50
    save_total_limit: int = 2
    threads: int | None = None  #: torch CPU threads (None: torch's default)
    #: run the prompt head every row of a batch shares (chat template + system prompt) once per batch, each row
    #: attending to it and to its own tokens (spantune.train.loss); combines with compiled layers and gradient
    #: checkpointing. On in the CPU recipes: 1.18x the compiled bf16 step on an AMD EPYC (benchmarks/RESULTS.md,
    #: run 14). Off by default: flash attention and untested GPU speed
    shared_prefix: bool = False
    #: compile each decoder layer with torch.compile for the training steps (spantune.train.compiled): ~40 s of
    #: compilation once, then a 1.4x faster bf16 step on an AMX Xeon (benchmarks/RESULTS.md, run 9); evaluations
    #: stay eager. Needs a C++ compiler on a CPU.
    compile: bool = False


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
    need(cfg.lora.top_layers is None or cfg.lora.top_layers > 0, "lora.top_layers", "must be > 0 (or null: all)")
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
    if t.compile:
        for on, key in ((q.enabled, "quant_aware.enabled"),
                        (cfg.model.gradient_checkpointing, "model.gradient_checkpointing")):
            need(not on, "train.compile", f"cannot be combined with {key} (not supported together)")
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
