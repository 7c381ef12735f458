"""Errors raised by the parsers package."""

from __future__ import annotations


class ParseError(ValueError):
    """The input is not source text: it contains NUL bytes or is not valid UTF-8."""


class ParseTimeout(Exception):
    """Parsing (or matching the definition query over) a file took longer than its time budget.

    Attributes:
        budget: The budget in seconds.
    """

    def __init__(self, message: str, budget: float) -> None:
        super().__init__(message)
        self.budget = budget
