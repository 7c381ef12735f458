"""Errors raised by the parsers package."""

from __future__ import annotations


class ParseError(ValueError):
    """The input is not source text: it contains NUL bytes or is not valid UTF-8."""
