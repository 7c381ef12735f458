"""Source parsers: find the functions, methods, constructors and classes of six languages.

Public API: :func:`extract`, :func:`languages`, :func:`language_for_path`, :class:`Symbol`,
:class:`ParseError`, :class:`ParseTimeout`. This package imports only the standard library,
``tree_sitter`` and the grammar wheels.
"""

from __future__ import annotations

from parsers.errors import ParseError, ParseTimeout
from parsers.extract import extract
from parsers.registry import language_for_path, languages
from parsers.symbol import KINDS, Symbol

__all__ = ["KINDS", "ParseError", "ParseTimeout", "Symbol", "extract", "language_for_path", "languages"]
