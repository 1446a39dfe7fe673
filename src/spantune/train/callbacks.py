"""Trainer callbacks: generation-based evaluation, metrics.jsonl with tokens/s, graceful stops.

Each works the same in one process and under ``accelerate launch`` (DDP): decisions that change the
training loop (stop, early stop) are made identically on every rank, files are written by rank 0.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from spantune.io import write_json
from spantune.schema import SpanExample

#: Generation metrics logged during training (definitions: spantune.evaluate.metrics).
GENERATION_METRICS = ("exact_match", "chrf", "verbose_rate", "noop_false_edit_rate", "missed_fix_rate",
                      "fallback_rate", "levenshtein")


def _dist() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class GenerationEval(TrainerCallback):
    """At every evaluation, correct a fixed sample of the eval split greedily and add the scores.

    Spans are decoded ``batch_size`` at a time (:meth:`~spantune.infer.torch_backend.TorchCorrector.correct_batch`):
    2.2x faster than one at a time on 2 CPU cores, the same answer on 254 of 256 real-dev spans and the same exact
    match (benchmarks/RESULTS.md), which is what choosing a checkpoint needs; one at a time under FSDP.

    The scores are added to the evaluation's ``metrics`` dict in place: the Trainer hands that same
    dict to the callbacks that follow (metrics.jsonl, early stopping) and uses it to pick the best
    checkpoint, so ``metric_for_best_model`` can be ``exact_match``. Under DDP each rank decodes a
    slice of the sample and the predictions are gathered, so every rank sees the same scores. Under
    FSDP (``shard=False``) every forward is a collective, so every rank decodes the whole sample.
    """

    def __init__(self, examples: Sequence[SpanExample], tokenizer: Any, max_new_tokens: int, batch_size: int,
                 shard: bool = True) -> None:
        self.examples = list(examples)
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.shard = shard

    def predict(self, model: Any) -> list[Any]:
        """Predictions for the whole sample, in sample order, on every rank."""
        import torch.distributed as dist

        from spantune.infer.torch_backend import TorchCorrector

        rank, world = _dist() if self.shard else (0, 1)
        was_training = model.training
        model.eval()
        try:
            corrector = TorchCorrector(model, self.tokenizer, max_new_tokens=self.max_new_tokens)
            mine = (corrector.correct_batch(self.examples[rank::world], self.batch_size) if self.shard
                    # FSDP: generate() runs the unwrapped model, past the root unit that gathers its shards
                    else [corrector.correct(ex) for ex in self.examples])
        finally:
            model.train(was_training)
        if world == 1:
            return mine
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, mine)
        ordered: list[Any] = [None] * len(self.examples)
        for r, part in enumerate(parts):
            ordered[r::world] = part
        return ordered

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    model: Any = None, **kwargs: Any) -> None:
        from spantune.evaluate.metrics import compute_metrics

        if metrics is None or model is None or not self.examples:
            return
        scores = compute_metrics(self.examples, self.predict(model))
        metrics.update({f"eval_{k}": scores[k] for k in GENERATION_METRICS if scores.get(k) is not None})


class MetricsLog(TrainerCallback):
    """Append training logs and whole evaluations to ``metrics.jsonl``; add ``tokens_per_s``.

    tokens/s counts the non-padding tokens TRL reports (``num_tokens``, summed over ranks) over the
    time spent inside optimizer steps only, so evaluation and checkpointing do not dilute it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._step_start = 0.0
        self._step_time = 0.0
        self._tokens_at_last_log = 0.0

    def _append(self, state: Any, record: dict[str, Any]) -> None:
        if not state.is_world_process_zero:
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **record}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._tokens_at_last_log = 0.0  # TRL counts tokens from 0 in every process, resumed ones too

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_time += time.perf_counter() - self._step_start

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not logs or any(k.startswith("eval_") for k in logs):
            return  # evaluations are written whole by on_evaluate, generation scores included
        record = dict(logs)
        tokens = logs.get("num_tokens")
        if tokens is not None:
            if self._step_time > 0:
                record["tokens_per_s"] = round((tokens - self._tokens_at_last_log) / self._step_time, 2)
            self._tokens_at_last_log = tokens
            self._step_time = 0.0
        self._append(state, record)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        if metrics:
            self._append(state, dict(metrics))


#: The fitted end of a schedule, kept in each checkpoint so a resumed run goes on along the same curve.
SCHEDULE_END_FILE = "schedule_end.json"


def saved_schedule_end(checkpoint: str | None) -> int | None:
    """The fitted end a checkpoint was saved with (None: none was fitted, or no checkpoint)."""
    path = Path(checkpoint) / SCHEDULE_END_FILE if checkpoint else None
    return json.loads(path.read_text(encoding="utf-8"))["end"] if path and path.is_file() else None


def fit_schedule(scheduler: Any, end: int) -> bool:
    """Make a length-dependent learning-rate schedule (cosine, linear, ...) end at step ``end``; False where the
    schedule does not depend on its length (constant). The rate of the coming step is set at once."""
    import functools

    sched = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps it
    lambdas = getattr(sched, "lr_lambdas", None)
    if not lambdas or not all(isinstance(f, functools.partial) and "num_training_steps" in f.keywords
                              for f in lambdas):
        return False
    sched.lr_lambdas = [functools.partial(f.func, *f.args, **{**f.keywords, "num_training_steps": end})
                        for f in lambdas]
    sched._last_lr = [base * f(sched.last_epoch) for base, f in zip(sched.base_lrs, sched.lr_lambdas)]
    for group, lr in zip(sched.optimizer.param_groups, sched._last_lr):
        group["lr"] = lr
    return True


class GracefulStop(TrainerCallback):
    """Stop at the end of a step, with a checkpoint, on Ctrl-C or when the time budget is spent.

    With a time budget, the learning-rate schedule is fitted to it: from the measured cost of a step and of
    an evaluation, the run predicts how many steps fit before ``deadline`` (one last evaluation included) and,
    if fewer than ``max_steps``, moves the schedule's end there, so a slower machine trains a shorter run that
    still anneals instead of one cut off at a high learning rate. If the steps speed up again (a shared machine's
    load drops), the end moves later by at least ``max_steps // 50`` steps at a time, up to ``max_steps``, so a
    slow stretch does not cost the rest of the budget; on a machine fast enough for every step nothing changes.
    The time budget (the fitted end or the deadline) also triggers a last evaluation, so the best-checkpoint
    choice sees the final weights; Ctrl-C only saves. Under DDP the ranks agree (max over ranks for flags, min
    for the end) before acting.
    """

    FIT_EVERY = 10  #: steps between predictions
    SKIP = 5  #: first timed steps left out (compilation, warm caches)
    WINDOW = 100  #: latest steps whose median cost predicts the rest

    def __init__(self, deadline: float | None, clock: Any = time.time, end: int | None = None) -> None:
        self.deadline = deadline
        self.clock = clock
        self.end = end  #: the fitted last step (None: the configured max_steps)
        self.interrupted = False
        self.out_of_time = False
        self.step_costs: list[float] = []  #: seconds per training step, evaluations left out
        self.pause = 0.0  #: the longest time between two steps so far (an evaluation and its checkpoint)
        self._began: float | None = None
        self._ended: float | None = None

    def request_interrupt(self) -> None:
        self.interrupted = True

    def on_train_begin(self, args: Any, state: Any, control: Any, lr_scheduler: Any = None, **kwargs: Any) -> None:
        if self.end is not None and lr_scheduler is not None:
            fit_schedule(lr_scheduler, self.end)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._began = self.clock()
        if self._ended is not None:
            self.pause = max(self.pause, self._began - self._ended)

    def on_step_end(self, args: Any, state: Any, control: Any, lr_scheduler: Any = None, **kwargs: Any) -> None:
        self._ended = self.clock()
        if self._began is not None:
            self.step_costs.append(self._ended - self._began)
        if self.deadline is not None and state.global_step % self.FIT_EVERY == 0:
            self._fit(args, state, lr_scheduler)
        late = ((self.deadline is not None and self.clock() >= self.deadline)
                or (self.end is not None and state.global_step >= self.end))
        interrupted, late = (bool(v) for v in self._agree(self.interrupted, late))
        if interrupted:
            self.interrupted = True
            control.should_save = True
            control.should_training_stop = True
        elif late:
            self.out_of_time = True
            control.should_save = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.end is not None and _dist()[0] == 0:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                write_json(folder / SCHEDULE_END_FILE, {"end": self.end})

    def predict_end(self, step: int, max_steps: int, eval_every: int | None) -> int | None:
        """The last step that fits before the deadline at the measured costs; None if every step fits or too
        few steps have been timed."""
        timed = self.step_costs[self.SKIP:]
        if self.deadline is None or len(timed) < self.FIT_EVERY:
            return None
        window = sorted(timed[-self.WINDOW:])
        per_step = window[len(window) // 2]
        left = self.deadline - self.clock()

        def cost(n: int) -> float:  # n more steps, the evaluations due after steps step..step+n-1, the last one
            evals = 1 + (((step + n - 1) // eval_every - (step - 1) // eval_every) if eval_every else 0)
            return n * per_step + evals * self.pause

        if cost(max_steps - step) <= left:
            return None
        low, high = 0, max_steps - step  # the most steps whose cost fits
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if cost(mid) <= left else (low, mid - 1)
        return step + low

    def _fit(self, args: Any, state: Any, lr_scheduler: Any) -> None:
        eval_every = state.eval_steps if args.eval_strategy != "no" and state.eval_steps else None
        end = self.predict_end(state.global_step, state.max_steps, eval_every)
        end = int(self._agree(end if end is not None else state.max_steps, op="min")[0])
        told = self.end
        step_up = max(1, state.max_steps // 50)  # later only by this much: no jitter from step to step
        if end >= (told or state.max_steps) and not (told is not None and end - told >= step_up):
            return
        self.end = end
        rescaled = lr_scheduler is not None and fit_schedule(lr_scheduler, end)
        if (told is None or abs(told - end) >= step_up) and _dist()[0] == 0:
            fits = "fit" if end == state.max_steps else "would not fit"
            print(f"\ntime budget (train.max_minutes): {state.max_steps:,} steps {fits}; training ends at step "
                  f"{end:,}" + (" and its learning-rate schedule with it" if rescaled else ""), flush=True)

    @staticmethod
    def _agree(*values: float, op: str = "max") -> tuple[float, ...]:
        """The same values on every rank: their max (flags: any rank's request) or min over ranks."""
        if _dist()[1] == 1:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values])
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.MIN)
        return tuple(t.tolist())


@contextmanager
def sigint_saves(stopper: GracefulStop) -> Iterator[None]:
    """First Ctrl-C asks ``stopper`` for a checkpoint-and-stop; a second one interrupts at once."""
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        print("\nspantune: Ctrl-C — saving a checkpoint at the end of this step (Ctrl-C again to abort)",
              flush=True)
        stopper.request_interrupt()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class QuantAwareStart(TrainerCallback):
    """Switch quant-aware training on at ``start_step`` (also when a resumed run is already past it), or as many steps
    before a schedule end fitted to the time budget."""

    def __init__(self, grid: Any, start_step: int, stopper: GracefulStop | None = None) -> None:
        self.grid, self.start_step, self.stopper = grid, start_step, stopper

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        start = self.start_step
        if self.stopper is not None and self.stopper.end is not None:  # as many steps before the fitted end
            start -= state.max_steps - self.stopper.end
        if state.global_step >= start:
            self.grid.enable()
