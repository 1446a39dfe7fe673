"""Small span datasets and configs for the training tests (tiny random model, seconds per run)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = ["I", "She", "We", "They", "He", "You", "The cat", "My friends"]
EDITS = [("has", "have"), ("are", "is"), ("was", "were"), ("goes", "go"), ("dont", "don't"), ("teh", "the"),
         ("recieve", "receive"), ("its", "it's"), ("their", "there"), ("buyed", "bought")]


def span_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Deterministic span examples, ~20 % no-ops, in the shape the data stage writes."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        wrong, right = rng.choice(EDITS)
        if rng.random() < 0.2:
            right = wrong
        rows.append({"id": f"s{seed}-{i}", "ctx_before": f"{rng.choice(SUBJECTS)} said that",
                     "span_in": f" {wrong}", "ctx_after": " fine today.", "span_out": f" {right}",
                     "tags": ["agreement"]})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_config(tmp: Path, model_dir: Path, n_train: int = 64, n_eval: int = 16, **sections: dict) -> Path:
    """A recipe YAML for the tiny model; ``sections`` update the defaults below key by key."""
    data = {
        "model": {"name": str(model_dir)},
        "data": {"train": str(write_jsonl(tmp / "train.jsonl", span_rows(n_train, 1))),
                 "eval": str(write_jsonl(tmp / "eval.jsonl", span_rows(n_eval, 2)))},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["all-linear"]},
        "train": {"learning_rate": 1e-2, "max_steps": 12, "batch_size": 4, "logging_steps": 2, "save_steps": 4,
                  "threads": 1, "warmup_ratio": 0.0},
        "eval": {"steps": 4, "sample": 4, "loss_examples": 8, "max_new_tokens": 6, "patience": 0},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def cli_env() -> dict[str, str]:
    """Environment for a ``python -m spantune`` child: one thread, no GPU, quiet hub."""
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def spantune_proc(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spantune", *args], env=cli_env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def adapter_tensors(run_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def loss_and_grads(trainer: Any, batch: dict[str, Any], bf16: bool = False) -> tuple[Any, dict[str, Any]]:
    """The trainer's loss on ``batch`` and every trainable parameter's gradient (under bf16 autocast, as the Trainer
    runs its bf16 mode, if asked)."""
    import torch

    model = trainer.model
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = trainer.compute_loss(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def train_mode_with_nonzero_lora_b(trainer: Any) -> Any:
    """The trainer's model in train mode with LoRA B drawn at random (seeded): B starts at 0, which would zero A's
    gradients and make gradient comparisons vacuous."""
    import torch

    model = trainer.model.train()
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(std=0.05)
    return model
