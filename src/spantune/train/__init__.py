"""``spantune train``: LoRA/QLoRA supervised fine-tuning that teaches a model to return the corrected span.

``config`` (the recipe and its value checks) → ``prepare`` (everything checked before the model loads) →
``trainer`` (TRL's SFTTrainer, the run folder), with ``precision``, ``data`` (the training sequences),
``loss``, ``callbacks``, ``report`` (curves, model card) and ``quant_aware`` (the 4-bit grid); ``commands`` is
the CLI. The names other modules use are re-exported here; ``loss``, ``callbacks`` and ``quant_aware`` import
torch when imported, so they are imported from their modules and the CLI's ``import spantune.train`` stays light.
"""

from spantune.train.config import TrainConfig, check_values
from spantune.train.data import IGNORE_INDEX, choose_pad_token, encode_example
from spantune.train.precision import cpu_bf16, mixed_precision
from spantune.train.prepare import load_split, prepare, seeded_subset
from spantune.train.report import base_model_text, licence_lines, model_card, sources_text
from spantune.train.trainer import build_trainer, load_base_model, lora_config, run_training, sft_config

__all__ = ["IGNORE_INDEX", "TrainConfig", "base_model_text", "build_trainer", "check_values", "choose_pad_token",
           "cpu_bf16", "encode_example", "licence_lines", "load_base_model", "load_split", "lora_config",
           "mixed_precision", "model_card", "prepare", "run_training", "seeded_subset", "sft_config", "sources_text"]
