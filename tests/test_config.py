from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from spantune.config import load_config
from spantune.errors import SpantuneError


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10
    targets: list[str] = field(default_factory=lambda: ["q_proj"])
    bf16: bool = False
    name: str | None = None


@dataclass
class Outer:
    train: Inner = field(default_factory=Inner)
    seed: int = 0


def test_yaml_then_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("seed: 3\ntrain:\n  lr: 1e-4\n  steps: 5\n")
    cfg = load_config(Outer, p, ["--train.lr", "2e-5", "--train.targets=q_proj,v_proj", "--train.bf16", "true",
                                 "--train.name", "x"])
    assert cfg.seed == 3 and cfg.train.steps == 5 and cfg.train.lr == 2e-5
    assert cfg.train.targets == ["q_proj", "v_proj"] and cfg.train.bf16 is True and cfg.train.name == "x"


@pytest.mark.parametrize("yaml_text, overrides, msg", [
    ("train:\n  lrr: 1\n", [], "unknown config key train.lrr"),
    ("train:\n  steps: many\n", [], "config key train.steps: expected int"),
    ("", ["--train.steps", "x"], "config key train.steps: expected int"),
    ("", ["--nope", "1"], "unknown config key nope"),
    ("", ["--train.lr"], "needs a value"),
    ("train: [1\n", [], "invalid YAML"),
])
def test_bad_configs_name_the_key(tmp_path: Path, yaml_text: str, overrides: list[str], msg: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(SpantuneError, match=msg):
        load_config(Outer, p, overrides)
