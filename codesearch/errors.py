"""Typed errors. The CLI turns each into one line on stderr and a non-zero exit code."""

from __future__ import annotations


class CodesearchError(Exception):
    """Base class: an error the user can act on; ``str(err)`` is the one-line message."""

    exit_code = 1


class UsageError(CodesearchError):
    """A bad option, path or argument."""

    exit_code = 2


class IndexMissing(CodesearchError):
    """No index where one was expected."""


class IndexStale(CodesearchError):
    """The index was built with another format or model than the one asked for."""


class IndexCorrupt(CodesearchError):
    """The index files exist but cannot be read."""


class IndexLocked(CodesearchError):
    """Another process holds the index's writer lock."""


class ModelError(CodesearchError):
    """The encoder model directory is missing or unusable."""


class BackendUnavailable(CodesearchError):
    """A search backend (``--backend URI``) cannot be opened, reached or used."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``exc``'s message (its type name if it has none), at most ``limit`` characters."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]
