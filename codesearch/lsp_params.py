"""LSP front door, part 1: what clients send: server options (camelCase on the wire) and search requests."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pygls.exceptions import (
    JsonRpcInvalidParams,
)

from .config import SEARCH_MODES, Settings, load_settings

log = logging.getLogger(__name__)

#: Most results one search may ask for.
MAX_K = 1000


# --------------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class ServerOptions:
    """What a client can configure (``initializationOptions`` or the ``codesearch`` section of
    ``workspace/didChangeConfiguration``); camelCase on the wire, unknown keys ignored.

    Attributes:
        model: ``modelPath``: encoder model directory (default: the repository's settings).
        index_dir: ``indexDir``: index directory; relative paths are relative to each workspace root.
        k: ``k``: default number of results.
        mode: ``mode``: default ranking mode (hybrid, semantic, lexical).
        ignore: ``ignore`` (or ``ignorePatterns``): extra gitignore-style patterns.
        threads: ``threads``: torch threads of the encoder (0: all cores).
        debounce_ms: ``debounceMs``: delay after the last edit before a buffer is re-embedded (and the
            watcher's per-path debounce).
        watch: ``watch``: keep the index fresh with a file watcher (else only on save).
        backend: ``backend``: search this multi-repository backend (``org.db`` or ``http://host:port``;
            docs/scale.md) instead of the workspace folders' own indexes (default: the ``backend`` setting).
    """

    model: str | None = None
    index_dir: str | None = None
    k: int | None = None
    mode: str | None = None
    ignore: tuple[str, ...] | None = None
    threads: int | None = None
    debounce_ms: int | None = None
    watch: bool = True
    backend: str | None = None

    def settings_for(self, root: Path) -> Settings:
        """The repository's settings (``.codesearch.toml``, environment) with these options on top."""
        index_dir = self.index_dir
        if index_dir is not None and not Path(index_dir).expanduser().is_absolute():
            index_dir = str(root / index_dir)
        settings = load_settings(root).replace(model=self.model, index_dir=index_dir, k=self.k, mode=self.mode,
                                               ignore=self.ignore, threads=self.threads, backend=self.backend)
        if self.debounce_ms is not None:
            settings = settings.replace(debounce_ms=self.debounce_ms,
                                        debounce_max_ms=max(self.debounce_ms, settings.debounce_max_ms))
        return settings


_ALIASES = {"modelPath": "model", "ignorePatterns": "ignore", "indexDirectory": "index_dir"}


def _snake(name: str) -> str:
    return _ALIASES.get(name) or re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def parse_options(raw: Any, base: ServerOptions | None = None) -> tuple[ServerOptions, list[str]]:
    """Map client options onto ServerOptions.

    Args:
        raw: ``initializationOptions`` or configuration settings: an object, optionally wrapped in
            ``{"codesearch": {...}}``; None keeps ``base``.
        base: The options to start from (default: all defaults).

    Returns:
        (options, problems): a bad value is reported in ``problems`` and leaves that option as it was.
    """
    opts = base or ServerOptions()
    if raw is None:
        return opts, []
    if not isinstance(raw, dict):
        return opts, [f"options must be an object, not {type(raw).__name__}"]
    if isinstance(raw.get("codesearch"), dict):
        raw = raw["codesearch"]
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        name = _snake(str(key))
        try:
            if name in ("model", "index_dir", "backend"):
                if value is not None and not isinstance(value, str):
                    raise TypeError("a path string" if name != "backend" else "a backend URI string")
                changes[name] = value or None
            elif name in ("k", "threads", "debounce_ms"):
                if value is None:
                    changes[name] = None
                    continue
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError("an integer")
                low = 1 if name == "k" else 0
                if value < low or (name == "k" and value > MAX_K):
                    raise TypeError(f"an integer from {low}" + (f" to {MAX_K}" if name == "k" else ""))
                changes[name] = value
            elif name == "mode":
                if value is not None and value not in SEARCH_MODES:
                    raise TypeError(f"one of {', '.join(SEARCH_MODES)}")
                changes[name] = value
            elif name == "ignore":
                if isinstance(value, str):
                    value = [p.strip() for p in value.split(",") if p.strip()]
                if value is not None and not (isinstance(value, list) and all(isinstance(p, str) for p in value)):
                    raise TypeError("a list of patterns")
                changes[name] = None if value is None else tuple(value)
            elif name == "watch":
                if not isinstance(value, bool):
                    raise TypeError("true or false")
                changes[name] = value
        except TypeError as exc:
            problems.append(f"option {key!r} must be {exc}, not {json.dumps(value)}")
    return replace(opts, **changes), problems



# --------------------------------------------------------------------------------------------------
# Search requests


@dataclass(frozen=True)
class SearchRequest:
    """A validated ``codesearch/search`` request.

    Attributes:
        query: Query text (may hold ``lang:``/``path:``/``kind:`` filters and quoted phrases).
        k: Number of results (None: settings).
        languages: Language filters.
        paths: Path prefix or glob filters.
        kinds: Kind filters.
        mode: Ranking mode (None: settings).
        root: Only this workspace folder (a URI or path), or None for all.
    """

    query: str
    k: int | None = None
    languages: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    mode: str | None = None
    root: str | None = None

    @classmethod
    def from_json(cls, raw: Any) -> SearchRequest:
        """Validate request params; raises JsonRpcInvalidParams naming the bad field."""
        if isinstance(raw, str):
            raw = {"query": raw}
        if not isinstance(raw, dict):
            raise JsonRpcInvalidParams(f"params must be an object with a 'query', not {type(raw).__name__}")
        query = raw.get("query")
        if not isinstance(query, str) or not query.strip():
            raise JsonRpcInvalidParams("'query' must be a non-empty string")
        k = raw.get("k")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K):
            raise JsonRpcInvalidParams(f"'k' must be an integer from 1 to {MAX_K}")
        mode = raw.get("mode")
        if mode is not None and mode not in SEARCH_MODES:
            raise JsonRpcInvalidParams(f"'mode' must be one of {', '.join(SEARCH_MODES)}")
        root = raw.get("root", raw.get("workspaceFolder"))
        if root is not None and not isinstance(root, str):
            raise JsonRpcInvalidParams("'root' must be a URI string")
        return cls(query=query, k=k, mode=mode, root=root,
                   languages=_strings(raw, "language", "languages"), paths=_strings(raw, "path", "paths"),
                   kinds=_strings(raw, "kind", "kinds"))


def _strings(raw: dict[str, Any], *names: str) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        value = raw.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out += value
        else:
            raise JsonRpcInvalidParams(f"'{name}' must be a string or a list of strings")
    return tuple(out)


def command_request(args: Sequence[Any]) -> SearchRequest:
    """The SearchRequest of ``codesearch.search`` arguments: ``[{...}]``, ``["query"]`` or ``["query", k]``."""
    if len(args) == 1:
        return SearchRequest.from_json(args[0])
    if len(args) == 2 and isinstance(args[0], str):
        return SearchRequest.from_json({"query": args[0], "k": args[1]})
    raise JsonRpcInvalidParams("codesearch.search takes one argument: {query, k?, language?, path?, kind?, mode?}")
