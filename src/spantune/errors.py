"""Errors that the CLI turns into one readable line instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class SpantuneError(Exception):
    """A failure the user can fix: the CLI prints its message on one line and exits 1."""


class InputError(SpantuneError):
    """Bad input at a known place; renders as ``FILE:LINE: field: message``."""

    def __init__(self, path: str | Path, line: int | None, field: str, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {field}: {message}")


class ModelNotFoundError(SpantuneError):
    """A model id or folder that cannot be loaded here; the message says where to put it."""
