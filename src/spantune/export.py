"""``spantune export``: training run or model → merged safetensors → ONNX (KV cache) → 4-bit, parity-checked.

The output folder is what Transformers.js loads with ``localModelPath`` and ``dtype: 'q4'``, and what
``spantune eval --system onnx:DIR`` runs::

    DIR/config.json  generation_config.json  tokenizer.json  tokenizer_config.json (with chat_template)
    DIR/model.safetensors            merged weights (no PEFT needed at inference)
    DIR/onnx/model.onnx              fp32 decoder with past key values
    DIR/onnx/model_q4.onnx           4-bit MatMulNBits + GatherBlockQuantized (and other --dtypes, e.g.
                                     model_quantized.onnx = q8: 8-bit MatMuls, for ≥ 95 % agreement with fp32)
    DIR/README.md  manifest.json     model card; sha256 of every file, parity, sizes and the keep margin
    DIR/keep_margin.json             the calibrated keep margin, when the model has one (``spantune calibrate``;
                                     also in config.json's ``spantune.keep_margin`` for Transformers.js)

Everything is built in a temp folder beside DIR and renamed into place at the end, so an interrupted
or refused export (parity failure) leaves no folder behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError
from spantune.export_onnx import QuantOptions, dtype_quant
from spantune.infer.onnx_backend import DTYPE_SUFFIX, onnx_file

DEFAULT_DTYPES = ("fp32", "q4")
DEFAULT_VERIFY_DATA = Path("fixtures/span_eval.jsonl")
#: Build order: q4f16 is made from fp16.
DTYPE_ORDER = ("fp32", "fp16", "q4", "q4f16", "q8", "int8")


@dataclass
class ExportOptions:
    model: str
    out: Path
    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    quant: QuantOptions = field(default_factory=QuantOptions)
    verify: bool = True
    verify_data: Path = DEFAULT_VERIFY_DATA
    verify_limit: int | None = None
    max_new_tokens: int = 32
    opset: int | None = None


class Steps:
    """Numbered progress lines on stderr, each with its duration, so a long export shows where it is."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.done += 1
        print(f"[{self.done}/{self.total}] {what} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        yield
        seconds = time.perf_counter() - t0
        print(f"[{self.done}/{self.total}] {what}: done in {seconds:.1f} s", file=sys.stderr, flush=True)


def parse_dtypes(text: str) -> tuple[str, ...]:
    """``q4,fp16`` → build order with fp32 first (it is the source of every other dtype and the parity anchor)."""
    asked = {d.strip() for d in text.split(",") if d.strip()}
    unknown = asked - set(DTYPE_SUFFIX)
    if unknown:
        raise SpantuneError(f"--dtypes: unknown {', '.join(sorted(unknown))} (choose from {', '.join(DTYPE_ORDER)})")
    if "q4f16" in asked:
        asked.add("fp16")
    return tuple(d for d in DTYPE_ORDER if d in asked or d == "fp32")


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

    from spantune.infer.torch_backend import stop_token_ids

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
    from spantune.export_onnx import external_data_config
    from spantune.io import write_json

    external = external_data_config(folder)
    if external:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config.setdefault("transformers.js_config", {})["use_external_data_format"] = external
        write_json(folder / "config.json", config)


def carry_keep_margin(model_arg: str, folder: Path) -> dict[str, Any] | None:
    """The model's calibrated keep margin (docs/keep-margin.md), carried into the export: its keep_margin.json
    (which ``--system onnx:DIR`` and a transformers load of the folder read) and config.json's
    ``spantune.keep_margin``, which Transformers.js loads with the model (js/src/corrector.js's default)."""
    from spantune.infer.keep import KEEP_MARGIN_FILE, calibration_file, read_calibration
    from spantune.io import write_json

    path = calibration_file(model_arg)
    if path is None:
        return None
    record = read_calibration(path)
    write_json(folder / KEEP_MARGIN_FILE, record)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.setdefault("spantune", {})["keep_margin"] = record["margin"]
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
    from spantune.io import sha256_file

    return {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def run_folder(adapter: Path | None) -> Path | None:
    """The training run folder an adapter came from (it holds run_info.json), if any."""
    if adapter is None:
        return None
    return next((d for d in (adapter, adapter.parent) if (d / "run_info.json").is_file()), None)


def source_info(model_arg: str) -> dict[str, Any]:
    """What the export is made of: base model (local path and public name), adapter, and the training run with
    its data files, their sources and licences (read from the run's run_info.json)."""
    from spantune.models import resolve_model_path
    from spantune.quant_aware import marker_block_size
    from spantune.runinfo import public_base_model

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


def check_grid(source: dict[str, Any], dtypes: Sequence[str], quant: QuantOptions) -> None:
    """A quant-aware run's weights sit on one grid (symmetric, one block size); quantizing them with other
    settings moves them off it and throws away what that training bought, so refuse instead."""
    block = source["quant_aware_block_size"]
    if block is None or not any(dtype_quant(d, quant) for d in dtypes):
        return
    if quant.block_size != block or not quant.symmetric:
        raise SpantuneError(f"{source['adapter']} was trained quant-aware on the symmetric 4-bit grid with block "
                            f"{block}: export it with --block-size {block} and without --asymmetric")


def run_card(source: dict[str, Any]) -> str | None:
    """The README.md that ``spantune train`` wrote in the run folder, if any."""
    card = Path(source["run"]["path"]) / "README.md" if source.get("run") else None
    return card.read_text(encoding="utf-8") if card is not None and card.is_file() else None


def load_examples(opts: ExportOptions) -> list[Any]:
    from spantune.schema import read_jsonl

    if not opts.verify_data.is_file():
        raise SpantuneError(f"parity data {opts.verify_data} not found: pass --verify-data FILE (span JSONL) "
                            "or skip the check with --no-verify")
    examples = read_jsonl(opts.verify_data, clip=True)
    return examples[: opts.verify_limit] if opts.verify_limit else examples


def export_model(opts: ExportOptions) -> dict[str, Any]:
    """Run the whole export into ``opts.out``; returns the manifest. Raises SpantuneError on failure."""
    from tqdm import tqdm

    from spantune.export_card import model_card
    from spantune.export_onnx import build_dtype, export_decoder
    from spantune.export_parity import check_parity, enforce_fp32
    from spantune.io import atomic_dir, write_json
    from spantune.models import load_model_and_tokenizer, resolve_model_path
    from spantune.runinfo import package_versions

    examples = load_examples(opts) if opts.verify else []
    steps = Steps(total=3 + len(opts.dtypes) + int(opts.verify))
    source = source_info(opts.model)
    check_grid(source, opts.dtypes, opts.quant)
    with steps.step(f"loading {source['base']}" + (f" and merging the LoRA adapter {source['adapter']}"
                                                    if source["adapter"] else "")):
        model, tokenizer = load_model_and_tokenizer(opts.model, device="cpu", dtype="fp32")
        check_rope_config(resolve_model_path(opts.model)[0], model)
        gen = generation_config(model, tokenizer, opts.max_new_tokens)
    with atomic_dir(opts.out) as tmp:
        with steps.step("saving merged safetensors, config and tokenizer"):
            save_merged(model, tokenizer, gen, tmp)
        with steps.step("exporting the decoder to ONNX (optimum-onnx, text-generation-with-past)"):
            export_decoder(tmp, tmp, opset=opts.opset)
        for dtype in opts.dtypes[1:]:
            with steps.step(f"building {onnx_file(tmp, dtype).name} ({dtype})"):
                build_dtype(tmp, dtype, opts.quant)
        set_transformersjs_config(tmp)
        keep_margin = carry_keep_margin(opts.model, tmp)
        parity = None
        if opts.verify:
            with steps.step(f"parity on {len(examples)} examples: PyTorch vs onnxruntime {', '.join(opts.dtypes)}"):
                report = check_parity(model, tokenizer, tmp, examples, opts.dtypes, gen,
                                      progress=lambda items, desc: tqdm(items, desc=desc, unit="span", leave=False))
                report.data = str(opts.verify_data)
                enforce_fp32(report)
                parity = report.to_dict()
        with steps.step("writing model card and manifest"):
            sizes = onnx_sizes(tmp, opts.dtypes)
            manifest: dict[str, Any] = {
                "format": "spantune-export/1",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "source": source,
                "dtypes": list(opts.dtypes),
                "quantization": {d: q.to_dict() for d in opts.dtypes if (q := dtype_quant(d, opts.quant))},
                "onnx_bytes": sizes,
                "size_ratio_vs_fp32": {d: round(s / sizes["fp32"], 4) for d, s in sizes.items()},
                "generation": {"do_sample": False, "max_new_tokens": gen.max_new_tokens,
                               "eos_token_id": gen.eos_token_id},
                "parity": parity,
                "keep_margin": keep_margin,
                "packages": package_versions(),
            }
            (tmp / "README.md").write_text(model_card(manifest, run_card(source)), encoding="utf-8")
            manifest["files"] = file_hashes(tmp)
            write_json(tmp / "manifest.json", manifest)
            make_readable(tmp)
    return manifest


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


def _summary(manifest: dict[str, Any], out: Path) -> str:
    lines = [f"exported to {out}"]
    for dtype, size in manifest["onnx_bytes"].items():
        ratio = manifest["size_ratio_vs_fp32"][dtype]
        line = f"  {onnx_file(out, dtype).relative_to(out)}: {size / 1e6:.1f} MB ({ratio:.0%} of fp32)"
        parity = (manifest["parity"] or {}).get("dtypes", {}).get(dtype)
        if parity:
            line += (f", greedy agreement with PyTorch {parity['agreement_torch']:.1%} "
                     f"(vs fp32 {parity['agreement_fp32']:.1%}), max |Δlogit| {parity['max_abs_logit_diff']:.3g}")
        lines.append(line)
    if manifest["parity"] is None:
        lines.append("  parity not checked (--no-verify)")
    return "\n".join(lines)


def _cmd_export(args: argparse.Namespace) -> int:
    opts = ExportOptions(
        model=args.model, out=Path(args.out), dtypes=parse_dtypes(args.dtypes),
        quant=QuantOptions(block_size=args.block_size, symmetric=not args.asymmetric,
                           quantize_embedding=not args.keep_embedding, eight_bit=args.eight_bit,
                           accuracy_level=args.accuracy_level),
        verify=not args.no_verify, verify_data=Path(args.verify_data), verify_limit=args.verify_limit,
        max_new_tokens=args.max_new_tokens, opset=args.opset)
    if opts.quant.block_size < 16 or opts.quant.block_size & (opts.quant.block_size - 1):
        raise SpantuneError(f"--block-size {opts.quant.block_size}: must be a power of two ≥ 16")
    manifest = export_model(opts)
    print(_summary(manifest, opts.out))
    if args.push_to_hub:
        print(f"pushed to {push_to_hub(opts.out, args.push_to_hub)}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("export", help="merge, export to ONNX with KV cache, quantize to 4 bits, check parity",
                              description="Merge a training run's LoRA adapter (or take any model), export it to "
                              "ONNX with past key values, quantize to 4 bits, and check parity with PyTorch.")
    p.add_argument("--model", required=True,
                   help="training run folder (LoRA adapter), model folder, hub id or 'embedded'")
    p.add_argument("--out", required=True, help="output folder (replaced atomically when the export succeeds)")
    p.add_argument("--dtypes", default=",".join(DEFAULT_DTYPES),
                   help=f"ONNX variants, comma-separated, from {', '.join(DTYPE_ORDER)} "
                   "(fp32 always; default %(default)s)")
    p.add_argument("--block-size", type=int, default=32, help="4-bit quantization block size (default %(default)s)")
    p.add_argument("--asymmetric", action="store_true", help="4-bit with zero points instead of symmetric")
    p.add_argument("--keep-embedding", action="store_true",
                   help="leave the embedding in fp32 (bigger q4 file; measures what quantizing it costs)")
    p.add_argument("--accuracy-level", type=int, choices=(0, 1, 2, 3, 4), default=QuantOptions.accuracy_level,
                   help="MatMulNBits compute precision: 1 fp32 (default; browsers compute in fp32 anyway), 4 int8")
    p.add_argument("--eight-bit", default="", metavar="REGEX",
                   help="q4: MatMuls whose ONNX node name matches keep 8-bit weights (e.g. 'lm_head|self_attn')")
    p.add_argument("--no-verify", action="store_true", help="skip the PyTorch/onnxruntime parity check")
    p.add_argument("--verify-data", default=str(DEFAULT_VERIFY_DATA),
                   help="span JSONL for the parity check (default %(default)s)")
    p.add_argument("--verify-limit", type=int, default=None, help="check only the first N examples")
    p.add_argument("--max-new-tokens", type=int, default=32, help="greedy budget written to generation_config.json")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's, 18 for Qwen2/Llama)")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", help="upload the folder with huggingface_hub (token: HF_TOKEN)")
    p.set_defaults(func=_cmd_export)
