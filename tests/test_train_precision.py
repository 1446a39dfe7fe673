"""Training precision: bf16 where the CPU computes it natively (detection mocked), fp32 adapters either way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_helpers import adapter_tensors, loss_and_grads, metrics, train_mode_with_nonzero_lora_b, write_config

from spantune.cli import main
from spantune.config import load_config
from spantune.errors import SpantuneError
from spantune.train import TrainConfig, cpu_bf16, mixed_precision

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU precision rules; this machine has CUDA")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _cpu(monkeypatch, avx512_bf16: bool, amx: bool = False) -> None:
    """Pretend the CPU has (or lacks) the bf16 instructions torch's probes report."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)


def _cfg(precision: str = "auto", quant_aware: bool = False) -> TrainConfig:
    cfg = TrainConfig()
    cfg.model.precision, cfg.quant_aware.enabled = precision, quant_aware
    return cfg


def test_capability_comes_from_torchs_probes(monkeypatch) -> None:
    _cpu(monkeypatch, avx512_bf16=False)
    assert cpu_bf16() is None
    _cpu(monkeypatch, avx512_bf16=True)
    assert cpu_bf16() == "avx512_bf16"
    _cpu(monkeypatch, avx512_bf16=True, amx=True)
    assert cpu_bf16() == "amx"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # an older torch without the probe
    assert cpu_bf16() == "avx512_bf16"


def test_auto_is_fp32_without_native_bf16_and_bf16_is_refused(monkeypatch) -> None:
    _cpu(monkeypatch, avx512_bf16=False)
    p = mixed_precision(_cfg())
    assert (p.name, p.bf16, p.detail) == ("fp32", False, "fp32 (cpu without native bf16)")
    with pytest.raises(SpantuneError, match=r"^config key model\.precision: bf16 needs a CUDA GPU or a CPU with "
                                            r"native bf16 \(AVX512-BF16 or AMX\), which this CPU lacks"):
        mixed_precision(_cfg("bf16"))
    with pytest.raises(SpantuneError, match=r"^config key model\.precision: fp16 needs a CUDA GPU"):
        mixed_precision(_cfg("fp16"))


def test_auto_is_bf16_with_native_bf16_but_not_for_quant_aware(monkeypatch) -> None:
    _cpu(monkeypatch, avx512_bf16=True)
    p = mixed_precision(_cfg())
    assert p.bf16 and p.detail == "bf16 (cpu avx512_bf16: frozen weights bf16, LoRA fp32, autocast, eager attention)"
    assert mixed_precision(_cfg("bf16")) == p
    assert mixed_precision(_cfg("fp32")).name == "fp32"
    qa = mixed_precision(_cfg(quant_aware=True))
    assert qa.name == "fp32" and "quant-aware" in qa.detail
    with pytest.raises(SpantuneError, match=r"^config key model\.precision: bf16 with quant_aware\.enabled"):
        mixed_precision(_cfg("bf16", quant_aware=True))


def test_bf16_trainer_has_bf16_frozen_weights_and_fp32_lora(tmp_path: Path, tiny_model_dir: Path) -> None:
    from spantune.train import build_trainer, prepare, sft_config

    prep = prepare(load_config(TrainConfig, write_config(tmp_path, tiny_model_dir)), tmp_path / "run", resume=False)
    trainer = build_trainer(prep, sft_config(prep.config, tmp_path / "run", True, False, False), "bf16")
    trainable = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in trainer.model.parameters() if not p.requires_grad}
    assert trainable == {torch.float32} and frozen == {torch.bfloat16}


def test_bf16_loss_skips_the_adapter_input_cast_and_runs_eager_attention(tmp_path: Path, tiny_model_dir: Path,
                                                                        monkeypatch) -> None:
    """Under bf16 the loss's forward feeds each adapter its bf16 input as is: without PEFT's cast to fp32 (which
    autocast undoes) the loss and every adapter gradient are bit-identical. The CPU trainer runs eager attention,
    which differs from torch's fused kernel by bf16 rounding only."""
    from contextlib import nullcontext

    from peft.tuners.tuners_utils import BaseTunerLayer

    import spantune.train.loss as loss_module
    from spantune.train import build_trainer, prepare, sft_config

    cfg = load_config(TrainConfig, write_config(tmp_path, tiny_model_dir, lora={"dropout": 0.0}))
    prep = prepare(cfg, tmp_path / "run", resume=False)
    trainer = build_trainer(prep, sft_config(prep.config, tmp_path / "run", True, False, False), "bf16")
    model = train_mode_with_nonzero_lora_b(trainer)
    assert model.get_base_model().config._attn_implementation == "eager"
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    casts: list[bool] = []
    layers[0].register_forward_pre_hook(lambda module, args: casts.append(module.cast_input_dtype_enabled))
    batch = dict(next(iter(trainer.get_train_dataloader())))

    loss, grads = loss_and_grads(trainer, batch, bf16=True)
    assert casts and not any(casts) and all(m.cast_input_dtype_enabled for m in layers)  # off in the loss only
    casts.clear()
    monkeypatch.setattr(loss_module, "disable_input_dtype_casting", lambda model, active: nullcontext())
    cast_loss, cast_grads = loss_and_grads(trainer, batch, bf16=True)
    assert casts and all(casts)
    assert torch.equal(loss, cast_loss) and grads.keys() == cast_grads.keys()
    assert all(torch.equal(grads[n], cast_grads[n]) for n in grads)
    model.get_base_model().set_attn_implementation("sdpa")
    fused_loss, fused_grads = loss_and_grads(trainer, batch, bf16=True)
    assert torch.allclose(fused_loss, loss, rtol=2e-2)
    flat = torch.cat([g.flatten() for g in grads.values()])
    fused_flat = torch.cat([fused_grads[n].flatten() for n in grads])
    assert torch.cosine_similarity(flat, fused_flat, dim=0) > 0.99


def test_bf16_run_on_cpu_saves_fp32_adapter_and_loads_in_fp32(tmp_path: Path, tiny_model_dir: Path, monkeypatch,
                                                               capsys) -> None:
    _cpu(monkeypatch, avx512_bf16=True)  # emulated where the CPU lacks it: slower, same dtypes
    cfg = write_config(tmp_path, tiny_model_dir, model={"name": str(tiny_model_dir), "precision": "bf16"})
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0

    detail = "bf16 (cpu avx512_bf16: frozen weights bf16, LoRA fp32, autocast, eager attention)"
    assert f"precision: {detail}" in capsys.readouterr().out
    assert json.loads((run / "run_info.json").read_text())["precision"] == detail
    losses = [r["loss"] for r in metrics(run) if "loss" in r]
    assert len(losses) == 6 and all(loss == loss for loss in losses)  # no NaN
    tensors = adapter_tensors(run)
    assert tensors and {t.dtype for t in tensors.values()} == {torch.float32}
    from spantune.models import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(str(run), device="cpu")  # what eval, fix and export load
    assert {p.dtype for p in model.parameters()} == {torch.float32}
