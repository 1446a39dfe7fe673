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
    from spantune.tiny import build_tiny_model

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
