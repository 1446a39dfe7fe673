"""Training throughput: spantune's trainer against the naive baseline, same model and data.

* **spantune**: ``spantune.train`` as ``spantune train`` runs it — prompt masked (loss on the reply and
  its end-of-turn token), padding per batch, batches grouped by length, batch 8, TRL ``SFTTrainer``.
* **naive** (the design document's sketch): every example rendered with the chat template and padded
  to 512 tokens, loss on every real token, batch 4, random order, plain ``transformers.Trainer``.

Both train the same LoRA (the default recipe: r 16 on q_proj/v_proj) for one epoch over the same
examples, from a freshly loaded base model, in one process. Reported:

* useful tokens/s: the examples' real (non-padding) tokens divided by the training wall time; the
  ratio of the two is the speed-up at equal work;
* with ``--quant-aware``, a third phase: spantune's trainer again with ``quant_aware.enabled`` (LoRA through the
  4-bit grid, dropout 0), reported as its cost against the plain spantune phase;
* with ``--precisions``, the CPU recipe (``configs/train/smollm2-135m_lora_cpu-demo.yaml``: LoRA r16 on every
  linear layer, batch 8, max length 256) on the same examples at ``fp32`` and at ``bf16`` (frozen weights bf16,
  LoRA fp32, autocast; skipped, with the reason, where the machine has no native bf16), both with the prompt
  head computed per row, then each with the shared prompt head run once per batch (``train.shared_prefix``) and
  with its decoder layers compiled (``train.compile``), and bf16 with both; reported as speed-ups over fp32, over
  the whole epoch (compilation included), in the steady state after the first ``WARMUP_STEPS`` steps, and as the
  median of each later step's own rate, which a recompiling step or a busy neighbour barely moves
  (``--recipe-examples`` sets how many examples these phases train on; ``--rows`` picks some). Each of these
  rows trains in a fresh child process, as ``spantune train`` would: run one after another in one process, the
  later phases ran slower (the compiled bf16 row at 455 tokens/s against 518-620 in a process of its own, on the
  same machine within minutes; benchmarks/RESULTS.md, run 16), which made the ratios depend on the order of the
  rows. ``--repeats N`` runs the rows N times, every other round in reverse order so that a machine drifting
  over minutes slows both sides alike; each round's ratios to that round's fp32 row are reported, and their
  median;
* the ``--precisions`` rows train on the allocator the ``spantune`` command would run on (tcmalloc where the
  machine has it: :mod:`spantune.allocator`), and the row ``fp32+glibc`` on the C library's, as the fp32 recipe ran
  when issue 14 was filed; every other row's rates are compared with both fp32 rows;
* peak memory above the level before each phase: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the
  kernel's high-water mark of the resident set (``VmHWM``, reset at the start of each phase through
  ``/proc/self/clear_refs``, so nothing polls the process while it trains), from a heap trimmed at that start.
  The parent process, which runs the spantune and naive phases one after the other, has glibc return freed
  blocks of 4 MiB and more to the OS at once, so that its RSS follows what torch holds; the ``--precisions``
  children keep their allocator's defaults, as ``spantune train`` does (with the 4 MiB threshold and a 5 ms RSS sampler
  the recipe's bf16 steps ran ~8 % slower: benchmarks/RESULTS.md, run 20).

    python benchmarks/train_throughput.py --model embedded --data data/train.jsonl --examples 32 [--precisions]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAIVE_LENGTH = 512
NAIVE_BATCH = 4
#: --precisions: (row label, precision, train.shared_prefix, train.compile, SPANTUNE_ALLOCATOR)
RECIPE_PHASES = (("recipe fp32", "fp32", False, False, "auto"),
                 ("recipe fp32+glibc", "fp32", False, False, "system"),
                 ("recipe fp32+prefix", "fp32", True, False, "auto"),
                 ("recipe fp32+compile", "fp32", False, True, "auto"),
                 ("recipe bf16", "bf16", False, False, "auto"),
                 ("recipe bf16+prefix", "bf16", True, False, "auto"),
                 ("recipe bf16+compile", "bf16", False, True, "auto"),
                 ("recipe bf16+compile+prefix", "bf16", True, True, "auto"))
#: the rows every other row's rates are compared with: today's fp32 recipe, and the same on the C library's
#: allocator, as spantune ran it before it preloaded tcmalloc (the fp32 recipe issue 14 was measured against)
BASELINES = ("recipe fp32", "recipe fp32+glibc")
#: steps left out of the steady-state rates (compilation happens in the first)
WARMUP_STEPS = 2
#: the steady-state rates compared with fp32's: (label, result key)
STEADY_RATES = (("steady state", "steady_tokens_per_s"), ("median step", "median_step_tokens_per_s"))
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "train" / "smollm2-135m_lora_cpu-demo.yaml"


class PeakMemory:
    """Peak memory of a code block above its starting level (bytes)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.peak = 0

    @staticmethod
    def _status(field: str) -> int:
        """A ``/proc/self/status`` size (``VmRSS``, ``VmHWM``) in bytes."""
        with open("/proc/self/status") as fh:
            line = next(line for line in fh if line.startswith(field + ":"))
        return int(line.split()[1]) * 1024

    def __enter__(self) -> PeakMemory:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        trim_heap()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux 4.0+)
        except OSError as exc:
            from spantune.errors import SpantuneError

            raise SpantuneError(f"peak memory on CPU needs a writable /proc/self/clear_refs (Linux 4.0+): "
                                f"{exc}") from exc
        self._base = self._status("VmRSS")
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
            return
        self.peak = self._status("VmHWM") - self._base


def glibc() -> Any:
    """The C library, or None where it is not glibc (the RSS then includes blocks the allocator keeps)."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def return_freed_memory_to_os() -> None:
    """glibc: serve blocks >= 4 MiB with mmap and trim the heap past 16 MiB free, so RSS tracks live memory.

    Lower thresholds (64 KiB) make every mid-sized tensor a fresh mmap whose pages the kernel zeroes on first
    touch: on an AMX Xeon a bf16 phase, which casts each weight per step, then ran at 100 % system CPU for
    minutes. What stays cached in the heap between phases is handed back by :func:`trim_heap`.
    """
    libc = glibc()
    if libc is not None:
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 4 << 20)
        libc.mallopt(m_trim_threshold, 16 << 20)


def trim_heap() -> None:
    """Collect cycles and hand every free heap page to the OS, so a phase's RSS starts from what is live."""
    gc.collect()
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


def one_epoch(cfg: Any, model: str, data: str, examples: int, threads: int | None) -> Any:
    """``cfg`` trained for one epoch over the first ``examples`` of ``data``, without evaluations or time budget."""
    cfg.model.name = model
    cfg.data.train, cfg.data.eval, cfg.data.limit = data, None, examples
    cfg.train.epochs, cfg.train.max_steps, cfg.train.max_minutes = 1.0, -1, None
    cfg.train.threads, cfg.train.logging_steps = threads, 10_000
    cfg.eval.steps = 0
    return cfg


def base_config(model: str, data: str, examples: int, threads: int | None) -> Any:
    """The default recipe, batch 8, with the naive phase's length guard."""
    from spantune.train import TrainConfig

    cfg = one_epoch(TrainConfig(), model, data, examples, threads)
    cfg.train.batch_size, cfg.train.max_length = 8, NAIVE_LENGTH
    return cfg


def recipe_config(model: str, data: str, examples: int, threads: int | None, precision: str) -> Any:
    """The CPU recipe file at ``precision``."""
    from spantune.config import load_config
    from spantune.train import TrainConfig

    cfg = one_epoch(load_config(TrainConfig, str(RECIPE)), model, data, examples, threads)
    cfg.model.precision = precision
    return cfg


class SteadyState:
    """A callback that times the steps after ``WARMUP_STEPS``: the real tokens per second from the end of that step
    to the end of training, and the median of each step's own rate (a step that recompiles or is slowed by another
    job on a shared machine moves the first, hardly the second)."""

    def __init__(self, trainer: Any) -> None:
        from transformers import TrainerCallback

        class _Mark(TrainerCallback):
            def on_step_begin(cb, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                cb.began = (time.perf_counter(), trainer._total_train_tokens)

            def on_step_end(cb, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                now, tokens = time.perf_counter(), trainer._total_train_tokens
                if state.global_step == WARMUP_STEPS:
                    self.start = (now, tokens)
                elif state.global_step > WARMUP_STEPS:
                    self.step_rates.append((tokens - cb.began[1]) / (now - cb.began[0]))

        self.trainer, self.start, self.step_rates = trainer, None, []
        trainer.add_callback(_Mark())

    def rate(self) -> float | None:
        """Real tokens per second after the warm-up steps (None when the epoch had no more steps)."""
        if self.start is None or self.trainer._total_train_tokens == self.start[1]:
            return None
        return (self.trainer._total_train_tokens - self.start[1]) / (time.perf_counter() - self.start[0])

    def median_step_rate(self) -> float | None:
        """The median over the steps after the warm-up of each step's real tokens per second."""
        return statistics.median(self.step_rates) if self.step_rates else None


def timed_train(trainer: Any, cuda: bool) -> dict[str, Any]:
    """Wall and CPU seconds (all threads), peak memory and steady-state tokens/s of ``trainer.train()``.

    The weights are read once first: safetensors maps them lazily, and paging them in during the
    timed phase would count the model itself as training memory.
    """
    import torch

    from spantune import allocator

    with torch.no_grad():
        for p in trainer.model.parameters():
            p.sum()
    steady = SteadyState(trainer) if hasattr(trainer, "_total_train_tokens") else None
    with PeakMemory(cuda) as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu_seconds": cpu, "steps": trainer.state.global_step, "peak_bytes": mem.peak,
            "allocator": allocator.in_use(),
            "steady_tokens_per_s": steady.rate() if steady else None,
            "median_step_tokens_per_s": steady.median_step_rate() if steady else None}


def run_spantune(prep: Any, out: Path, precision: Any, cuda: bool) -> dict[str, Any]:
    from spantune.train import build_trainer, sft_config

    args = sft_config(prep.config, out, precision.bf16, precision.fp16, has_eval=False)
    args.save_strategy = "no"
    args.disable_tqdm = True
    trainer = build_trainer(prep, args, precision.name)
    return {**timed_train(trainer, cuda), "precision": precision.detail}


def run_naive(prep: Any, examples: list[Any], out: Path, precision: Any, cuda: bool) -> dict[str, Any]:
    """The design document's sketch: full chat text, padded to 512, labels on every real token, batch 4."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments, default_data_collator

    from spantune.prompt import render
    from spantune.train import load_base_model, lora_config

    tok = prep.tokenizer
    texts = [render(tok, ex, with_answer=True) for ex in examples]
    enc = tok(texts, padding="max_length", max_length=NAIVE_LENGTH, truncation=True, add_special_tokens=False)
    labels = [[t if m else -100 for t, m in zip(ids, mask)] for ids, mask in zip(enc["input_ids"],
                                                                                 enc["attention_mask"])]
    data = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                              "labels": labels})
    base = load_base_model(prep.config, precision.name)
    model = get_peft_model(base, lora_config(prep.config.lora, base))
    t = prep.config.train
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=NAIVE_BATCH, num_train_epochs=1,
                             learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, seed=t.seed,
                             bf16=precision.bf16, fp16=precision.fp16, use_cpu=not cuda, save_strategy="no",
                             report_to="none", logging_steps=10_000, disable_tqdm=True, group_by_length=False,
                             dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator)
    return {**timed_train(trainer, cuda), "precision": precision.detail}


def run_phase(args: argparse.Namespace, tmp: Path, cuda: bool) -> int:
    """``--phase``: one ``--precisions`` row in this process, written to ``--json`` (what the parent reads)."""
    from spantune.errors import SpantuneError
    from spantune.train import mixed_precision, prepare

    label, name, shared, compiled, _ = next(p for p in RECIPE_PHASES if p[0] == args.phase)
    cfg = recipe_config(args.model, args.data, args.recipe_examples or args.examples, args.threads, name)
    cfg.train.shared_prefix, cfg.train.compile = shared, compiled
    try:
        precision = mixed_precision(cfg)
    except SpantuneError as exc:
        Path(args.json).write_text(json.dumps({"skipped": str(exc)}))
        return 0
    try:
        prep = prepare(cfg, tmp / "run", resume=False)
    except SpantuneError as exc:
        print(f"train_throughput: error: {exc}", file=sys.stderr)
        return 1
    row = run_spantune(prep, tmp / "out", precision, cuda)
    row["useful_tokens"] = sum(len(e.input_ids) for e in prep.train_encoded)
    Path(args.json).write_text(json.dumps(row))
    return 0


def phase_in_child(args: argparse.Namespace, label: str, tmp: Path) -> dict[str, Any]:
    """One ``--precisions`` row trained by a fresh Python process (same model, data, examples and threads), started
    on the row's allocator as the ``spantune`` command starts itself (:mod:`spantune.allocator`)."""
    from spantune import allocator
    from spantune.errors import SpantuneError

    choice = next(p[4] for p in RECIPE_PHASES if p[0] == label)
    started = {**os.environ, allocator.ENV: choice}
    if choice == "system":
        started.pop("LD_PRELOAD", None)
    env = allocator.preload_env(started) or started
    out = tmp / f"{label.replace(' ', '-')}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", label, "--model", args.model, "--data",
           args.data, "--examples", str(args.examples), "--json", str(out)]
    cmd += ["--recipe-examples", str(args.recipe_examples)] if args.recipe_examples else []
    cmd += ["--threads", str(args.threads)] if args.threads else []
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SpantuneError(f"the {label!r} phase failed (exit {proc.returncode}): {tail[0]}")
    return json.loads(out.read_text())


def run_precisions(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, Any]]:
    """The CPU recipe's rows, each in a child process, ``--repeats`` rounds (every other one in reverse order); a
    precision the machine lacks is reported, not run. A row's numbers are the medians over its rounds, and
    ``rounds`` keeps each round's row; ``ratios`` holds, for each fp32 row run (:data:`BASELINES`), each round's
    rates over that round's fp32 row."""
    labels = [p[0] for p in RECIPE_PHASES if args.rows is None or p[0] in {"recipe fp32", *args.rows}]
    baselines = [b for b in BASELINES if b in labels]
    rounds: list[dict[str, dict[str, Any]]] = []
    skipped: set[str] = set()
    for n in range(args.repeats):
        done: dict[str, dict[str, Any]] = {}
        for label in labels if n % 2 == 0 else labels[::-1]:
            if label in skipped:
                continue
            row = phase_in_child(args, label, tmp)
            if "skipped" in row:
                print(f"{label}: skipped: {row['skipped']}")
                skipped.add(label)
                continue
            done[label] = row
        rounds.append(done)
    rows: dict[str, dict[str, Any]] = {}
    for label in labels:
        if label in skipped:
            continue
        each = [r[label] for r in rounds]
        row = {**each[0], "rounds": each}
        for key in ("seconds", "cpu_seconds", "peak_bytes", "steady_tokens_per_s", "median_step_tokens_per_s"):
            values = [r[key] for r in each if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        row["ratios"] = {base: {key: [r[label][key] / r[base][key] for r in rounds
                                      if r[label].get(key) and r[base].get(key)]
                                for _, key in STEADY_RATES}
                         for base in baselines if base != label}
        rows[label] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="hub id, model folder or 'embedded'")
    parser.add_argument("--data", default="data/train.jsonl", help="span JSONL (the first --examples are used)")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quant-aware", action="store_true", help="also time quant-aware training")
    parser.add_argument("--precisions", action="store_true", help="also time the CPU recipe at fp32 and bf16")
    parser.add_argument("--recipe-examples", type=int, default=None,
                        help="examples for the --precisions phases (default: --examples)")
    parser.add_argument("--rows", default=None,
                        help="--precisions rows to run besides fp32, comma-separated (e.g. bf16,bf16+compile+prefix; "
                             "default: all)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the --precisions rows (default 1)")
    parser.add_argument("--phase", choices=[p[0] for p in RECIPE_PHASES], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.phase and not args.json:
        parser.error("--phase writes its row to --json, which is missing")
    if args.rows:  # as row labels
        args.rows = [f"recipe {r.strip()}" for r in args.rows.split(",")]
        unknown = [r.removeprefix("recipe ") for r in args.rows if r not in {p[0] for p in RECIPE_PHASES}]
        if unknown:
            known = sorted(p[0].removeprefix("recipe ") for p in RECIPE_PHASES)
            parser.error(f"--rows: unknown {', '.join(unknown)} (choose from {', '.join(known)})")

    import torch

    from spantune.errors import SpantuneError
    from spantune.train import cpu_bf16, load_split, mixed_precision, prepare

    if not args.phase:  # a --precisions child allocates as spantune train does
        return_freed_memory_to_os()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    if args.phase:
        with tempfile.TemporaryDirectory() as tmp:
            return run_phase(args, Path(tmp), cuda)
    cfg = base_config(args.model, args.data, args.examples, args.threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prep = prepare(cfg, Path(tmp) / "run", resume=False)
            precision = mixed_precision(cfg)
            examples = load_split(cfg.data.train, "data.train", cfg.data).examples[: args.examples]
            ours = run_spantune(prep, Path(tmp) / "ours", precision, cuda)
            naive = run_naive(prep, examples, Path(tmp) / "naive", precision, cuda)
            if args.quant_aware:
                prep.config.quant_aware.enabled, prep.config.lora.dropout = True, 0.0
                quant_aware = run_spantune(prep, Path(tmp) / "quant_aware", mixed_precision(prep.config), cuda)
            recipe = run_precisions(args, Path(tmp)) if args.precisions else {}
    except SpantuneError as exc:
        print(f"train_throughput: error: {exc}", file=sys.stderr)
        return 1

    useful = sum(len(e.input_ids) for e in prep.train_encoded)  # real tokens, the same for both
    rows = {"spantune": ours, "naive": naive, **({"quant-aware": quant_aware} if args.quant_aware else {}), **recipe}
    for r in rows.values():
        r["useful_tokens_per_s"] = r.get("useful_tokens", useful) / r["seconds"]
        r["useful_tokens_per_cpu_s"] = r.get("useful_tokens", useful) / r["cpu_seconds"]
    speedup = ours["useful_tokens_per_s"] / naive["useful_tokens_per_s"]
    cpu_speedup = ours["useful_tokens_per_cpu_s"] / naive["useful_tokens_per_cpu_s"]
    memory_ratio = naive["peak_bytes"] / ours["peak_bytes"] if ours["peak_bytes"] > 0 else math.inf
    device = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    native = cpu_bf16()
    print(f"model {args.model}, {len(examples)} examples ({useful} useful tokens), {device}; "
          f"CPU native bf16: {native or 'none'}")
    print(f"{'':26} {'steps':>6} {'wall s':>8} {'CPU s':>8} {'useful tok/s':>13} {'steady tok/s':>13} "
          f"{'median step tok/s':>18} {'tok/CPU-s':>10} {'peak MiB':>9}  precision, allocator")
    for name, r in rows.items():
        steady, median = ("-" if r.get(k) is None else f"{r[k]:.1f}"
                          for k in ("steady_tokens_per_s", "median_step_tokens_per_s"))
        print(f"{name:26} {r['steps']:>6} {r['seconds']:>8.1f} {r['cpu_seconds']:>8.1f} "
              f"{r['useful_tokens_per_s']:>13.1f} {steady:>13} {median:>18} {r['useful_tokens_per_cpu_s']:>10.1f} "
              f"{r['peak_bytes'] / 2**20:>9.0f}  {r['precision']}, {r['allocator']} malloc")
    print(f"useful tokens/s: spantune / naive = {speedup:.2f}x (target >= 2x); per CPU-second {cpu_speedup:.2f}x")
    print(f"peak memory: naive / spantune = {memory_ratio:.2f}x")
    if args.quant_aware:
        print(f"quant-aware cost: spantune / quant-aware useful tokens/s = "
              f"{ours['useful_tokens_per_s'] / quant_aware['useful_tokens_per_s']:.2f}x, peak memory "
              f"{quant_aware['peak_bytes'] / max(ours['peak_bytes'], 1):.2f}x")
    for label, faster in recipe.items():
        for base, ratios in faster["ratios"].items():
            slow = recipe[base]
            steady_ratio = "".join(
                f", {what} {statistics.median(ratios[key]):.2f}x"
                + (f" (rounds: {', '.join(f'{x:.2f}' for x in ratios[key])})" if args.repeats > 1 else "")
                for what, key in STEADY_RATES if ratios[key])
            print(f"{label} / {base.removeprefix('recipe ')}: useful tokens/s "
                  f"{faster['useful_tokens_per_s'] / slow['useful_tokens_per_s']:.2f}x (target >= 2x){steady_ratio}, "
                  "per CPU-second "
                  f"{faster['useful_tokens_per_cpu_s'] / slow['useful_tokens_per_cpu_s']:.2f}x, "
                  f"peak memory {faster['peak_bytes'] / max(slow['peak_bytes'], 1):.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "examples": len(examples), "device": device,
                                               "cpu_bf16": native, "useful_tokens": useful, **rows,
                                               "speedup": speedup, "cpu_speedup": cpu_speedup,
                                               "memory_ratio": memory_ratio}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
