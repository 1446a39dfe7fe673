"""Quant-aware training: the PyTorch grid is onnxruntime's, LoRA trains through it, the export keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import write_config

from spantune.cli import main
from spantune.errors import SpantuneError
from spantune.export.onnx import QuantOptions, quantize_weights
from spantune.infer.onnx_backend import ACCURACY_LEVEL_KEY
from spantune.train.quant_aware import MARKER, Grid, fake_quant, snap_model, straight_through


def _gather_matmul(path: Path, embedding: np.ndarray, weight: np.ndarray) -> Path:
    """ids → Gather(embedding) → MatMul(weightᵀ): the two ops the export quantizes, with the export's layouts."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Gather", ["E", "ids"], ["h"], name="embed"),
         helper.make_node("MatMul", ["h", "W"], ["y"], name="proj/MatMul")],
        "grid", [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight.shape[0]])],
        [numpy_helper.from_array(embedding, "E"), numpy_helper.from_array(np.ascontiguousarray(weight.T), "W")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _fp32_vs_q4(tmp_path: Path, embedding: torch.Tensor, weight: torch.Tensor) -> float:
    """Largest |fp32 − q4| output, with the q4 file's MatMul run both ways it runs: fused into MatMulNBits at
    accuracy level 1 (Python, Node) and folded into an fp32 weight (the browser's WASM build)."""
    import onnxruntime as ort

    fp32 = _gather_matmul(tmp_path / "fp32.onnx", embedding.numpy(), weight.numpy())
    q4 = quantize_weights(fp32, tmp_path / "q4.onnx", QuantOptions())
    ids = {"ids": np.arange(embedding.shape[0], dtype=np.int64)}

    def run(path: Path, key: str | None = None, value: str = "1") -> np.ndarray:
        opts = ort.SessionOptions()
        if key:
            opts.add_session_config_entry(key, value)
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, ids)[0]

    reference = run(fp32)
    return max(float(np.abs(reference - run(q4, key)).max())
               for key in (ACCURACY_LEVEL_KEY, "session.disable_quant_qdq"))


def test_snapped_weights_quantize_to_themselves_in_onnxruntime(tmp_path: Path) -> None:
    """The 4-bit MatMul (C++) and GatherBlockQuantized (numpy) quantizers leave grid weights exactly where they are."""
    gen = torch.Generator().manual_seed(0)
    embedding, weight = torch.randn(24, 96, generator=gen), torch.randn(40, 96, generator=gen) * 0.05
    (tmp_path / "raw").mkdir()
    (tmp_path / "snapped").mkdir()
    raw = _fp32_vs_q4(tmp_path / "raw", embedding, weight)
    snapped = _fp32_vs_q4(tmp_path / "snapped", fake_quant(embedding), fake_quant(weight))
    assert raw > 1e-3, "off-grid weights should move under 4-bit quantization (else this test proves nothing)"
    assert snapped < 1e-5, snapped


def test_fake_quant_grid_and_straight_through_gradient() -> None:
    w = torch.randn(8, 70, requires_grad=True)  # 70 inputs: the last block is padded, as onnxruntime pads it
    q = fake_quant(w.detach())
    assert q.shape == w.shape and torch.equal(fake_quant(q), q)
    for block in torch.split(q, 32, dim=1):
        scale = block.gather(1, block.abs().argmax(1, keepdim=True)) / -8  # largest-magnitude value → -8
        levels = block / scale
        ints = levels.round()
        assert torch.allclose(levels, ints, atol=1e-4) and ints.min() >= -8 and ints.max() <= 7
    assert torch.equal(fake_quant(torch.zeros(2, 32)), torch.zeros(2, 32))
    straight_through(w).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_attached_lora_model_computes_the_snapped_merge(tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    torch.manual_seed(3)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.3)
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    before = q_proj.base_layer.weight.clone()
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    with torch.no_grad():
        plain = model(ids).logits
        grid = Grid(model, 32)
        assert torch.equal(model(ids).logits, plain), "until enable() the layers run PEFT's forward"
        grid.enable()
    assert grid.lora_layers and grid.snapped == 1  # the tied embedding / lm_head, the one weight outside LoRA
    assert torch.equal(q_proj.base_layer.weight, before), "LoRA bases stay as loaded: base + delta is snapped"
    with torch.no_grad():
        trained = model(ids).logits
        assert not torch.allclose(trained, plain, atol=1e-4)
        merged = model.merge_and_unload()
        snap_model(merged, 32)
        assert torch.allclose(merged(ids).logits, trained, atol=1e-5)
    assert all(torch.equal(fake_quant(m.weight), m.weight) for m in merged.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)))


def test_quant_aware_run_exports_a_q4_that_answers_like_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Train with quant_aware on → the adapter says so → loading snaps the merge → q4 = fp32 = PyTorch."""
    from spantune.export import ExportOptions, export_model
    from support.export_fixture import e2e_examples
    from spantune.models import load_model_and_tokenizer
    from spantune.schema import write_jsonl

    cfg = write_config(tmp_path, tiny_model_dir, lora={"dropout": 0.0},
                       quant_aware={"enabled": True, "start_step": 2},
                       train={"max_steps": 4, "save_steps": 4}, eval={"steps": 0})
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0
    assert json.loads((run / "adapter" / MARKER).read_text())["block_size"] == 32
    model = load_model_and_tokenizer(str(run), device="cpu", dtype="fp32")[0]
    assert all(torch.equal(fake_quant(m.weight), m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear))

    examples = tmp_path / "examples.jsonl"
    write_jsonl(examples, e2e_examples())
    out = tmp_path / "export"
    manifest = export_model(ExportOptions(model=str(run), out=out, dtypes=("fp32", "q4"), verify_data=examples))
    q4 = manifest["parity"]["dtypes"]["q4"]
    assert q4["same_as_torch"] == q4["examples"] and q4["max_abs_logit_diff"] < 1e-3, q4
    assert "quant-aware" in (out / "README.md").read_text()
    with pytest.raises(SpantuneError, match="--block-size 32"):
        export_model(ExportOptions(model=str(run), out=tmp_path / "other", dtypes=("fp32", "q4"),
                                   quant=QuantOptions(block_size=16), verify=False))


@pytest.mark.parametrize(("sections", "key"), [
    ({"quant_aware": {"enabled": True}}, "lora.dropout"),  # the helper's recipe has dropout 0.05
    ({"quant_aware": {"block_size": 48}}, "quant_aware.block_size"),
    ({"quant_aware": {"enabled": True, "start_step": 12}, "lora": {"dropout": 0.0}}, "quant_aware.start_step"),
])
def test_bad_quant_aware_settings_name_their_key(tmp_path: Path, tiny_model_dir: Path, sections: dict,
                                                 key: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, tiny_model_dir, **sections)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 1
    assert key in capsys.readouterr().err


def test_no_grad_forward_reuses_the_rounded_weight_until_a_parameter_changes(tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    Grid(model, 32).enable()
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        first = model(ids).logits
        assert torch.equal(model(ids).logits, first)
    with_grad = model(ids).logits
    assert torch.allclose(with_grad, first, atol=1e-6)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.5)  # in place, as an optimizer step is
        assert not torch.allclose(model(ids).logits, first, atol=1e-3), "a stale rounded weight was reused"


def test_grid_switches_on_at_the_start_step() -> None:
    from types import SimpleNamespace

    from spantune.train.callbacks import QuantAwareStart

    class Switch:
        on = False

        def enable(self) -> None:
            self.on = True

    grid = Switch()
    start = QuantAwareStart(grid, start_step=3)
    for step, on in ((0, False), (2, False), (3, True)):
        start.on_step_begin(None, SimpleNamespace(global_step=step), None)
        assert grid.on is on, step
