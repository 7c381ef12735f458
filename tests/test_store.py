"""The VectorStore interface: the local index behind LocalStore, and the repo: filter (no Ray, no Milvus)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codesearch.config import Settings
from codesearch.embed import HashEmbedder
from codesearch.index import IndexReader
from codesearch.indexer import index_repository
from codesearch.query import parse
from codesearch.search import Searcher
from codesearch.store import LocalStore, VectorStore, as_store

REPOS = Path(__file__).parent / "fixtures" / "repos"


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("store") / "mini_python"
    shutil.copytree(REPOS / "mini_python", root)
    emb = HashEmbedder(dim=32)
    index_repository(root, Settings(), embedder=emb)
    return root, emb


def test_repo_filter_parses_and_round_trips():
    q = parse("parse cookie repo:mini_python repo:'my fork' lang:py")
    assert q.repos == ("mini_python", "my fork")
    assert q.text == "parse cookie"
    assert parse(str(q)) == q


def test_local_index_is_a_vector_store(local):
    root, _ = local
    reader = IndexReader(root / ".codesearch")
    try:
        store = as_store(reader)
        assert isinstance(store, LocalStore) and isinstance(store, VectorStore)
        assert store.name == "mini_python"
        assert as_store(store) is store
    finally:
        reader.close()


def test_repo_filter_on_the_local_index(local):
    root, emb = local
    searcher = Searcher(IndexReader(root / ".codesearch"), Settings(), embedder=emb)
    try:
        plain = searcher.search("parse cookie header", k=5)
        assert plain and all(h.repo is None for h in plain)
        assert searcher.search("parse cookie header repo:mini_python", k=5) == plain
        assert searcher.search("parse cookie header", k=5, repos=["mini_python"]) == plain
        assert searcher.search("parse cookie header repo:other", k=5) == []
        assert searcher.search("parse cookie header repo:other repo:mini_python lang:python", k=5) == \
            searcher.search("parse cookie header lang:python", k=5)
    finally:
        searcher.close()
