"""Settings: every default in one place, loaded from ``REPO/.codesearch.toml`` and ``CODESEARCH_*``.

No other module reads the environment or the settings file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import UsageError

#: How a unit becomes the text the encoder sees; see ``types.document_text``.
DOC_TEXT_FORMATS = ("code", "header_code", "header_doc_code")
SEARCH_MODES = ("semantic", "lexical", "hybrid")
FUSIONS = ("rrf", "weighted", "coverage", "adaptive")
#: How the encoder runs: "auto" (fp32: numpy for queries and updates, torch for a full index), "numpy" or
#: "torch" (fp32 on that library only), "onnx" (ONNX Runtime, int8 weights: model.int8.onnx, its own vectors).
RUNTIMES = ("auto", "numpy", "torch", "onnx-fp32", "onnx")


@dataclass(frozen=True)
class Settings:
    """All tunables of codesearch.

    Attributes:
        model: Model directory (Hugging Face layout), or "base" for the packaged all-MiniLM-L6-v2; None (or
            "default") means the code-search model shipped in the package.
        index_dir: Where the index lives; None means ``REPO/.codesearch``.
        doc_text_format: How units are turned into encoder text (one of DOC_TEXT_FORMATS).
        max_length: Encoder max tokens per unit.
        batch_size: Units per encoder batch.
        threads: Encoder threads for indexing; 0 means all cores.
        runtime: How the encoder runs (one of RUNTIMES). The default "auto" computes the fp32 vectors in
            numpy for a one-shot ``codesearch query`` (quickest to load, no torch import), on ONNX
            Runtime's fused fp32 graph in the daemon and the LSP server (quickest per query) and on torch
            for a full ``codesearch index`` (faster in bulk); "numpy", "torch" and "onnx-fp32" use one
            library for everything (same vectors, same index); "onnx" uses ONNX Runtime with the model's
            int8 file (``model.int8.onnx``): other vectors, so switching rebuilds the index (int8 missed
            the quality budget on the paraphrased fixture queries, docs/benchmarks.md).
        max_file_bytes: Files larger than this are skipped (counted as ``too_large``).
        parse_timeout_ms: Time budget for parsing one file; a file over it is skipped (counted as
            ``parse_timeout``); 0 means no limit.
        ignore: Extra gitignore-style patterns to skip, on top of .gitignore and .codesearchignore.
        k: Default number of results.
        mode: Default ranking mode (one of SEARCH_MODES).
        oversample: Candidates fetched per side per result before fusion.
        fusion: How hybrid mode fuses the two sides: "adaptive" (min-max normalised scores, the
            semantic weight lowered from ``semantic_weight`` towards search.ADAPTIVE_STRONG_WEIGHT as
            the lexical side's match gets stronger), "coverage" (min-max normalised scores, each
            lexical score scaled by how much of the query the unit contains), "weighted" (min-max
            normalised scores) or "rrf" (reciprocal rank).
        semantic_weight: Weight of the semantic side in the fusion, in [0, 1] (for "adaptive": where
            the lexical side matches weakly).
        rrf_k: The constant of reciprocal-rank fusion.
        role_prior: Score factor for units that are not implementation code (tests, benchmarks, examples,
            generated code), so implementation ranks first; a query asking for tests ("test for ...")
            gets it the other way round, and a ``role:`` filter turns it off. 1 means no prior.
        debounce_ms: Watch daemon: a changed path is re-indexed once no event has touched it for this long.
        debounce_max_ms: Watch daemon: a path that keeps changing is re-indexed at the latest this long
            after its first pending event.
        auto_daemon: ``codesearch query`` and ``codesearch mcp`` start a background watch daemon for an
            indexed repository when none runs, so the next query is warm.
        daemon_idle_seconds: A daemon started that way exits after this long without a request or an
            update (0: never).
        backend: A search backend URI that ``codesearch index`` and ``codesearch query`` use instead of
            the local index: a Milvus Lite file (``org.db``) or a Milvus server (``http://host:port``);
            see docs/scale.md. None: the local index.
    """

    model: str | None = None
    index_dir: str | None = None
    doc_text_format: str = "header_doc_code"
    max_length: int = 128
    batch_size: int = 32
    threads: int = 0
    runtime: str = "auto"
    max_file_bytes: int = 1_000_000
    parse_timeout_ms: int = 2000
    ignore: tuple[str, ...] = field(default_factory=tuple)
    k: int = 10
    mode: str = "hybrid"
    oversample: int = 5
    fusion: str = "adaptive"
    semantic_weight: float = 0.85
    rrf_k: int = 60
    role_prior: float = 0.5
    debounce_ms: int = 300
    debounce_max_ms: int = 2000
    auto_daemon: bool = True
    daemon_idle_seconds: int = 1800
    backend: str | None = None

    def __post_init__(self) -> None:
        if self.doc_text_format not in DOC_TEXT_FORMATS:
            raise UsageError(
                f"unknown doc_text_format {self.doc_text_format!r} (choose from {', '.join(DOC_TEXT_FORMATS)})")
        if self.mode not in SEARCH_MODES:
            raise UsageError(f"unknown mode {self.mode!r} (choose from {', '.join(SEARCH_MODES)})")
        if self.runtime not in RUNTIMES:
            raise UsageError(f"unknown runtime {self.runtime!r} (choose from {', '.join(RUNTIMES)})")
        if self.fusion not in FUSIONS:
            raise UsageError(f"unknown fusion {self.fusion!r} (choose from {', '.join(FUSIONS)})")
        if not 0.0 <= self.semantic_weight <= 1.0:
            raise UsageError("setting semantic_weight must be between 0 and 1")
        if not 0.0 < self.role_prior <= 1.0:
            raise UsageError("setting role_prior must be above 0 and at most 1")
        for name in ("max_length", "batch_size", "max_file_bytes", "k", "oversample", "rrf_k"):
            if getattr(self, name) < 1:
                raise UsageError(f"setting {name} must be at least 1")
        if self.debounce_ms < 0 or self.debounce_max_ms < self.debounce_ms:
            raise UsageError("settings: need 0 <= debounce_ms <= debounce_max_ms")
        if self.parse_timeout_ms < 0:
            raise UsageError("setting parse_timeout_ms must be at least 0")
        if self.daemon_idle_seconds < 0:
            raise UsageError("setting daemon_idle_seconds must be at least 0")

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "tuple[str, ...]":
            if isinstance(value, str):
                return tuple(p.strip() for p in value.split(",") if p.strip())
            return tuple(str(v) for v in value)
        return None if value in (None, "") else str(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: bad value {value!r} for {name}") from None


def load_settings(repo: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build Settings from defaults, then ``REPO/.codesearch.toml``, then ``CODESEARCH_<NAME>`` variables.

    Args:
        repo: Repository root whose ``.codesearch.toml`` is read, if it exists.
        environ: Environment to read (defaults to ``os.environ``).

    Returns:
        The merged Settings. Unknown keys in the file are ignored.
    """
    env = os.environ if environ is None else environ
    names = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    if repo is not None:
        path = repo / ".codesearch.toml"
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise UsageError(f"{path}: cannot read settings: {exc}") from None
            for key, value in data.items():
                if key in names:
                    values[key] = _coerce(key, value, str(path))
    for name in names:
        raw = env.get(f"CODESEARCH_{name.upper()}")
        if raw is not None:
            values[name] = _coerce(name, raw, f"CODESEARCH_{name.upper()}")
    return Settings(**values)
