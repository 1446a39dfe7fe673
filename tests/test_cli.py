from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spantune.cli import COMMANDS, build_parser, main

GOOD = {"ctx_before": "She said", "span_in": "it are", "ctx_after": " fine.", "span_out": "it is"}


def _bad_file(tmp_path: Path) -> Path:
    p = tmp_path / "bad.jsonl"
    rows = [json.dumps(GOOD), "{oops", json.dumps({k: v for k, v in GOOD.items() if k != "span_out"}),
            json.dumps({**GOOD, "span_in": 5}), json.dumps({**GOOD, "pad": "x" * 100_000}), json.dumps(GOOD)]
    p.write_text("\n".join(rows) + "\n")
    return p


def test_data_check_reports_each_bad_line(tmp_path: Path, capsys) -> None:
    assert main(["data", "check", str(_bad_file(tmp_path))]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[1] for line in err] == ["2", "3", "4", "5"]
    assert "span_out: missing required field" in err[1]


def test_data_check_skip_bad_writes_good_lines_intact(tmp_path: Path) -> None:
    src = _bad_file(tmp_path)
    before = src.read_bytes()
    out = tmp_path / "good.jsonl"
    assert main(["data", "check", str(src), "--skip-bad", "--out", str(out)]) == 0
    assert out.read_text().splitlines() == [json.dumps(GOOD)] * 2
    rejects = [json.loads(x) for x in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5]
    assert src.read_bytes() == before  # input never modified


def test_fix_missing_model_fails_in_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "spantune", "fix", "--model", "/nonexistent", "--span", "teh"],
                          capture_output=True, text=True, timeout=60)  # a hang fails here, not a slow machine
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_fix_jsonl_validates_input_before_loading_the_model(tmp_path: Path, capsys) -> None:
    """A bad line is reported (file, line, field) even though the model does not exist: nothing is loaded
    for input that would fail later, and nothing is written."""
    out = tmp_path / "out.jsonl"
    assert main(["fix", "--model", "/nonexistent", "--jsonl", str(_bad_file(tmp_path)), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.jsonl:2" in err and "not found" not in err
    assert not out.exists()


def test_fix_on_tiny_model(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["fix", "--model", str(tiny_model_dir), "--before", "She said", "--span", "it are",
                 "--after", " fine.", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.strip()  # a random model says something; post-processing keeps it one line
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(GOOD) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["fix", "--model", str(tiny_model_dir), "--jsonl", str(src), "--out", str(out),
                 "--max-new-tokens", "4"]) == 0
    row = json.loads(out.read_text())
    assert {"prediction", "raw", "overrun", "verbose", "fallback", "latency_s"} <= set(row)


def test_help_lists_subcommands_without_loading_torch() -> None:
    """Building the parser imports every command module, so a top-level torch import there would slow every call."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "spantune", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "fix" in proc.stdout and "data" in proc.stdout
    heavy = [line for line in proc.stderr.splitlines() if re.search(r"\|\s*(torch|transformers|trl)\b", line)]
    assert not heavy, heavy


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every subcommand argparse knows, in help order, a group's children right after it ("data", "data check")."""
    names: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                names += [prefix + name, *_subcommands(sub, f"{prefix}{name} ")]
    return names


def test_help_order_is_the_command_table() -> None:
    assert _subcommands(build_parser()) == list(COMMANDS)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_of_every_command(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*command.split(), "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: spantune {command} ")


def test_sigterm_mid_export_leaves_no_temp_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A killed export cleans up like Ctrl-C: no hidden temp folder, no output folder, exit 130."""
    import signal

    out = tmp_path / "export"
    proc = subprocess.Popen([sys.executable, "-m", "spantune", "export", "--model", str(tiny_model_dir),
                             "--out", str(out), "--no-verify"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".export.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "export finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not list(tmp_path.iterdir()), sorted(p.name for p in tmp_path.iterdir())
