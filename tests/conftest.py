"""Shared fixtures: a tiny random chat model built at test time (no downloads), fixture paths."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
JFLEG_DEV = ROOT.parent / "shared" / "data" / "jfleg-dev"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random 2-layer Qwen2ForCausalLM (hidden 64) with a ChatML tokenizer, saved to a temp folder."""
    from support.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2") / "model")


@pytest.fixture(scope="session")
def golden_path() -> Path:
    path = FIXTURES / "span_eval.jsonl"
    if not path.is_file():
        pytest.skip("fixtures/span_eval.jsonl not written yet")
    return path


@pytest.fixture(scope="session")
def jfleg_dir() -> Path:
    if not (JFLEG_DEV / "dev.src").is_file():
        pytest.skip(f"real-data folder {JFLEG_DEV} is absent")
    return JFLEG_DEV


@pytest.fixture(scope="session")
def lively_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model whose greedy answer depends on the span (export_fixture's), exported to fp32 and q4;
    shared by the browser tests (WASM and WebGPU)."""
    from spantune.export import ExportOptions, QuantOptions, export_model
    from support.export_fixture import lively_tiny_model

    work = tmp_path_factory.mktemp("browser")
    out = work / "export"
    # accuracy_level 1: MatMulNBits computes in fp32 everywhere. At level 4 native onnxruntime quantizes the
    # activations to int8 while the browser's wasm build computes in fp32, and greedy tokens drift apart.
    export_model(ExportOptions(model=str(lively_tiny_model(work / "tiny")), out=out, dtypes=("fp32", "q4"),
                               verify=False, quant=QuantOptions(accuracy_level=1)))
    return out
