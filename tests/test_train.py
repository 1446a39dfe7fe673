"""Training on the tiny random model: masking, loss going down, determinism, run folder, bad configs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from train_helpers import (ROOT, adapter_tensors, loss_and_grads, metrics, span_rows, train_mode_with_nonzero_lora_b,
                           write_config, write_jsonl)

from spantune.cli import main
from spantune.config import load_config
from spantune.errors import SpantuneError
from spantune.schema import SpanExample


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _prepare(tmp_path: Path, model_dir: Path, **sections):
    from spantune.train import TrainConfig, prepare

    cfg = load_config(TrainConfig, write_config(tmp_path, model_dir, **sections))
    return prepare(cfg, tmp_path / "run", resume=False)


# ---------------------------------------------------------------- masking and padding


def test_encode_masks_prompt_and_trains_reply_and_end_of_turn(tiny_model_dir: Path) -> None:
    from spantune.models import load_tokenizer
    from spantune.prompt import render
    from spantune.train import IGNORE_INDEX, choose_pad_token, encode_example

    tok = load_tokenizer(str(tiny_model_dir))
    choose_pad_token(tok)
    ex = SpanExample(ctx_before="She said that", span_in=" it are", ctx_after=" fine.", span_out=" it is")
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    enc = encode_example(tok, ex, [eot])

    # the prompt part is exactly what inference feeds the model, and none of it is trained
    inference_prompt = tok(render(tok, ex), add_special_tokens=False)["input_ids"]
    assert enc.input_ids[: enc.prompt_len] == inference_prompt
    assert enc.labels[: enc.prompt_len] == [IGNORE_INDEX] * enc.prompt_len
    # everything after it is trained: the reply, then the end-of-turn token, and nothing more
    reply = enc.labels[enc.prompt_len:]
    assert reply == enc.input_ids[enc.prompt_len:]
    assert reply[-1] == eot and eot not in reply[:-1]
    assert tok.decode(reply[:-1]) == ex.span_out
    assert tok.pad_token_id != eot


def test_batches_mask_prompt_and_padding(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Through TRL's dataset preparation and collator: only reply + end-of-turn tokens carry labels."""
    from spantune.train import build_trainer, sft_config

    prep = _prepare(tmp_path, tiny_model_dir)
    trainer = build_trainer(prep, sft_config(prep.config, tmp_path / "run", False, False, False), "fp32")
    eot = prep.tokenizer.convert_tokens_to_ids("<|im_end|>")
    span_outs = {r["span_out"] for r in span_rows(64, 1)}
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert (attn == 0).any(), "the batch should need padding for this test to mean something"
    for row_ids, row_labels, row_attn in zip(ids.tolist(), labels.tolist(), attn.tolist()):
        n = sum(row_attn)
        trained = [i for i, lab in enumerate(row_labels) if lab != -100]
        assert trained == list(range(trained[0], n)), "labels: one block that ends at the last real token"
        assert all(lab == -100 for lab in row_labels[n:]), "padding is never trained"
        assert row_labels[n - 1] == eot
        assert [row_ids[i] for i in trained] == [row_labels[i] for i in trained]
        assert prep.tokenizer.decode(row_ids[: trained[0]]).endswith("<|im_start|>assistant\n")
        assert prep.tokenizer.decode(row_ids[trained[0]: n - 1]) in span_outs


def test_reply_only_logits_give_the_full_logits_loss(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The loss computed at the kept positions equals the model's own loss over the full logits."""
    from spantune.train import build_trainer, sft_config

    prep = _prepare(tmp_path, tiny_model_dir)
    trainer = build_trainer(prep, sft_config(prep.config, tmp_path / "run", False, False, False), "fp32")
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model.eval()
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch))
        reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"]).loss
    assert torch.allclose(ours, reference, atol=1e-5), (ours, reference)


def test_packed_batch_runs_each_row_to_its_last_trained_position() -> None:
    """Packing drops every token after a row's last trained position (end-of-turn, padding); each trained position
    keeps its token, its position in its own row, and each row's slots hold its own tokens in order."""
    from spantune.train.loss import pack_shared_prefix

    x = -100
    input_ids = torch.tensor([[1, 2, 10, 11, 12, 13, 0, 0], [1, 2, 20, 21, 22, 23, 24, 25], [1, 2, 30, 31, 32, 0, 0, 0],
                              [1, 2, 40, 0, 0, 0, 0, 0]])
    labels = torch.tensor([[x, x, x, x, 12, 13, x, x], [x, x, x, x, x, x, 24, 25], [x, x, x, x, 32, x, x, x],
                           [x] * 8])  # the last row trains nothing
    packed = pack_shared_prefix(input_ids, labels, prefix=2)
    assert packed.ids.tolist() == [[1, 2, 10, 11, 12, 20, 21, 22, 23, 24, 30, 31]]
    assert packed.positions.tolist() == [[0, 1, 2, 3, 4, 2, 3, 4, 5, 6, 2, 3]]
    assert packed.ids[0, packed.index].tolist() == [11, 12, 23, 24, 31]  # the tokens before 12, 13, 24, 25, 32
    assert packed.targets.tolist() == [12, 13, 24, 25, 32]
    rows, width = 4, 5
    assert packed.mask.shape == (rows, 1, width, 2 + width)
    real = packed.mask[:, 0, -1, 2:]  # the keys a row's last slot may see: its own real tokens
    assert real.sum(1).tolist() == [3, 5, 2, 0]
    own = packed.ids[0, 2:]
    laid_out = torch.cat([own, torch.tensor([-1])])[packed.slots].view(rows, width)  # -1: an empty slot
    assert laid_out.tolist() == [[10, 11, 12, -1, -1], [20, 21, 22, 23, 24], [30, 31, -1, -1, -1], [-1] * 5]
    assert (laid_out != -1).equal(real)
    assert packed.slots[packed.tokens].tolist() == list(range(own.numel()))


def test_relayout_gradient_is_the_scatter_add_it_replaces() -> None:
    """The packed layout's gather (empty slots read zeros) back-propagates by gathering with its inverse: the same
    gradient as autograd's scatter-add of the plain gather, in both directions of the layout."""
    from spantune.train.loss import Relayout, pack_shared_prefix

    x = -100
    labels = torch.tensor([[x, x, x, 5, 6], [x, x, x, x, 9], [x, x, x, 3, x]])  # the last row leaves a slot empty
    packed = pack_shared_prefix(torch.arange(15).view(3, 5), labels, prefix=2)
    n, slots = packed.tokens.numel(), packed.slots.numel()
    for source, index, inverse in ((n, packed.slots, packed.tokens), (slots, packed.tokens, packed.slots)):
        values = torch.randn(2, source, 4, requires_grad=True)
        picked = Relayout.apply(values, 1, index, inverse)
        plain = torch.cat([values, torch.zeros(2, 1, 4)], dim=1)[:, index]
        assert picked.equal(plain)
        weights = torch.randn(plain.shape)
        expected, = torch.autograd.grad((plain * weights).sum(), values)
        got, = torch.autograd.grad((picked * weights).sum(), values)
        assert got.equal(expected)


@pytest.mark.parametrize(("attention", "checkpointing"), [("sdpa", False), ("eager", False), ("sdpa", True)])
def test_shared_prefix_gives_the_plain_loss_and_gradients(tmp_path: Path, tiny_model_dir: Path, attention: str,
                                                          checkpointing: bool) -> None:
    """Running the batch's common prompt head once (the batch packed around it under a block mask) changes neither
    the loss nor any adapter gradient beyond float32 rounding (relative 1e-4), with either kind of mask and under
    gradient checkpointing."""
    from spantune.train import build_trainer, sft_config
    from spantune.train.loss import kept_positions, shared_prefix_length, use_packed_attention

    prep = _prepare(tmp_path, tiny_model_dir, lora={"dropout": 0.0},  # train mode: no random masks
                    model={"gradient_checkpointing": checkpointing})
    trainer = build_trainer(prep, sft_config(prep.config, tmp_path / "run", False, False, False), "fp32")
    if checkpointing:  # as Trainer.train() switches it on
        trainer.model.gradient_checkpointing_enable(trainer.args.gradient_checkpointing_kwargs)
        assert trainer.args.gradient_checkpointing and trainer.model.is_gradient_checkpointing
    batch = dict(next(iter(trainer.get_train_dataloader())))
    prefix = shared_prefix_length(batch["input_ids"], batch["attention_mask"], kept_positions(batch["labels"]))
    assert prefix >= 10, "the rows should share the template head for this test to mean something"
    assert (batch["attention_mask"] == 0).any(), "the batch should need padding, which packing drops"
    train_mode_with_nonzero_lora_b(trainer)
    trainer.model.get_base_model().set_attn_implementation(attention)
    assert use_packed_attention(trainer.model)  # the plain path below runs through its wrapper too
    trainer.shared_prefix = False
    plain, plain_grads = loss_and_grads(trainer, batch)
    trainer.shared_prefix = True
    shared, shared_grads = loss_and_grads(trainer, batch)
    assert torch.allclose(shared, plain, rtol=1e-4, atol=1e-6), (shared, plain)
    assert plain_grads.keys() == shared_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        assert grad.abs().sum() > 0, name
        assert torch.allclose(shared_grads[name], grad, rtol=1e-4, atol=1e-6), name


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # layer 0's inputs need no gradient: the point
def test_top_layers_adapt_only_the_last_layers_and_the_backward_stops_there(tmp_path: Path,
                                                                         tiny_model_dir: Path) -> None:
    """lora.top_layers 1 on the 2-layer tiny model: every linear module of layer 1 gets an adapter, layer 0 none,
    and the backward pass never reaches layer 0 (no gradient is computed for its output)."""
    from spantune.train import build_trainer, sft_config
    from spantune.train.compiled import decoder_layers

    prep = _prepare(tmp_path, tiny_model_dir, lora={"target_modules": ["all-linear"], "top_layers": 1})
    trainer = build_trainer(prep, sft_config(prep.config, tmp_path / "run", False, False, False), "fp32")
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert trainable and all(".layers.1." in n for n in trainable)
    reached = {0: 0, 1: 0}
    for i, layer in enumerate(decoder_layers(trainer.model)):
        layer.register_full_backward_hook(lambda *_, i=i: reached.__setitem__(i, reached[i] + 1))
    loss, grads = loss_and_grads(trainer, dict(next(iter(trainer.get_train_dataloader()))))
    assert loss.isfinite() and grads
    assert reached == {0: 0, 1: 1}


def test_pad_token_never_ends_the_turn(tiny_model_dir: Path) -> None:
    from spantune.models import load_tokenizer
    from spantune.train import choose_pad_token

    tok = load_tokenizer(str(tiny_model_dir))
    tok.pad_token = tok.eos_token  # the design document's `tok.pad_token = tok.eos_token`
    assert choose_pad_token(tok) == "<|endoftext|>"
    with pytest.raises(SpantuneError, match="ends the turn"):
        choose_pad_token(tok, requested="<|im_end|>")


# ---------------------------------------------------------------- training runs


def _reply_loss(model_name: str, prep) -> float:
    """Mean cross-entropy over the trained (reply + end-of-turn) tokens of the whole training set."""
    from spantune.models import load_model_and_tokenizer

    model = load_model_and_tokenizer(model_name, device="cpu", dtype="fp32")[0]
    total, count = 0.0, 0
    with torch.no_grad():
        for enc in prep.train_encoded:
            ids, labels = torch.tensor([enc.input_ids]), torch.tensor([enc.labels])
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=ids, labels=labels).loss) * n
            count += n
    return total / count


def test_30_step_run_lowers_loss_and_writes_run_folder(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = write_config(tmp_path, tiny_model_dir, train={"max_steps": 30, "save_steps": 10}, eval={"steps": 10})
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0

    rows = metrics(run)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 15
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    # the training loss of the whole training set, without batch noise: base model vs trained adapter
    (tmp_path / "check").mkdir()
    prep = _prepare(tmp_path / "check", tiny_model_dir)
    before, after = _reply_loss(str(tiny_model_dir), prep), _reply_loss(str(run), prep)
    assert after < before - 0.3, (before, after)
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evals] == [10, 20, 30]
    for key in ("eval_exact_match", "eval_chrf", "eval_verbose_rate", "eval_noop_false_edit_rate"):
        assert all(key in r for r in evals), key
    assert all(r["tokens_per_s"] > 0 for r in rows if "loss" in r and r["step"] > 2)

    for name in ("config.yaml", "run_info.json", "metrics.jsonl", "curves.png", "README.md",
                 "adapter/adapter_model.safetensors", "adapter/adapter_config.json", "adapter/tokenizer.json"):
        assert (run / name).is_file(), name
    info = json.loads((run / "run_info.json").read_text())
    assert set(info["data"]) == {"train", "eval"} and len(info["data"]["train"]["sha256"]) == 64
    assert info["packages"]["trl"] and info["packages"]["peft"]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"] == 30
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (run / "README.md").read_text()
    assert "optimizer steps: 30" in card and "best checkpoint: step" in card
    # the helpers' data files have no manifest: run_info and the card say their licences are unknown
    assert info["data"]["train"]["sources"] == "unknown (no manifest)"
    assert f"on `{info['data']['eval']['path']}` (sources: unknown (no manifest))" in card
    assert "are unknown (no manifest): check them before any commercial use" in card

    # the saved adapter is the best checkpoint's (by exact match), and it loads for inference
    state = json.loads((run / "checkpoints" / "checkpoint-30" / "trainer_state.json").read_text())
    best_dir = Path(state["best_model_checkpoint"])
    from safetensors.torch import load_file

    best = load_file(str(best_dir / "adapter_model.safetensors"))
    assert all(torch.equal(best[k], v) for k, v in adapter_tensors(run).items())
    from spantune.infer.torch_backend import TorchCorrector

    pred = TorchCorrector.load(str(run), device="cpu", max_new_tokens=4).correct(
        SpanExample("She said that", " it are", " fine.", " it is"))
    assert isinstance(pred.text, str)


def test_a_max_steps_run_encodes_only_the_examples_it_draws(tmp_path: Path, tiny_model_dir: Path,
                                                           monkeypatch) -> None:
    """12 steps of 4 = 48 of the 64 examples, seeded; under 2 processes (WORLD_SIZE) all 64; epochs: all."""
    def drawn(name: str, **train) -> list[str]:
        prep = _prepare(tmp_path / name, tiny_model_dir, train=train)
        assert prep.train_available == 64
        return [prep.tokenizer.decode(e.input_ids) for e in prep.train_encoded]

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir(), (tmp_path / "d").mkdir()
    first = drawn("a", max_steps=12, seed=1)
    assert len(first) == 48
    assert drawn("b", max_steps=12, seed=1) == first
    assert drawn("c", max_steps=12, seed=2) != first
    assert len(drawn("d", max_steps=-1, epochs=1.0)) == 64
    monkeypatch.setenv("WORLD_SIZE", "2")
    (tmp_path / "e").mkdir()
    assert len(drawn("e", max_steps=12, seed=1)) == 64


def test_same_seed_same_adapter_and_other_seed_differs(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = write_config(tmp_path, tiny_model_dir, train={"max_steps": 6, "save_steps": 6}, eval={"steps": 0})
    runs = {}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        runs[name] = tmp_path / name
        assert main(["train", "--config", str(cfg), "--out", str(runs[name]), "--train.seed", seed]) == 0
    a, b, c = (adapter_tensors(runs[n]) for n in "abc")
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed must give bit-identical adapters on CPU"
    assert any(not torch.equal(a[k], c[k]) for k in a), "another seed must change the adapter"


def test_time_budget_stops_with_checkpoint_and_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = write_config(tmp_path, tiny_model_dir, train={"max_steps": 500, "max_minutes": 0.001},
                       eval={"steps": 4})
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert "time budget" in (run / "README.md").read_text()
    evals = [r for r in metrics(run) if "eval_exact_match" in r]
    assert evals and evals[-1]["step"] < 500  # a last evaluation at the stop


def test_early_stopping_on_exact_match_keeps_the_best_checkpoint(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = write_config(tmp_path, tiny_model_dir, train={"max_steps": 60, "save_steps": 2},
                       eval={"steps": 2, "patience": 1, "sample": 8})
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0
    evals = [r for r in metrics(run) if "eval_exact_match" in r]
    last = evals[-1]["step"]
    assert last < 60 and "early stopping" in (run / "README.md").read_text()
    # it stopped at the first evaluation that did not beat the best one so far
    ems = [r["eval_exact_match"] for r in evals]
    assert ems[-1] <= max(ems[:-1]) and all(b > a for a, b in zip(ems[:-2], ems[1:-1]))
    state = json.loads((run / "checkpoints" / f"checkpoint-{last}" / "trainer_state.json").read_text())
    assert state["best_metric"] == max(ems)
    best = state["best_model_checkpoint"]
    from safetensors.torch import load_file

    kept = load_file(str(Path(best) / "adapter_model.safetensors"))
    assert all(torch.equal(kept[k], v) for k, v in adapter_tensors(run).items())


def test_existing_run_folder_needs_resume(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    cfg = write_config(tmp_path, tiny_model_dir, train={"max_steps": 2, "save_steps": 2}, eval={"steps": 0})
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--config", str(cfg), "--out", str(run), "--resume"]) == 1
    assert "finished run" in capsys.readouterr().err


# ---------------------------------------------------------------- shipped recipes


def test_qwen_recipe_is_the_design_documents() -> None:
    from spantune.train import TrainConfig, check_values

    cfg = load_config(TrainConfig, ROOT / "configs" / "train" / "qwen2.5-0.5b_lora_cuda.yaml")
    check_values(cfg)
    assert cfg.model.name == "Qwen/Qwen2.5-0.5B-Instruct" and cfg.model.precision == "auto"
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules) == (16, 32, 0.05,
                                                                                       ["q_proj", "v_proj"])
    assert (cfg.train.learning_rate, cfg.train.lr_scheduler, cfg.train.epochs, cfg.train.max_length) == (
        5e-5, "cosine", 3.0, 512)


def test_cpu_demo_recipe_runs_end_to_end_on_the_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The real recipe file, shortened by overrides only: the path `make demo` takes, in seconds."""
    train = write_jsonl(tmp_path / "train.jsonl", span_rows(48, 1))
    evals = write_jsonl(tmp_path / "eval.jsonl", span_rows(12, 2))
    run = tmp_path / "run"
    assert main(["train", "--config", str(ROOT / "configs" / "train" / "smollm2-135m_lora_cpu-demo.yaml"), "--out", str(run),
                 "--model.name", str(tiny_model_dir), "--data.train", str(train), "--data.eval", str(evals),
                 "--train.max_steps", "4", "--train.save_steps", "2", "--eval.steps", "2", "--eval.sample", "4",
                 "--train.threads", "1"]) == 0
    assert [r["step"] for r in metrics(run) if "eval_exact_match" in r] == [2, 4]
    assert "targets all-linear" in (run / "README.md").read_text()


# ---------------------------------------------------------------- bad configs fail before any model loads


def _bad_yaml(tmp: Path, model_dir: Path, edit) -> Path:
    path = write_config(tmp, model_dir)
    data = yaml.safe_load(path.read_text())
    edit(data, tmp)
    path.write_text(yaml.safe_dump(data))
    return path


def _bad_line(data: dict, tmp: Path) -> None:
    rows = [json.dumps(r) for r in span_rows(5, 3)]
    rows[2] = json.dumps({"ctx_before": "a", "span_in": "b", "ctx_after": "c"})
    (tmp / "bad.jsonl").write_text("\n".join(rows) + "\n")
    data["data"]["train"] = str(tmp / "bad.jsonl")


BAD_CONFIGS = {
    "unknown key": (lambda d, t: d["train"].update(learning_rat=1e-3), [], r"unknown config key train\.learning_rat"),
    "wrong type": (lambda d, t: d["lora"].update(r="sixteen"), [], r"config key lora\.r: expected int"),
    "bad value": (lambda d, t: d["train"].update(lr_scheduler="zigzag"), [], r"train\.lr_scheduler: choose one of"),
    "missing data file": (lambda d, t: d["data"].update(eval=str(t / "nope.jsonl")), [],
                          r"config key data\.eval: data file .*nope\.jsonl not found"),
    "data failing the schema": (_bad_line, [], r"bad\.jsonl:3: span_out: missing required field"),
    "max length below the longest prompt": (lambda d, t: None, ["--train.max_length", "20"],
                                            r"train\.jsonl:\d+: train\.max_length: 20 tokens is shorter"),
    "no adapted layer": (lambda d, t: None, ["--lora.top_layers", "0"], r"config key lora\.top_layers: must be > 0"),
    "bad CLI override type": (lambda d, t: None, ["--train.batch_size", "eight"],
                              r"config key train\.batch_size: expected int"),
    "qlora without CUDA": (lambda d, t: None, ["--qlora"], r"--qlora \(model\.qlora\) needs a CUDA GPU"),
    "bf16 without CUDA or native bf16": (lambda d, t: None, ["--model.precision", "bf16"],
                                         r"config key model\.precision: bf16 needs a CUDA GPU or a CPU with native"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_one_line_error_before_model_load(case: str, tmp_path: Path, tiny_model_dir: Path,
                                                        monkeypatch, capsys) -> None:
    from spantune.train import trainer

    if "without CUDA" in case and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)  # a CPU without bf16
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was validated")

    monkeypatch.setattr(trainer, "load_base_model", no_model)
    edit, extra, message = BAD_CONFIGS[case]
    cfg = _bad_yaml(tmp_path, tiny_model_dir, edit)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spantune: error: "), err
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "run").exists()
