"""`accelerate launch -m spantune train` with the shipped DDP and FSDP configs: two CPU processes over gloo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import ROOT, adapter_tensors, cli_env, metrics, write_config


@pytest.mark.parametrize("launcher", ["ddp", "fsdp"])
def test_two_processes_split_the_data_and_agree(launcher: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    # 64 examples, batch 4 per process, one epoch: 16 optimizer steps alone, 8 with two processes
    cfg = write_config(tmp_path, tiny_model_dir, n_train=64,
                       train={"max_steps": -1, "epochs": 1, "batch_size": 4, "save_steps": 4, "logging_steps": 1},
                       eval={"steps": 4, "sample": 5})
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "configs" / "accelerate" / f"{launcher}.yaml"), "--num_processes", "2", "--main_process_port", "0",
           "-m", "spantune", "train", "--config", str(cfg), "--out", str(run)]
    proc = subprocess.run(cmd, env=cli_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    state = json.loads((run / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == state["max_steps"] == 8
    assert "× 2 process(es)" in (run / "README.md").read_text()
    # both ranks wrote into one folder without clobbering: one row per logged step, one per evaluation
    rows = metrics(run)
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 9))
    evals = [r for r in rows if "eval_exact_match" in r]
    assert [r["step"] for r in evals] == [4, 8]
    # a whole adapter (FSDP gathers its shards): every LoRA matrix at full size
    tensors = adapter_tensors(run)
    assert len(tensors) == 2 * 7 * 2  # A and B, 7 linear layers, 2 decoder layers
    assert all(min(t.shape) == 8 for t in tensors.values())  # rank 8 on one side, full width on the other
