"""A tiny random Qwen2 chat model built at test time (pytest fixtures, the JS tests' artifacts), never for quality.

It has the real architecture (Qwen2ForCausalLM, tied embeddings, rope_theta 1e6) and a ChatML
byte-level BPE tokenizer trained on a few sentences, so every pipeline stage runs end to end
without downloading anything.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = [
    "Correct ONLY the Span. Return just the corrected Span.",
    "Context before: «She said that» Span: «it are» Context after: « fine today.»",
    "The quick brown fox jumps over the lazy dog. Their house is over there, they're late.",
    "I has went to the store yesterday and buyed some apples, but its raining now.",
    "system user assistant Context before after Span «» \\ \\n , . ; : ! ? ' \" ( ) - 0 1 2 3 4 5 6 7 8 9",
]


def build_tiny_tokenizer(vocab_size: int = 512):
    """ChatML tokenizer (byte-level BPE) whose pad token is distinct from end-of-turn."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHATML_TEMPLATE
    fast.model_max_length = 512
    fast.model_input_names = ["input_ids", "attention_mask"]
    return fast


def build_tiny_model(out_dir: str | Path, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """Save a random tiny Qwen2ForCausalLM + ChatML tokenizer to ``out_dir`` and return it."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    tokenizer = build_tiny_tokenizer()
    end_ids = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, rope_theta=1_000_000.0, tie_word_embeddings=True,
                         bos_token_id=None, eos_token_id=end_ids[0], pad_token_id=end_ids[1])
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=end_ids, pad_token_id=end_ids[1], do_sample=False,
                                               max_new_tokens=32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out, save_jinja_files=False)
    return out
