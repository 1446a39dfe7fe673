"""Interrupted training: SIGKILL then --resume ends where an uninterrupted run ends; Ctrl-C saves."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from train_helpers import adapter_tensors, metrics, spantune_proc, write_config

#: Resumed vs uninterrupted adapter weights. CPU runs replay the same batches, dropout masks and
#: optimizer state, so they agree to float32 rounding; this bound leaves room for a different
#: summation order after a restart and nothing more.
RESUME_ATOL = 1e-5


def _wait_for(predicate, proc, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}:\n{proc.stdout.read()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _finish(proc, timeout: float = 300.0) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _complete_checkpoints(run: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*")
                  if (p / "trainer_state.json").is_file())


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    # eval on, so resuming also restores the best-checkpoint bookkeeping; the adapter compared is the best
    cfg = write_config(tmp_path, tiny_model_dir, n_train=96,
                       train={"max_steps": 60, "save_steps": 10, "logging_steps": 5}, eval={"steps": 10})
    full, killed = tmp_path / "full", tmp_path / "killed"

    rc, out = _finish(spantune_proc("train", "--config", str(cfg), "--out", str(full)))
    assert rc == 0, out

    proc = spantune_proc("train", "--config", str(cfg), "--out", str(killed))
    _wait_for(lambda: _complete_checkpoints(killed) if (killed / "checkpoints").exists() else False,
              proc, what="the first checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "adapter").exists(), "the run must be killed mid-way for this test to mean anything"
    stopped_at = max(_complete_checkpoints(killed))
    assert stopped_at < 60

    rc, out = _finish(spantune_proc("train", "--config", str(cfg), "--out", str(killed), "--resume"))
    assert rc == 0, out
    a, b = adapter_tensors(full), adapter_tensors(killed)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= RESUME_ATOL, worst
    # metrics.jsonl has each step once: rows the killed process logged after its checkpoint were dropped
    steps = [r["step"] for r in metrics(killed) if "loss" in r]
    assert steps == sorted(set(steps)) == [r["step"] for r in metrics(full) if "loss" in r]
    best_full = json.loads((full / "checkpoints" / "checkpoint-60" / "trainer_state.json").read_text())
    best_killed = json.loads((killed / "checkpoints" / "checkpoint-60" / "trainer_state.json").read_text())
    assert best_full["best_global_step"] == best_killed["best_global_step"]


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = write_config(tmp_path, tiny_model_dir, train={"max_steps": 150, "save_steps": 1000, "logging_steps": 1},
                       eval={"steps": 0})
    run = tmp_path / "run"
    proc = spantune_proc("train", "--config", str(cfg), "--out", str(run))
    _wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size > 0, proc,
              what="the first logged step")
    proc.send_signal(signal.SIGINT)
    rc, out = _finish(proc)
    assert rc == 130, out
    assert "checkpoint saved" in out and "--resume" in out
    saved = _complete_checkpoints(run)
    assert len(saved) == 1 and 0 < saved[0] < 150, saved  # saved at the interrupted step, not a save_steps one
    assert not (run / "adapter").exists()

    # resuming under another config would silently mix two recipes
    rc, out = _finish(spantune_proc("train", "--config", str(cfg), "--out", str(run), "--resume",
                                    "--train.learning_rate", "0.5"))
    assert rc == 1
    assert out.strip().splitlines()[-1].startswith("spantune: error: --resume with a different config")
    assert "train.learning_rate" in out

    rc, out = _finish(spantune_proc("train", "--config", str(cfg), "--out", str(run), "--resume"))
    assert rc == 0, out
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert max(_complete_checkpoints(run)) == 150
