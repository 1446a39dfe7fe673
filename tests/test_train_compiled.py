"""Regional compilation for training: every decoder layer compiled, the same loss and gradients as eager,
evaluations eager, and a CLI run that trains, evaluates and saves with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_helpers import adapter_tensors, loss_and_grads, metrics, train_mode_with_nonzero_lora_b, write_config

from spantune.cli import main
from spantune.config import load_config
from spantune.errors import SpantuneError
from spantune.train import TrainConfig, check_values


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Compiled graphs are process-wide; start and end each test without them."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_compiled_layers_give_the_eager_loss_and_gradients_and_evaluate_eagerly(tmp_path: Path, tiny_model_dir: Path,
                                                                               shared_prefix: bool) -> None:
    from torch._dynamo.utils import counters

    from spantune.train import build_trainer, prepare, sft_config
    from spantune.train.compiled import decoder_layers, eager

    cfg = load_config(TrainConfig, write_config(tmp_path, tiny_model_dir, lora={"dropout": 0.0},
                                                train={"compile": True, "shared_prefix": shared_prefix}))
    prep = prepare(cfg, tmp_path / "run", resume=False)
    trainer = build_trainer(prep, sft_config(prep.config, tmp_path / "run", False, False, True), "fp32")
    layers = decoder_layers(trainer.model)
    assert layers and all(layer._compiled_call_impl is not None for layer in layers)
    model = train_mode_with_nonzero_lora_b(trainer)
    batches = iter(trainer.get_train_dataloader())
    compiled = []
    for batch in (dict(next(batches)), dict(next(batches))):
        loss, grads = loss_and_grads(trainer, batch)
        compiled.append(counters["stats"]["unique_graphs"])
        with eager():
            eager_loss, eager_grads = loss_and_grads(trainer, batch)
        assert torch.allclose(loss, eager_loss, rtol=1e-4, atol=1e-5)
        assert grads.keys() == eager_grads.keys()
        assert all(torch.allclose(grads[n], eager_grads[n], rtol=1e-3, atol=1e-5) for n in grads)
    assert compiled[0] > 0 and compiled[1] == compiled[0]  # compiled on the first batch, reused (dynamic shapes)
    graphs = counters["stats"]["unique_graphs"]
    model.eval()
    trainer.evaluate()
    assert counters["stats"]["unique_graphs"] == graphs  # the eval loss ran the layers eagerly


def test_compile_refuses_what_it_cannot_combine_with() -> None:
    for section, key in (("quant_aware", "enabled"), ("model", "gradient_checkpointing")):
        cfg = TrainConfig()
        cfg.train.compile, cfg.lora.dropout = True, 0.0
        setattr(getattr(cfg, section), key, True)
        with pytest.raises(SpantuneError, match=f"train.compile: cannot be combined with {section}.{key}"):
            check_values(cfg)


def test_compiled_cli_run_trains_evaluates_and_saves(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    cfg = write_config(tmp_path, tiny_model_dir, train={"compile": True})
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "torch.compile: 2 decoder layers" in out
    assert json.loads((run / "run_info.json").read_text())["config"]["train"]["compile"] is True
    evals = [r for r in metrics(run) if "eval_exact_match" in r]
    assert len(evals) == 3
    assert adapter_tensors(run) and all("lora_" in name for name in adapter_tensors(run))
