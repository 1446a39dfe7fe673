"""spantune export on tiny random models: layout, parity, quantization, adapters, atomicity, push errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spantune.errors import SpantuneError
from spantune.export import ExportOptions, export_model, parse_dtypes
from spantune.export.folder import check_rope_config, push_to_hub
from spantune.infer.base import Corrector
from spantune.io import sha256_file
from spantune.schema import write_jsonl
from support.export_fixture import EXTRA_EXAMPLES, e2e_examples, lively_tiny_model

LAYOUT = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors",
          "onnx/model.onnx", "onnx/model_q4.onnx", "onnx/model_quantized.onnx", "onnx/model_int8.onnx", "README.md",
          "manifest.json"]


@pytest.fixture(scope="module")
def examples_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parity") / "examples.jsonl"
    write_jsonl(path, e2e_examples())
    return path


@pytest.fixture(scope="module")
def lively_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny model with larger random weights: greedy outputs vary, so token checks can fail."""
    return lively_tiny_model(tmp_path_factory.mktemp("lively") / "model")


@pytest.fixture(scope="module")
def exported(lively_dir: Path, examples_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "tiny-onnx"
    export_model(ExportOptions(model=str(lively_dir), out=out, dtypes=("fp32", "q4", "q8", "int8"),
                               verify_data=examples_file))
    return out


def test_layout_transformersjs_loads(exported: Path) -> None:
    for name in LAYOUT:
        assert (exported / name).is_file(), name
    tok_config = json.loads((exported / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok_config["chat_template"]
    gen = json.loads((exported / "generation_config.json").read_text())
    vocab = json.loads((exported / "tokenizer.json").read_text())["added_tokens"]
    im_end = next(t["id"] for t in vocab if t["content"] == "<|im_end|>")
    assert gen["max_new_tokens"] == 32 and gen.get("do_sample", False) is False
    assert im_end in gen["eos_token_id"]
    assert not list(exported.parent.glob(".tiny-onnx.*")), "temp folder left behind"


def test_manifest_hashes_every_file(exported: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    on_disk = {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(exported / name)
    assert manifest["onnx_bytes"]["q4"] < manifest["onnx_bytes"]["fp32"]
    card = (exported / "README.md").read_text()
    assert "q4" in card
    agreement = {d: r["agreement_fp32"] for d, r in manifest["parity"]["dtypes"].items() if d != "fp32"}
    named = card.split("Closest to fp32 of the smaller files: **")[1].split("**")[0]
    assert agreement[named] == max(agreement.values())


def test_fp32_equals_pytorch_exactly(exported: Path, lively_dir: Path) -> None:
    """Independent of the export's own check: the lead's TorchCorrector vs OnnxCorrector fp32."""
    from spantune.infer.onnx_backend import OnnxCorrector
    from spantune.infer.torch_backend import TorchCorrector

    torch_c = TorchCorrector.load(str(lively_dir), device="cpu", dtype="fp32")
    onnx_c = OnnxCorrector(exported, dtype="fp32")
    assert isinstance(onnx_c, Corrector)
    raws = []
    for ex in e2e_examples():
        t, o = torch_c.correct(ex), onnx_c.correct(ex)
        assert (o.raw, o.new_tokens, o.result) == (t.raw, t.new_tokens, t.result)
        raws.append(o.raw)
    assert len(set(raws)) == len(raws), "degenerate model: every example decoded alike"
    parity = json.loads((exported / "manifest.json").read_text())["parity"]["dtypes"]["fp32"]
    assert parity["same_as_torch"] == parity["examples"] == len(e2e_examples())
    assert parity["max_abs_logit_diff"] < 1e-3


@pytest.mark.parametrize("dtype", ["fp32", "q4", "q8", "int8"])
def test_logits_to_keep_limits_the_output_layer_to_the_last_rows(exported: Path, tmp_path: Path, dtype: str) -> None:
    """Every dtype's graph takes num_logits_to_keep: N > 0 gives the last N rows of what 0 (all rows) gives, and a
    decoder without the input (an older export) answers the same through the same calls."""
    import numpy as np
    import onnx

    from spantune.infer.onnx_backend import LOGITS_TO_KEEP, OnnxDecoder, onnx_file

    path = onnx_file(exported, dtype)
    decoder = OnnxDecoder(path)
    assert decoder.rows_input
    ids = [1, 5, 9, 12, 7, 3]
    full, _ = decoder.run(ids, 0, decoder.empty_past())
    assert full.shape[0] == len(ids)
    for rows in (1, 3):
        last, _ = decoder.run(ids, 0, decoder.empty_past(), rows)
        assert last.shape == (rows, full.shape[1])
        np.testing.assert_allclose(last, full[-rows:], rtol=1e-4, atol=1e-4)
        assert (last.argmax(-1) == full[-rows:].argmax(-1)).all()
    prefix = decoder.prefix_cache(ids[:2])
    np.testing.assert_allclose(decoder.logits(ids, prefix, rows=2), full[-2:], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(decoder.logits(ids, prefix, rows=5), full[-5:], rtol=1e-4, atol=1e-4)

    model = onnx.load(str(path))  # the graph before the change: logits straight from the final norm
    slicer = next(n for n in model.graph.node if n.op_type == "Slice" and n.name.startswith("/spantune/"))
    for node in model.graph.node:  # the output layer (or the int8 file's quantization of its input) reads it
        node.input[:] = [slicer.input[0] if name == slicer.output[0] else name for name in node.input]
    for node in [n for n in model.graph.node if n.name.startswith("/spantune/")]:
        model.graph.node.remove(node)
    model.graph.input.remove(next(i for i in model.graph.input if i.name == LOGITS_TO_KEEP))
    onnx.save_model(model, str(tmp_path / "old.onnx"))
    old = OnnxDecoder(tmp_path / "old.onnx")
    assert not old.rows_input
    np.testing.assert_allclose(old.run(ids, 0, old.empty_past(), 3)[0], full[-3:], rtol=1e-4, atol=1e-4)
    assert old.greedy(ids, 4, []).tokens == decoder.greedy(ids, 4, []).tokens


@pytest.mark.parametrize(("dtype", "bits"), [("q4", 4), ("q8", 8)])
def test_quantized_weights_and_decoding(exported: Path, dtype: str, bits: int) -> None:
    import onnx

    from spantune.infer.onnx_backend import OnnxCorrector, onnx_file

    graph = onnx.load(str(onnx_file(exported, dtype))).graph
    ops = {n.op_type for n in graph.node}
    assert "GatherBlockQuantized" in ops
    weights = {i.name: i for i in graph.initializer}
    assert not [n for n in graph.node if n.op_type == "MatMul" and set(n.input) & set(weights)], "fp32 weight left"
    if bits == 8:
        assert {a.i for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "bits"} == {8}
    else:  # int4 blocks behind DequantizeLinear, feeding every MatMul with a weight
        dequantized = [n for n in graph.node if n.op_type == "DequantizeLinear"]
        assert dequantized and "MatMulNBits" not in ops
        assert {weights[n.input[0]].data_type for n in dequantized} == {onnx.TensorProto.INT4}
        matmuls = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in {d.output[0] for d in dequantized}]
        assert len(matmuls) == len(dequantized)
    pred = OnnxCorrector(exported, dtype=dtype).correct(EXTRA_EXAMPLES[0])
    assert pred.new_tokens > 0 and pred.latency_s > 0


def test_int8_quantizes_each_token_on_its_own(exported: Path) -> None:
    """int8: every weight MatMul is a MatMulInteger over int8 weights, the embedding an int8 table, and each
    token's activations get their own scale, so a token's logits do not depend on the other tokens of its pass
    (test_logits_to_keep_limits_the_output_layer_to_the_last_rows checks cached and uncached passes agree)."""
    import numpy as np
    import onnx

    from spantune.infer.onnx_backend import OnnxCorrector, OnnxDecoder, onnx_file

    graph = onnx.load(str(onnx_file(exported, "int8"))).graph
    weights = {i.name: i for i in graph.initializer}
    assert not [n for n in graph.node if n.op_type == "MatMul" and set(n.input) & set(weights)], "fp32 weight left"
    fp32 = onnx.load(str(onnx_file(exported, "fp32"))).graph
    fp32_weights = {i.name for i in fp32.initializer}
    integer = [n for n in graph.node if n.op_type == "MatMulInteger"]
    assert len(integer) == len([n for n in fp32.node if n.op_type == "MatMul" and n.input[1] in fp32_weights])
    assert {weights[n.input[1]].data_type for n in integer} == {onnx.TensorProto.INT8}
    tables = [weights[n.input[0]] for n in graph.node if n.op_type == "Gather" and n.input[0] in weights]
    assert onnx.TensorProto.INT8 in {t.data_type for t in tables}
    assert onnx.TensorProto.FLOAT not in {t.data_type for t in tables if len(t.dims) == 2 and t.dims[1] > 1}

    ids = [1, 5, 9, 12, 7, 3]
    decoder, reference = OnnxDecoder(onnx_file(exported, "int8")), OnnxDecoder(onnx_file(exported, "fp32"))
    alone, _ = decoder.run(ids[-1:], len(ids) - 1, decoder.run(ids[:-1], 0, decoder.empty_past())[1], 1)
    together, _ = decoder.run(ids, 0, decoder.empty_past(), 1)
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-5)
    full, _ = reference.run(ids, 0, reference.empty_past(), 1)
    assert np.abs(together - full).max() < 0.05 * np.abs(full).max()  # 8-bit rounding, not another model
    pred = OnnxCorrector(exported, dtype="int8").correct(EXTRA_EXAMPLES[0])
    assert pred.new_tokens > 0 and pred.latency_s > 0
    scheme = json.loads((exported / "manifest.json").read_text())["quantization"]["int8"]
    assert scheme["activations"].startswith("uint8, one scale per token")
    assert f"- int8: {scheme['method']}: weights int8" in (exported / "README.md").read_text()


def test_eight_bit_nodes_option(exported: Path, tmp_path: Path) -> None:
    import onnx

    from spantune.export.onnx import QuantOptions, quantize_weights, weight_matmuls

    out = quantize_weights(exported / "onnx" / "model.onnx", tmp_path / "mixed.onnx", QuantOptions(eight_bit="lm_head"))
    nodes = onnx.load(str(out)).graph.node
    bits = {n.name: a.i for n in nodes if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "bits"}
    assert bits == {"/lm_head/MatMul_Q8": 8}
    weighted = weight_matmuls(onnx.load(str(exported / "onnx" / "model.onnx")), ".")
    assert sum(n.op_type == "DequantizeLinear" for n in nodes) == len(weighted) - 1  # the others: int4 QDQ
    with pytest.raises(SpantuneError, match="no MatMul"):
        quantize_weights(exported / "onnx" / "model.onnx", tmp_path / "x.onnx", QuantOptions(eight_bit="nothing"))


def test_parity_catches_a_lost_rope_theta(tiny_model_dir: Path, examples_file: Path, tmp_path: Path) -> None:
    """A config that loses rope_theta on the way to the exporter: tokens may agree, logits must not pass."""
    from spantune.export.folder import generation_config, save_merged
    from spantune.export.onnx import export_decoder
    from spantune.export.parity import ATOL, RTOL, check_parity, enforce_fp32
    from spantune.models import load_model_and_tokenizer
    from spantune.schema import read_jsonl

    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), device="cpu", dtype="fp32")
    gen = generation_config(model, tokenizer, 32)
    save_merged(model, tokenizer, gen, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rope_theta"] == 1e6
    config["rope_theta"] = 10000.0  # what transformers 4.57 assumes when a 5.x config hides it
    (tmp_path / "config.json").write_text(json.dumps(config))
    export_decoder(tmp_path, tmp_path)
    report = check_parity(model, tokenizer, tmp_path, read_jsonl(examples_file), ["fp32"], gen)
    fp32 = report.dtypes["fp32"]
    assert fp32.max_abs_logit_diff > ATOL + RTOL * fp32.logit_scale
    with pytest.raises(SpantuneError, match="parity failed"):
        enforce_fp32(report)


def test_rope_theta_hidden_in_rope_parameters_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    from spantune.models import load_model_and_tokenizer

    src = tmp_path / "v5"
    shutil.copytree(tiny_model_dir, src)
    config = json.loads((src / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "default", "rope_theta": config.pop("rope_theta")}
    (src / "config.json").write_text(json.dumps(config))
    model, _ = load_model_and_tokenizer(str(src), device="cpu", dtype="fp32")
    with pytest.raises(SpantuneError, match="rope_theta=1000000.0 but transformers loaded rope_theta=10000"):
        check_rope_config(str(src), model)


def test_lora_run_is_merged(lively_dir: Path, examples_file: Path, tmp_path: Path) -> None:
    """A run folder with a LoRA adapter exports the merged model: PyTorch with the adapter == ONNX fp32."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from spantune.infer.onnx_backend import OnnxDecoder

    base = AutoModelForCausalLM.from_pretrained(lively_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # B starts at zero (a no-op adapter); make the adapter change the model
            param.data.normal_(0, 0.5)
    run = tmp_path / "run"
    peft_model.save_pretrained(run / "adapter")
    (run / "run_info.json").write_text(json.dumps({"data": {"train": {"path": "data/train.jsonl", "sha256": "ab12"}},
                                                   "git_commit": "c0ffee"}))
    (run / "README.md").write_text("# Run card\n\nexact match on the golden set: 0.42\n")
    out = tmp_path / "merged-onnx"
    manifest = export_model(ExportOptions(model=str(run), out=out, dtypes=("fp32",), verify_data=examples_file,
                                          verify_limit=3))
    assert manifest["source"]["adapter"] == str(run / "adapter")
    card = (out / "README.md").read_text()
    assert "sha256 `ab12`" in card and "### Run card" in card and "exact match on the golden set: 0.42" in card
    assert manifest["parity"]["dtypes"]["fp32"]["same_as_torch"] == 3
    ids = [1, 5, 9, 12]
    with torch.inference_mode():
        want = peft_model(torch.tensor([ids])).logits[0, -1].numpy()
        plain = AutoModelForCausalLM.from_pretrained(lively_dir)(torch.tensor([ids])).logits[0, -1].numpy()
    got = OnnxDecoder(out / "onnx" / "model.onnx").greedy(ids, 1, [], keep_logits=True).logits[0]
    assert abs(got - want).max() < 1e-4
    assert abs(got - plain).max() > 1e-2, "the adapter did not change the exported model"


def test_card_carries_data_licences(lively_dir: Path, examples_file: Path, tmp_path: Path) -> None:
    """A run trained on a non-commercial source (per its data manifest) exports a card that says so plainly."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from spantune.runinfo import write_run_info
    from spantune.train import TrainConfig

    run = tmp_path / "run"
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(lively_dir),
                                LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    peft_model.save_pretrained(run / "adapter")
    files = {name: tmp_path / f"{name}.jsonl" for name in ("train", "eval")}
    for name, path in files.items():
        write_jsonl(path, e2e_examples())
        (tmp_path / f"{name}.jsonl.manifest.json").write_text(json.dumps({"sources": [
            {"name": "jfleg-dev", "kind": "real", "license": "CC BY-NC-SA 4.0", "commercial": False, "files": []}]}))
    write_run_info(run, TrainConfig(), files)
    out = tmp_path / "licensed-onnx"
    manifest = export_model(ExportOptions(model=str(run), out=out, dtypes=("fp32",), verify=False))
    card = (out / "README.md").read_text()
    assert manifest["source"]["run"]["data"]["train"]["sources"][0]["commercial"] is False
    assert "**Non-commercial use only.** These weights are derived from non-commercial data: " \
           "jfleg-dev (CC BY-NC-SA 4.0)" in card
    assert f"Training data `eval` (the checkpoint was chosen on it): `{tmp_path / 'eval.jsonl'}`" in card
    assert f"Base model: `{lively_dir.name}` (see the base model's card; local model folder)" in card


def test_interrupted_export_leaves_no_folder(tiny_model_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import spantune.export.onnx

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(spantune.export.onnx, "quantize_weights", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export_model(ExportOptions(model=str(tiny_model_dir), out=out, verify=False))
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    (out / "keep.txt").write_text("previous export")
    with pytest.raises(KeyboardInterrupt):
        export_model(ExportOptions(model=str(tiny_model_dir), out=out, verify=False))
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "keep.txt").read_text() == "previous export"


def test_push_to_hub_offline_is_one_line_and_keeps_export(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p: sha256_file(p) for p in exported.rglob("*") if p.is_file()}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SpantuneError) as exc:
        push_to_hub(exported, "someone/span-model")
    assert "\n" not in str(exc.value) and "intact" in str(exc.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no network
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    with pytest.raises(SpantuneError) as exc:
        push_to_hub(exported, "someone/span-model")
    assert "\n" not in str(exc.value) and "intact" in str(exc.value)
    assert before == {p: sha256_file(p) for p in exported.rglob("*") if p.is_file()}


def test_bad_options_are_clear_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert parse_dtypes("q4") == ("fp32", "q4")
    assert parse_dtypes("q4f16,q4") == ("fp32", "fp16", "q4", "q4f16")
    with pytest.raises(SpantuneError, match="unknown q3"):
        parse_dtypes("q4,q3")
    with pytest.raises(SpantuneError, match="--no-verify"):
        export_model(ExportOptions(model=str(tiny_model_dir), out=tmp_path / "o", verify_data=tmp_path / "none.jsonl"))
    assert not (tmp_path / "o").exists()


def test_external_data_is_declared_for_transformersjs(exported: Path, tmp_path: Path) -> None:
    """Decoders over 2 GiB keep weights in model.onnx_data; config.json must tell Transformers.js so."""
    import onnx

    from spantune.export.folder import set_transformersjs_config
    from spantune.infer.onnx_backend import OnnxCorrector

    folder = tmp_path / "big"
    shutil.copytree(exported, folder)
    path = folder / "onnx" / "model.onnx"
    onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True, location="model.onnx_data",
                    size_threshold=0)
    set_transformersjs_config(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["transformers.js_config"]["use_external_data_format"] == {"model.onnx": 1}
    want = OnnxCorrector(exported, dtype="fp32").correct(EXTRA_EXAMPLES[0])
    assert OnnxCorrector(folder, dtype="fp32").correct(EXTRA_EXAMPLES[0]).raw == want.raw
