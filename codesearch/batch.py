"""Batch indexing of many repositories on Ray into a Milvus backend (``codesearch index --backend``).

The job (docs/scale.md)::

    repositories -> walk (walk.py, on the driver) -> Ray Data over files: read + classify + parse
    (parsers/, the indexer's rules) -> unit rows with the local index's text_hash
    -> dedupe: hashes already in the backend's vector cache, or seen earlier in this run, are dropped
    -> map_batches on actor workers holding the encoder (load_embedder) -> vector cache
    -> unit rows not in the backend yet get their vectors from the cache and are inserted
    -> rows of these repositories that no longer exist are deleted

The driver is the only Milvus client (a Milvus Lite file serves one process), and the backend
converges to the repositories' current state whatever a previous run left: unit rows are keyed by
a hash of their content, so a re-run inserts what is missing, deletes what is stale, and embeds
only texts whose vectors are not cached. The same code runs on ``ray.init()`` (one machine) and
against a cluster address.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import parsers
from parsers import ParseError

from .config import Settings
from .embed import ModelInfo, cpu_threads, load_embedder, read_model_info
from .errors import BackendUnavailable, UsageError, first_line
from .indexer import _read_file, doc_format, index_meta, text_hash
from .milvus_store import MilvusStore, lexical_text, unit_row_id
from .types import document_text
from .walk import walk

log = logging.getLogger(__name__)

#: progress(phase, done, total): phase is "scan", "parse", "embed" or "write".
Progress = Callable[[str, int, int], None]
_WRITE_CHUNK = 500


@dataclass(frozen=True)
class Repository:
    """One repository of a batch job: its name in the backend and its local checkout."""

    name: str
    root: Path


@dataclass
class BatchReport:
    """What a batch run did (``codesearch index --backend URI --json``)."""

    backend: str
    repositories: int = 0
    files: int = 0
    units: int = 0
    unique_texts: int = 0
    embedded: int = 0
    tokens: int = 0
    units_added: int = 0
    units_removed: int = 0
    texts_removed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    workers: int = 1
    seconds: float = 0.0
    embed_seconds: float = 0.0
    encode_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Throughput of the embedding stage: tokens embedded / its wall time (actor start-up included)."""
        return self.tokens / self.embed_seconds if self.embed_seconds else 0.0

    @property
    def tokens_per_worker_second(self) -> float:
        """Throughput of one encoder worker: tokens / seconds the actors spent encoding (summed over them)."""
        return self.tokens / self.encode_seconds if self.encode_seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON object."""
        return dict(asdict(self), tokens_per_second=round(self.tokens_per_second, 1),
                    tokens_per_worker_second=round(self.tokens_per_worker_second, 1))


def read_repositories(args: Sequence[str]) -> list[Repository]:
    """Repositories from command-line arguments: ``PATH``, ``NAME=PATH``, or a manifest file.

    A manifest is a text file with one repository per line, ``PATH`` or ``NAME PATH`` (``#``
    comments; relative paths are relative to the manifest). A name defaults to the directory name.

    Raises:
        UsageError: a path that is not a directory, or two repositories with one name.
    """
    items: list[tuple[str | None, Path]] = []
    for arg in args:
        name, sep, rest = arg.partition("=")
        if sep and name and "/" not in name:
            items.append((name, Path(rest).expanduser()))
            continue
        path = Path(arg).expanduser()
        if path.is_file():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"cannot read manifest {arg}: {exc}") from None
            for line in lines:
                words = line.split("#", 1)[0].split()
                if not words:
                    continue
                if len(words) > 2:
                    raise UsageError(f"manifest {arg}: bad line {line.strip()!r} (want PATH or NAME PATH)")
                p = Path(words[-1]).expanduser()
                items.append((words[0] if len(words) == 2 else None, p if p.is_absolute() else path.parent / p))
        else:
            items.append((None, path))
    if not items:
        raise UsageError("no repositories given")
    out: list[Repository] = []
    seen: dict[str, Path] = {}
    for name, path in items:
        if not path.is_dir():
            raise UsageError(f"not a directory: {path}")
        root = path.resolve()
        repo_name = name or root.name
        if repo_name in seen:
            if seen[repo_name] == root:
                continue
            raise UsageError(f"two repositories are named {repo_name!r} ({seen[repo_name]}, {root}); "
                             "name them: NAME=PATH, or NAME PATH in a manifest")
        seen[repo_name] = root
        out.append(Repository(repo_name, root))
    return out


def _parse_file(row: dict[str, Any], model: ModelInfo, fmt: str, max_bytes: int) -> list[dict[str, Any]]:
    """Unit rows of one file (as the local indexer makes them), or one row saying why there are none."""
    from .walk import FileEntry

    entry = FileEntry(row["path"], row["language"], int(row["size"]), 0)
    base = {"repo": row["repo"], "path": row["path"], "language": row["language"]}
    status, data, error = _read_file(Path(row["root"]), entry, max_bytes)
    if data is not None:
        try:
            symbols = parsers.extract(data, entry.language, entry.path)
        except ParseError:
            status = "invalid_utf8"
        except Exception as exc:  # a parser bug must not stop the job
            log.warning("%s/%s: extraction failed: %s: %s", row["repo"], row["path"], type(exc).__name__, exc)
            status = "error"
        else:
            status = "indexed"
    if status != "indexed":
        return [_empty_row(base, status, error)]
    out = []
    for sym in symbols:
        text = document_text(sym, fmt)
        h = text_hash(model, fmt, model.max_length, text)
        rec = {f: getattr(sym, f) for f in _FIELDS}
        rec.update(repo=row["repo"], status="indexed", error="", text_hash=h, text=text,
                   lexical=lexical_text(sym), id=unit_row_id(row["repo"], sym, h))
        out.append(rec)
    if not out:
        return [_empty_row(base, "indexed", "")]
    return out


_FIELDS = ("path", "language", "kind", "name", "qualified_name", "signature", "docstring", "summary",
           "start_line", "end_line", "start_byte", "end_byte", "code", "doc_start_line", "doc_end_line", "role")


def _empty_row(base: dict[str, Any], status: str, error: str) -> dict[str, Any]:
    rec: dict[str, Any] = {f: 0 if f.endswith(("_line", "_byte")) else "" for f in _FIELDS}
    rec.update(base, status=status, error=error, text_hash="", text="", lexical="", id=-1)
    return rec


class _Encoder:
    """A Ray actor holding one encoder: (text_hash, text) batches in, vectors out."""

    def __init__(self, model: str | None, max_length: int, batch_size: int, threads: int,
                 runtime: str = "auto") -> None:
        self.embedder = load_embedder(model, max_length, batch_size=batch_size, threads=threads, runtime=runtime,
                                      bulk=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        texts = [str(t) for t in batch["text"]]
        before = getattr(self.embedder, "tokens_encoded", 0)
        t0 = time.perf_counter()
        vectors = (self.embedder.encode(texts, kind="document") if texts  # (batch, dim)
                   else np.zeros((0, self.embedder.info.dim), dtype=np.float32))
        tokens = getattr(self.embedder, "tokens_encoded", 0) - before
        seconds = time.perf_counter() - t0
        counts = np.zeros(len(texts), dtype=np.int64)
        busy = np.zeros(len(texts), dtype=np.float64)
        if len(texts):
            counts[0], busy[0] = tokens, seconds
        return {"text_hash": batch["text_hash"], "vector": np.asarray(vectors, dtype=np.float32),
                "tokens": counts, "encode_seconds": busy}


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` Ray address nothing listens on (Ray itself retries for minutes).

    Raises:
        BackendUnavailable: no connection to the address within ``timeout`` seconds.
    """
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto" or another form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BackendUnavailable(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def _start_ray(address: str | None, workers: int) -> None:
    import ray

    if address:
        _check_reachable(address)
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING, "configure_logging": False}
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BackendUnavailable(f"cannot join the Ray cluster at {address}: {first_line(exc)} (a cluster with "
                                     "token authentication needs RAY_AUTH_MODE=token and its RAY_AUTH_TOKEN here)") \
                from None
    else:
        ray.init(num_cpus=max(workers + 1, cpu_threads()), **kwargs)


def index_repositories(repositories: Sequence[Repository], backend: str, settings: Settings, workers: int = 1,
                       address: str | None = None, progress: Progress | None = None) -> BatchReport:
    """Index ``repositories`` into the Milvus backend ``backend`` with a Ray job.

    Args:
        repositories: The repositories (see :func:`read_repositories`).
        backend: Milvus URI: a Milvus Lite file ``PATH.db`` or ``http://host:port``.
        settings: Model, text format, limits and ignores (one set for all repositories).
        workers: Encoder actors (each holds one model; locally each gets cores / workers threads).
        address: A Ray cluster address; None starts (or reuses) a local Ray.
        progress: Optional progress callback.

    Returns:
        A BatchReport.

    Raises:
        UsageError: bad repositories.
        BackendUnavailable: the backend cannot be opened or written.
        IndexStale: the backend holds an index of another model or text format.
    """
    started = time.perf_counter()
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    model = read_model_info(settings.model, settings.max_length, settings.runtime)
    fmt = doc_format(model, settings)
    MilvusStore.check_uri(backend)
    # Ray first: starting Ray's processes while pymilvus' gRPC threads run made its start-up time out here.
    _start_ray(address, workers)
    meta = index_meta(model, settings)
    store = MilvusStore(backend, create=True, identity=meta)
    try:
        store.prepare(meta)
        report = BatchReport(backend=backend, repositories=len(repositories), workers=workers)
        files = _scan(repositories, settings, progress)
        report.files = len(files)
        _run(store, files, repositories, model, fmt, settings, workers, report, progress)
        now = time.time()
        store.record_repositories({r.name: {"root": str(r.root), "indexed_at": now} for r in repositories})
    finally:
        store.close()
    report.seconds = time.perf_counter() - started
    return report


def _scan(repositories: Sequence[Repository], settings: Settings, progress: Progress | None) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = []
    for repo in repositories:
        for entry in walk(repo.root, tuple(settings.ignore)):
            files.append({"repo": repo.name, "root": str(repo.root), "path": entry.path,
                          "language": entry.language, "size": entry.size})
            if progress and len(files) % 500 == 0:
                progress("scan", len(files), 0)
    return files


def _run(store: MilvusStore, files: list[dict[str, Any]], repositories: Sequence[Repository], model: ModelInfo,
         fmt: str, settings: Settings, workers: int, report: BatchReport, progress: Progress | None) -> None:
    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    max_bytes = settings.max_file_bytes
    if not files:
        _delete_stale(store, repositories, {r.name: np.zeros(0, dtype=np.int64) for r in repositories},
                      {}, report)
        store.flush()
        return
    if progress:
        progress("parse", 0, len(files))
    units = ray.data.from_items(files, override_num_blocks=max(1, min(len(files) // 50, 64))) \
        .flat_map(lambda row: _parse_file(row, model, fmt, max_bytes)).materialize()
    # Pass 1 (ids and hashes only): statuses, the wanted rows per repository, the texts to embed.
    wanted: dict[str, list[int]] = {r.name: [] for r in repositories}
    unreadable: dict[str, set[str]] = {}
    first_of: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for batch in units.select_columns(["id", "repo", "path", "status", "text_hash"]).iter_batches(
            batch_size=4096, batch_format="numpy"):
        for uid, repo, path, status, h in zip(batch["id"], batch["repo"], batch["path"], batch["status"],
                                             batch["text_hash"], strict=True):
            if status != "indexed":
                skipped[str(status)] = skipped.get(str(status), 0) + 1
                if status == "unreadable":
                    unreadable.setdefault(str(repo), set()).add(str(path))
                continue
            if uid < 0:
                continue
            wanted[str(repo)].append(int(uid))
            first_of.setdefault(str(h), int(uid))
    report.skipped = skipped
    report.units = sum(len(v) for v in wanted.values())
    report.unique_texts = len(first_of)
    if progress:
        progress("parse", len(files), len(files))
    missing = store.missing_texts(list(first_of))
    if missing:
        _embed(store, units, np.asarray(sorted(first_of[h] for h in missing), dtype=np.int64), settings, workers,
               report, progress, len(missing))
    _write_units(store, units, report, progress)
    _delete_stale(store, repositories, {k: np.asarray(v, dtype=np.int64) for k, v in wanted.items()},
                  unreadable, report)
    store.flush()


def _embed(store: MilvusStore, units: Any, chosen: np.ndarray, settings: Settings, workers: int,
           report: BatchReport, progress: Progress | None, total: int) -> None:
    import ray
    from ray.data import ActorPoolStrategy

    # Each actor asks Ray for one CPU (so tasks of the pipeline still get one) and runs its encoder
    # on this machine's cores / workers threads (on a cluster, settings.threads or a node's cores).
    threads = settings.threads or max(1, cpu_threads() // workers)
    chosen_ref = ray.put(chosen)

    def keep(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        mask = np.isin(batch["id"], ray.get(chosen_ref))  # the first row of each text not in the cache
        return {"text_hash": batch["text_hash"][mask], "text": batch["text"][mask]}

    todo = units.map_batches(keep, batch_format="numpy", num_cpus=0.25).map_batches(
        _Encoder, fn_constructor_args=(settings.model, settings.max_length, settings.batch_size, threads,
                                       settings.runtime),
        compute=ActorPoolStrategy(size=workers), batch_size=256, batch_format="numpy", num_cpus=1)
    t0 = time.perf_counter()
    if progress:
        progress("embed", 0, total)
    for batch in todo.iter_batches(batch_size=None, batch_format="numpy"):
        hashes = [str(h) for h in batch["text_hash"]]
        if not hashes:
            continue
        store.put_texts(hashes, np.asarray(batch["vector"], dtype=np.float32))
        report.embedded += len(hashes)
        report.tokens += int(np.sum(batch["tokens"]))
        report.encode_seconds += float(np.sum(batch["encode_seconds"]))
        if progress:
            progress("embed", report.embedded, total)
    report.embed_seconds = time.perf_counter() - t0


def _write_units(store: MilvusStore, units: Any, report: BatchReport, progress: Progress | None) -> None:
    done = 0
    for batch in units.drop_columns(["text"]).iter_batches(batch_size=_WRITE_CHUNK, batch_format="pandas"):
        rows = batch[(batch["status"] == "indexed") & (batch["id"] >= 0)]
        if rows.empty:
            continue
        have = store.existing_ids(rows["id"].tolist())
        new = rows[~rows["id"].isin(have)]
        if new.empty:
            continue
        vectors = store.cached_vectors(new["text_hash"].tolist())
        records = []
        for rec in new.to_dict("records"):
            vec = vectors.get(rec["text_hash"])
            if vec is None:  # the cache lost it (deleted by hand?): leave the unit for the next run
                log.warning("%s/%s: no vector for %s; run again", rec["repo"], rec["path"], rec["qualified_name"])
                continue
            rec["vector"] = vec.tolist()
            records.append(rec)
        store.insert_units(records)
        report.units_added += len(records)
        done += len(records)
        if progress:
            progress("write", done, 0)


def _delete_stale(store: MilvusStore, repositories: Sequence[Repository], wanted: dict[str, np.ndarray],
                  unreadable: dict[str, set[str]], report: BatchReport) -> None:
    """Delete rows of these repositories that the run did not produce (keeping unreadable files' rows)."""
    for repo in repositories:
        have = store.repo_ids(repo.name)
        stale = np.setdiff1d(have, wanted.get(repo.name, np.zeros(0, dtype=np.int64)))
        if len(stale) and unreadable.get(repo.name):
            keep = {uid for uid, sym in store.symbols(stale.tolist()).items() if sym.path in unreadable[repo.name]}
            stale = np.asarray([u for u in stale.tolist() if u not in keep], dtype=np.int64)
        if len(stale):
            hashes = store.text_hashes_of(stale.tolist())
            store.delete_ids(stale.tolist())
            report.units_removed += len(stale)
            report.texts_removed += store.drop_unused_texts(hashes)


def remove_repositories(names: Sequence[str], backend: str) -> dict[str, Any]:
    """Delete repositories from every index of ``backend`` (their unit rows, and cached vectors no other unit uses).

    Raises:
        UsageError: a name the backend does not hold.
        IndexMissing, BackendUnavailable: no backend there, or it cannot be opened.
    """
    store = MilvusStore(backend, identity=None, prefer=None, create=False, any_index=True)
    out = {"backend": backend, "repositories_removed": 0, "units_removed": 0, "texts_removed": 0}
    try:
        held: set[str] = set()
        for units in store.indexes:
            store.select_index(units)
            held.update(store.repositories())
            held.update(store.status()["units_per_repository"])
        unknown = [n for n in names if n not in held]
        if unknown:
            raise UsageError(f"backend {backend} holds no repository {', '.join(map(repr, unknown))} "
                             f"(it holds {', '.join(sorted(held)) or 'none'})")
        for units in store.indexes:
            store.select_index(units)
            for name in names:
                ids = store.repo_ids(name)
                if len(ids):
                    hashes = store.text_hashes_of(ids.tolist())
                    store.delete_ids(ids.tolist())
                    out["units_removed"] += len(ids)
                    out["texts_removed"] += store.drop_unused_texts(hashes)
            store.record_repositories({}, remove=names)
            store.flush()
        out["repositories_removed"] = len(set(names))
    finally:
        store.close()
    return out

