"""Build or update an index: walk -> parse -> diff by content -> embed what is new -> publish.

The same code path serves a first build, an incremental update, a rebuild after a model or format
change, and the daemon's per-path updates (``paths=``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import parsers
from parsers import ParseError, ParseTimeout, Symbol

from .config import Settings
from .embed import Embedder, ModelInfo, cpu_threads, load_embedder, read_model_info
from .errors import UsageError
from .index import (
    INDEX_FEATURE_VERSION,
    INDEX_FORMAT_VERSION,
    FileRecord,
    IndexWriter,
    WriterLock,
    dumps_meta,
    find_index_dir,
)
from .types import document_text
from .walk import FileEntry, Ignorer, entry_for, walk

log = logging.getLogger(__name__)

#: progress(phase, done, total): phase is "scan", "parse" or "embed".
Progress = Callable[[str, int, int], None]

#: Files above this size are checked for minified content.
_MINIFIED_MIN_BYTES = 2048
_MINIFIED_MAX_LINE = 5000
_MINIFIED_MEAN_LINE = 300
#: Texts embedded between two commits of the vector cache (and progress updates).
_EMBED_CHUNK = 64
#: From this many texts to embed, runtime "auto" encodes on torch (1.4x numpy's bulk rate per core, and on
#: both cores, docs/benchmarks.md) rather than numpy: below it, torch's import (2-3 s) costs more than it saves.
BULK_TEXTS = 256


@dataclass
class IndexReport:
    """What an index run did (printed by ``codesearch index``; JSON with ``--json``)."""

    root: str
    index_dir: str
    files: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    units: int = 0
    units_added: int = 0
    units_removed: int = 0
    embedded: int = 0
    tokens: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    rebuild_reason: str | None = None
    generation: int = 0
    #: Whether this run wrote a new FAISS snapshot (most small updates write none).
    snapshot_written: bool = False
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def units_per_second(self) -> float:
        """Embedding throughput of this run."""
        return self.embedded / self.embed_seconds if self.embed_seconds else 0.0


def text_hash(model: ModelInfo, fmt: str, max_length: int, text: str) -> str:
    """Cache key of one embedded text: it changes with the model, the format, the limit and the text."""
    h = hashlib.sha256()
    for part in (model.key, fmt, str(max_length), text):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def classify(data: bytes) -> str | None:
    """Why file content cannot be indexed ("binary", "minified"), or None if it can."""
    if b"\0" in data[:8192]:
        return "binary"
    if len(data) > _MINIFIED_MIN_BYTES:
        lines = data.count(b"\n") + 1
        longest = max((len(line) for line in data.split(b"\n")), default=0)
        if longest > _MINIFIED_MAX_LINE or len(data) / lines > _MINIFIED_MEAN_LINE:
            return "minified"
    return None


@functools.cache
def _parser_versions() -> str:
    names = ["tree-sitter", "tree-sitter-python", "tree-sitter-java", "tree-sitter-javascript",
             "tree-sitter-go", "tree-sitter-php", "tree-sitter-ruby"]
    out = []
    for n in names:
        try:
            out.append(f"{n}=={metadata.version(n)}")
        except metadata.PackageNotFoundError:
            out.append(f"{n}==?")
    return ",".join(out)


def index_meta(model: ModelInfo, settings: Settings) -> dict[str, str]:
    """The meta values an index built with ``model`` and ``settings`` records."""
    return dumps_meta({
        "format_version": str(INDEX_FORMAT_VERSION),
        "feature_version": str(INDEX_FEATURE_VERSION),
        "model_id": model.model_id,
        "model_sha256": model.sha256,
        "model_key": model.key,
        "model_path": model.path,
        "dim": str(model.dim),
        "pooling": "mean",
        "normalize": "true",
        "doc_text_format": doc_format(model, settings),
        "max_length": str(model.max_length),
        "hash_algo": "sha256",
        "parsers": _parser_versions(),
    })


def doc_format(model: ModelInfo, settings: Settings) -> str:
    """The document text format: the model manifest's if it names one, else the settings'."""
    return model.doc_text_format or settings.doc_text_format


def _read_file(root: Path, entry: FileEntry, max_bytes: int) -> tuple[str, bytes | None, str]:
    """(status, data, error) for one file; status "ok" means data holds its bytes."""
    if entry.size > max_bytes:
        return "too_large", None, f"{entry.size} bytes > {max_bytes}"
    try:
        with open(root / entry.path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        return "vanished", None, ""
    except OSError as exc:
        return "unreadable", None, exc.strerror or str(exc)
    if len(data) > max_bytes:
        return "too_large", None, f"more than {max_bytes} bytes"
    reason = classify(data)
    if reason:
        return reason, None, ""
    return "ok", data, ""


def index_repository(root: Path, settings: Settings, embedder: Embedder | None = None,
                     progress: Progress | None = None, paths: Iterable[str] | None = None,
                     lock: bool = True) -> IndexReport:
    """Create or update the index of ``root``.

    Args:
        root: Repository root.
        settings: Settings (model, index_dir, text format, limits, ignores).
        embedder: Encoder to use; None loads the configured model, only if something needs embedding.
        progress: Optional progress callback.
        paths: If given, only these repository-relative paths are re-checked (the daemon's fast
            path); otherwise the whole tree is walked and anything gone is removed.
        lock: Take the writer lock for this run; False when the caller already holds it (the
            watch daemon holds it for its whole life).

    Returns:
        An IndexReport.

    Raises:
        UsageError: ``root`` is not a directory.
        IndexLocked: another writer holds the index.
    """
    started = time.perf_counter()
    paths = None if paths is None else list(paths)
    root = root.expanduser()
    if not root.is_dir():
        raise UsageError(f"not a directory: {root}")
    root = root.resolve()
    index_dir = find_index_dir(root, settings.index_dir)
    extra_ignore = list(settings.ignore)
    try:
        rel_index = index_dir.relative_to(root).as_posix()
        extra_ignore.append(f"/{rel_index}/")
    except ValueError:
        pass
    model = embedder.info if embedder is not None else read_model_info(settings.model, settings.max_length,
                                                                       settings.runtime)
    fmt = doc_format(model, settings)
    report = IndexReport(root=str(root), index_dir=str(index_dir))
    with WriterLock(index_dir) if lock else contextlib.nullcontext():
        writer = IndexWriter(index_dir, index_meta(model, settings))
        try:
            report.rebuild_reason = writer.rebuild_reason
            if writer.rebuild_reason:
                log.warning("rebuilding the index: %s", writer.rebuild_reason)
            full = writer.rebuild_reason is not None
            known = writer.file_records(paths)
            entries = _discover(root, extra_ignore, known, paths, progress)
            present = {e.path for e in entries}
            if paths is None:
                deleted = sorted(set(known) - present)
            else:
                deleted = sorted(p for p in paths if p in known and p not in present)
            updated: list[tuple[FileRecord, list[tuple[Symbol, str]]]] = []
            touched: list[FileRecord] = []
            for done, entry in enumerate(entries, 1):
                if progress:
                    progress("parse", done, len(entries))
                old = known.get(entry.path)
                if not full and old and old.size == entry.size and old.mtime_ns == entry.mtime_ns:
                    continue
                status, data, error = _read_file(root, entry, settings.max_file_bytes)
                if status == "vanished":
                    if entry.path in known:
                        deleted.append(entry.path)
                    continue
                if status == "unreadable" and old is not None and old.status == "indexed":
                    log.warning("%s: unreadable (%s); keeping its previous units", entry.path, error)
                    continue
                sha = hashlib.sha256(data).hexdigest() if data is not None else ""
                if not full and old and data is not None and old.sha256 == sha and old.status == "indexed":
                    touched.append(FileRecord(entry.path, entry.language, entry.size, entry.mtime_ns, sha,
                                              old.status, old.error, old.units))
                    continue
                units: list[tuple[Symbol, str]] = []
                if data is not None:
                    try:
                        symbols = parsers.extract(data, entry.language, entry.path,
                                                  timeout=settings.parse_timeout_ms / 1000)
                    except ParseError as exc:
                        status, error = "invalid_utf8", str(exc)
                    except ParseTimeout:
                        log.warning("%s: parsing took more than %d ms; skipped", entry.path,
                                    settings.parse_timeout_ms)
                        status, error = "parse_timeout", f"parsing took more than {settings.parse_timeout_ms} ms"
                    except Exception as exc:  # a parser bug must not stop the run
                        log.exception("%s: extraction failed", entry.path)
                        status, error = "error", f"{type(exc).__name__}: {exc}"
                    else:
                        status = "indexed"
                        units = [(s, text_hash(model, fmt, model.max_length, document_text(s, fmt)))
                                 for s in symbols]
                updated.append((FileRecord(entry.path, entry.language, entry.size, entry.mtime_ns, sha,
                                           status, error, len(units)), units))
            report.files_changed = len(updated)
            report.files_deleted = len(deleted)
            _embed_missing(writer, updated, fmt, settings, embedder, report, progress)
            generation, removed, added = writer.commit(deleted, updated, touched, full, sweep=paths is None)
            report.snapshot_written = writer.publish_vectors(generation)
            report.generation = generation
            report.units_added, report.units_removed = len(added), len(removed)
            counts = writer.conn.execute("SELECT status, COUNT(*) FROM files GROUP BY status").fetchall()
            report.skipped = {s: n for s, n in counts if s != "indexed"}
            report.files = sum(n for _, n in counts)
            report.units = writer.conn.execute("SELECT COUNT(*) FROM units").fetchone()[0]
        finally:
            writer.close()
    report.seconds = time.perf_counter() - started
    return report


def _discover(root: Path, extra_ignore: list[str], known: dict[str, FileRecord],
              paths: Iterable[str] | None, progress: Progress | None) -> list[FileEntry]:
    if paths is None:
        entries = []
        for entry in walk(root, tuple(extra_ignore)):
            entries.append(entry)
            if progress and len(entries) % 500 == 0:
                progress("scan", len(entries), 0)
        return entries
    ign = Ignorer(root, tuple(extra_ignore))
    return [e for rel in sorted(set(paths)) if (e := entry_for(root, rel, ign)) is not None]


def _embed_missing(writer: IndexWriter, updated: list[tuple[FileRecord, list[tuple[Symbol, str]]]], fmt: str,
                   settings: Settings, embedder: Embedder | None, report: IndexReport,
                   progress: Progress | None) -> None:
    texts: dict[str, str] = {}
    for _, units in updated:
        for sym, h in units:
            texts.setdefault(h, document_text(sym, fmt))
    missing = writer.missing_vectors(texts)
    if not missing:
        return
    todo = sorted(missing, key=lambda h: len(texts[h]))
    if embedder is None:
        threads = settings.threads or cpu_threads()
        embedder = load_embedder(settings.model, max_length=settings.max_length,
                                 batch_size=settings.batch_size, threads=threads, runtime=settings.runtime,
                                 bulk=len(todo) >= BULK_TEXTS)
    tokens_before = getattr(embedder, "tokens_encoded", 0)
    t0 = time.perf_counter()
    if progress:
        progress("embed", 0, len(todo))
    for start in range(0, len(todo), _EMBED_CHUNK):
        chunk = todo[start:start + _EMBED_CHUNK]
        vectors = embedder.encode([texts[h] for h in chunk], kind="document")
        writer.store_vectors(chunk, vectors)
        report.embedded += len(chunk)
        if progress:
            progress("embed", report.embedded, len(todo))
    report.embed_seconds = time.perf_counter() - t0
    report.tokens = getattr(embedder, "tokens_encoded", 0) - tokens_before
