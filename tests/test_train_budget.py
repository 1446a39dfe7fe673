"""A time budget fits the learning-rate schedule: a slower machine trains fewer steps that still anneal.

The callback is driven step by step with a simulated clock (1 s per step, 30 s per evaluation), so the test
checks the arithmetic and the schedule, not the speed of the machine it runs on."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
import torch
from transformers import get_constant_schedule, get_cosine_schedule_with_warmup

from spantune.train.callbacks import GracefulStop, QuantAwareStart, fit_schedule, saved_schedule_end

LR = 1e-3


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scheduler(max_steps: int = 1000) -> torch.optim.lr_scheduler.LambdaLR:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=10, num_training_steps=max_steps)


def _lr(scheduler: torch.optim.lr_scheduler.LambdaLR) -> float:
    return scheduler.optimizer.param_groups[0]["lr"]


def _run(budget_s: float, max_steps: int = 1000, eval_every: int = 200,
         step_s: Callable[[int], float] = lambda step: 1.0) -> tuple[GracefulStop, list[float], float, int]:
    """Simulate a run: step ``n`` takes ``step_s(n)`` seconds, an evaluation 30 s after every ``eval_every``-th step
    and at a budget stop. Returns the callback, the learning rate of every step, when the run (last evaluation
    included) ended and at which step; ``stopper.ends`` records the fitted end after every step."""
    clock = Clock()
    stopper = GracefulStop(clock.now + budget_s, clock=clock)
    scheduler = _scheduler(max_steps)
    args = SimpleNamespace(eval_strategy="steps", output_dir="unused")
    state = SimpleNamespace(global_step=0, max_steps=max_steps, eval_steps=eval_every)
    rates = []
    stopper.ends = []
    for step in range(1, max_steps + 1):
        control = SimpleNamespace(should_save=False, should_evaluate=False, should_training_stop=False)
        stopper.on_step_begin(args, state, control)
        rates.append(_lr(scheduler))
        clock.now += step_s(step)
        scheduler.optimizer.step()
        scheduler.step()
        state.global_step = step
        stopper.on_step_end(args, state, control, lr_scheduler=scheduler)
        stopper.ends.append(stopper.end)
        if step % eval_every == 0 or control.should_evaluate:
            clock.now += 30.0
        if control.should_training_stop:
            assert control.should_save and control.should_evaluate
            break
    return stopper, rates, clock.now, step


def test_a_short_budget_ends_the_schedule_early_and_the_run_inside_it() -> None:
    budget = 500.0
    stopper, rates, ended, step = _run(budget)
    start = 1000.0
    # 210 steps and an evaluation are spent when the first evaluation's cost is known; 200 more steps, the
    # evaluation at 400 and the last one fit the 260 s left: n + 2 x 30 <= 260
    assert stopper.end == step == 410
    assert stopper.out_of_time
    assert ended - start <= budget
    assert rates[-1] < 0.01 * LR, "the schedule annealed by the fitted end"
    assert max(rates) == pytest.approx(LR)


def test_the_end_moves_later_when_the_steps_speed_up() -> None:
    """A slow stretch (2 s steps, e.g. a busy shared machine) then 1 s steps: the end first moves early, then
    later again as the fast steps fill the window, and the run still ends inside the budget, annealed."""
    budget = 1000.0
    stopper, rates, ended, step = _run(budget, step_s=lambda n: 2.0 if n <= 300 else 1.0)
    earliest = min(e for e in stopper.ends if e is not None)
    assert earliest < 480, "the slow steps moved the end early"
    assert stopper.end == step >= earliest + 100, "the fast steps gave the time back"
    assert stopper.out_of_time and ended - 1000.0 <= budget
    assert rates[-1] < 0.01 * LR


def test_a_budget_every_step_fits_changes_nothing() -> None:
    stopper, rates, _, step = _run(budget_s=10_000.0)
    assert stopper.end is None and step == 1000 and not stopper.out_of_time
    reference = _scheduler()
    expected = []
    for _ in range(1000):
        expected.append(_lr(reference))
        reference.optimizer.step()
        reference.step()
    assert rates == expected


def test_a_schedule_that_does_not_depend_on_its_length_is_left_alone() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    assert not fit_schedule(get_constant_schedule(optimizer), 10)
    assert fit_schedule(_scheduler(), 10)


def test_the_fitted_end_is_saved_with_the_checkpoint_and_resumed(tmp_path: Path) -> None:
    stopper = GracefulStop(deadline=None, end=410)
    (tmp_path / "checkpoint-300").mkdir()
    state = SimpleNamespace(global_step=300, max_steps=1000)
    stopper.on_save(SimpleNamespace(output_dir=str(tmp_path)), state, None)
    assert saved_schedule_end(str(tmp_path / "checkpoint-300")) == 410
    assert saved_schedule_end(None) is None and saved_schedule_end(str(tmp_path)) is None

    resumed, fitted = _scheduler(), _scheduler(410)
    for scheduler in (resumed, fitted):  # as a resumed scheduler: stepped to 300
        for _ in range(300):
            scheduler.optimizer.step()
            scheduler.step()
    stopper = GracefulStop(deadline=None, end=410)  # resumed without a budget: the curve still ends there
    stopper.on_train_begin(None, state, None, lr_scheduler=resumed)
    assert _lr(resumed) == pytest.approx(_lr(fitted))
    state.global_step = 410
    control = SimpleNamespace(should_save=False, should_evaluate=False, should_training_stop=False)
    stopper.on_step_end(SimpleNamespace(eval_strategy="steps"), state, control, lr_scheduler=resumed)
    assert control.should_training_stop and control.should_save


def test_quant_aware_training_starts_as_many_steps_before_the_fitted_end() -> None:
    grid = SimpleNamespace(on=False)
    grid.enable = lambda: setattr(grid, "on", True)
    qa = QuantAwareStart(grid, start_step=900, stopper=GracefulStop(deadline=None, end=410))
    state = SimpleNamespace(global_step=309, max_steps=1000)
    qa.on_step_begin(None, state, None)
    assert not grid.on
    state.global_step = 310
    qa.on_step_begin(None, state, None)
    assert grid.on
