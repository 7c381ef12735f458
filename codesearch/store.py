"""The vector-store interface the Searcher ranks through, and the local index behind it.

Two implementations: :class:`LocalStore` wraps the repository's FAISS + SQLite
:class:`~codesearch.index.IndexReader` (one repository), and ``milvus_store.MilvusStore`` serves
many repositories from Milvus (Milvus Lite in a local file, or a server). The Searcher sees only
this protocol, so filters, fusion and hit records are computed by one code path for both.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from parsers.symbol import Symbol

if TYPE_CHECKING:
    from .index import Filters, IndexReader


@runtime_checkable
class VectorStore(Protocol):
    """What the Searcher needs from an index: filtered vector and lexical candidates, and records.

    ``meta`` holds the index identity the query encoder must match (``model_key``, ``model_path``,
    ``model_sha256``, ``max_length``, ``dim``, ``doc_text_format``). An ``allowed`` value is what
    :meth:`allowed_ids` returned (opaque to the caller), or an array of unit ids, or None (no filter).
    """

    meta: dict[str, str]

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """A consistent view for the reads of one query."""
        ...

    def allowed_ids(self, filters: Filters) -> Any:
        """What passes ``filters`` (None when there are no filters)."""
        ...

    def vector_search(self, query: np.ndarray, k: int, allowed: Any) -> list[tuple[int, float]]:
        """Top-k (unit id, cosine) for one query vector."""
        ...

    def lexical_search(self, text: str, k: int, allowed: Any, must: Sequence[str] = ()) -> list[tuple[int, float]]:
        """Top-k (unit id, BM25 score, higher is better); ``must`` phrases must all occur."""
        ...

    def symbols(self, ids: Sequence[int]) -> dict[int, Symbol]:
        """Unit records by id."""
        ...

    def repos(self, ids: Sequence[int]) -> dict[int, str]:
        """Repository of each unit id (empty for a single-repository store)."""
        ...

    def unit_at(self, path: str, line: int, repo: str | None = None) -> list[tuple[str, int]]:
        """The innermost unit of ``path`` spanning ``line``, per repository: ``[(repo, unit id)]``.

        ``repo`` names the repository (None: every repository holding that path; a single-repository
        store answers for its own name only).
        """
        ...

    def unit_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored vector of each unit id (those that exist)."""
        ...

    def roles(self, ids: Sequence[int]) -> dict[int, str]:
        """Role of each unit id (implementation, test, ...; parsers/roles.py)."""
        ...

    def status(self) -> dict[str, Any]:
        """Counts and identity, for ``codesearch status``."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


class LocalStore:
    """The local index (``REPO/.codesearch``) as a :class:`VectorStore`; delegates to IndexReader.

    It holds one repository, named ``name`` (the repository directory's name): a ``repo:`` filter
    naming another repository allows nothing, and hits carry no repository (as before).

    Args:
        reader: The open index.
        name: The repository's name for ``repo:`` filters (default: the index directory's parent's name).
    """

    #: The lexical side (SQLite FTS5) and the vector side (FAISS) may run at once in two threads inside one
    #: snapshot: they share no state, and both libraries release the GIL while they work.
    concurrent_reads = True

    def __init__(self, reader: IndexReader, name: str | None = None) -> None:
        self.reader = reader
        self.name = name or (reader.index_dir.parent.name if reader.index_dir.name == ".codesearch"
                             else reader.index_dir.name)

    @property
    def meta(self) -> dict[str, str]:  # type: ignore[override]
        """The index's meta (refreshed by each snapshot)."""
        return self.reader.meta

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One SQLite read transaction (see IndexReader.snapshot)."""
        with self.reader.snapshot():
            yield

    def allowed_ids(self, filters: Filters) -> np.ndarray | None:
        """Unit ids passing ``filters``; a repository filter without this repository allows none."""
        repos = getattr(filters, "repos", ())
        if repos:
            if self.name not in repos:
                return np.zeros(0, dtype=np.int64)
            filters = dataclasses.replace(filters, repos=())
            if not filters:
                return None
        return self.reader.allowed_ids(filters)

    def vector_search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """See IndexReader.vector_search."""
        return self.reader.vector_search(query, k, allowed)

    def lexical_search(self, text: str, k: int, allowed: np.ndarray | None,
                       must: Sequence[str] = ()) -> list[tuple[int, float]]:
        """See IndexReader.lexical_search."""
        return self.reader.lexical_search(text, k, allowed, must=must)

    def symbols(self, ids: Sequence[int]) -> dict[int, Symbol]:
        """See IndexReader.symbols."""
        return self.reader.symbols(ids)

    def repos(self, ids: Sequence[int]) -> dict[int, str]:
        """Empty: local hits carry no repository."""
        return {}

    def unit_at(self, path: str, line: int, repo: str | None = None) -> list[tuple[str, int]]:
        """See IndexReader.unit_at; another repository's name finds nothing."""
        if repo is not None and repo != self.name:
            return []
        uid = self.reader.unit_at(path, line)
        return [] if uid is None else [(self.name, uid)]

    def unit_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """See IndexReader.unit_vectors."""
        return self.reader.unit_vectors(ids)

    def roles(self, ids: Sequence[int]) -> dict[int, str]:
        """See IndexReader.roles."""
        return self.reader.roles(ids)

    def count_units(self) -> int:
        """See IndexReader.count_units (used by the ``coverage`` fusion)."""
        return self.reader.count_units()

    def document_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """See IndexReader.document_frequencies (used by the ``coverage`` fusion)."""
        return self.reader.document_frequencies(terms)

    def status(self) -> dict[str, Any]:
        """See IndexReader.status."""
        return self.reader.status()

    def close(self) -> None:
        """Close the index."""
        self.reader.close()


def as_store(reader: Any) -> VectorStore:
    """``reader`` as a VectorStore: an IndexReader is wrapped in a LocalStore, a store is returned as is."""
    from .index import IndexReader

    if isinstance(reader, IndexReader):
        return LocalStore(reader)
    return reader  # type: ignore[no-any-return]
