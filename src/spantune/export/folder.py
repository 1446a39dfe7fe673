"""What goes into an export folder besides the ONNX decoders: the merged model, its generation config and
tokenizer, the keep margin, where it came from, sizes and hashes for the manifest, and the upload to the hub."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError
from spantune.export.onnx import external_data_config
from spantune.infer.decode import stop_token_ids
from spantune.infer.keep import KEEP_MARGIN_FILE, calibration_file, read_calibration
from spantune.infer.onnx_backend import onnx_file
from spantune.io import sha256_file, write_json
from spantune.models import resolve_model_path, run_folder


def check_rope_config(base: str, model: Any) -> None:
    """Refuse a model whose config file says one RoPE theta while transformers loaded another.

    transformers 5.x writes ``rope_theta`` under ``rope_parameters``; 4.57 ignores that key and silently
    uses its default (10 000 instead of 1e6 for Qwen2), so the model (and any export of it) is wrong.
    """
    from transformers import PretrainedConfig

    raw, _ = PretrainedConfig.get_config_dict(base)
    nested = raw.get("rope_parameters") or {}
    written = raw.get("rope_theta", nested.get("rope_theta") if isinstance(nested, dict) else None)
    loaded = getattr(model.config, "rope_theta", None)
    if written is not None and loaded is not None and float(written) != float(loaded):
        raise SpantuneError(
            f"{base}: config.json sets rope_theta={written} but transformers loaded rope_theta={loaded} "
            "(config written by another transformers version?); re-save the config with this version "
            "or move rope_theta to the top level")


def generation_config(model: Any, tokenizer: Any, max_new_tokens: int) -> Any:
    """Greedy, ``max_new_tokens``, and every end id (EOS and end-of-turn) — what Transformers.js reads."""
    from transformers import GenerationConfig

    stop = stop_token_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    return GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=stop,
                            pad_token_id=pad, bos_token_id=model.config.bos_token_id)


def save_merged(model: Any, tokenizer: Any, gen: Any, folder: Path) -> None:
    """Merged safetensors, config, generation config, and the tokenizer with its chat template inline."""
    model.generation_config = gen
    model.save_pretrained(folder, safe_serialization=True)
    # Transformers.js reads the template only from tokenizer_config.json, not chat_template.jinja
    tokenizer.save_pretrained(folder, save_jinja_files=False)
    tok_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    if not tok_config.get("chat_template"):
        raise SpantuneError("the tokenizer has no chat template; spantune prompts need one")


def set_transformersjs_config(folder: Path) -> None:
    """Tell Transformers.js which decoders keep their weights in ``*.onnx_data`` (models over 2 GiB)."""
    external = external_data_config(folder)
    if external:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config.setdefault("transformers.js_config", {})["use_external_data_format"] = external
        write_json(folder / "config.json", config)


def carry_keep_margin(model_arg: str, folder: Path) -> dict[str, Any] | None:
    """The model's calibrated keep margin (docs/keep-margin.md), carried into the export: its keep_margin.json
    (which ``--system onnx:DIR`` and a transformers load of the folder read) and config.json's
    ``spantune.keep_margin`` (with ``keep_margin_unit``), which Transformers.js loads with the model
    (js/src/corrector.js's default)."""
    path = calibration_file(model_arg)
    if path is None:
        return None
    record = read_calibration(path)
    write_json(folder / KEEP_MARGIN_FILE, record)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.setdefault("spantune", {}).update(keep_margin=record["margin"], keep_margin_unit=record["unit"])
    write_json(folder / "config.json", config)
    return record


def onnx_sizes(folder: Path, dtypes: Sequence[str]) -> dict[str, int]:
    """Bytes of each dtype's decoder, external data included."""
    sizes = {}
    for dtype in dtypes:
        path = onnx_file(folder, dtype)
        data = path.with_name(path.name + "_data")
        sizes[dtype] = path.stat().st_size + (data.stat().st_size if data.is_file() else 0)
    return sizes


def make_readable(folder: Path) -> None:
    """Give the folder the usual permissions (temp folders are private) so it can be served or shared."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def file_hashes(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``folder`` except the manifest itself."""
    return {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def source_info(model_arg: str) -> dict[str, Any]:
    """What the export is made of: base model (local path and public name), adapter, and the training run with
    its data files, their sources and licences (read from the run's run_info.json)."""
    from spantune.runinfo import public_base_model
    from spantune.train.quant_aware import marker_block_size

    base, adapter = resolve_model_path(model_arg)
    # the adapter names its base as training was told it (hub id, 'embedded' or folder), not the resolved path
    base_name = (json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
                 if adapter else model_arg)
    run = run_folder(adapter)
    info: dict[str, Any] = {"model": model_arg, "base": base, "base_model": public_base_model(base_name),
                            "adapter": str(adapter) if adapter else None,
                            "quant_aware_block_size": marker_block_size(adapter)}
    if run is not None:
        run_info = json.loads((run / "run_info.json").read_text(encoding="utf-8"))
        data = run_info.get("data") or {}
        evaluated = ((run_info.get("config") or {}).get("eval") or {}).get("steps", 0) > 0  # eval picks the checkpoint
        info["run"] = {"path": str(run), "data": data, "git_commit": run_info.get("git_commit"),
                       "checkpoint_chosen_on": "eval" if evaluated and "eval" in data else None}
    return info


def run_card(source: dict[str, Any]) -> str | None:
    """The README.md that ``spantune train`` wrote in the run folder, if any."""
    card = Path(source["run"]["path"]) / "README.md" if source.get("run") else None
    return card.read_text(encoding="utf-8") if card is not None and card.is_file() else None


def push_to_hub(folder: Path, repo_id: str) -> str:
    """Upload the export with huggingface_hub (token from HF_TOKEN or the hub login); one-line errors."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        raise SpantuneError(f"--push-to-hub {repo_id}: HF_HUB_OFFLINE is set; the local export in {folder} is intact")
    import requests
    from huggingface_hub import HfApi, get_token

    if get_token() is None:
        raise SpantuneError(f"--push-to-hub {repo_id}: no Hugging Face token (set HF_TOKEN or run `hf auth login`); "
                            f"the local export in {folder} is intact")
    try:
        api = HfApi()
        api.create_repo(repo_id, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="spantune export")
    except Exception as exc:  # network, auth and hub errors all end the same way: report, keep the folder
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            reason = f"cannot reach {api.endpoint} (offline?)"
        else:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise SpantuneError(f"--push-to-hub {repo_id} failed: {reason}; "
                            f"the local export in {folder} is intact") from None
    return str(commit.commit_url)
