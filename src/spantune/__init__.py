"""spantune: turn a small chat model into a span micro-editor and ship it to the browser."""

__version__ = "0.1.0"
