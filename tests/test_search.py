"""Searcher properties with the fake encoder: exact top-k, filters before ranking, fusion, phrases."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesearch.config import Settings
from codesearch.embed import HashEmbedder
from codesearch.index import DB_NAME, Filters, connect
from codesearch.indexer import index_repository
from codesearch.search import (
    ADAPTIVE_STRENGTH,
    ADAPTIVE_STRONG_WEIGHT,
    COVERAGE_POWER,
    Searcher,
    adaptive_weight,
    coverage,
    fuse,
    lexical_strength,
    rrf,
    term_weights,
    weighted_fusion,
)

LANG_EXT = {"python": "py", "go": "go", "javascript": "js"}


def unit_source(lang: str, name: str, words: str) -> str:
    if lang == "python":
        return f'def {name}(x):\n    """{words}."""\n    return x\n'
    if lang == "go":
        return f"// {name} does {words}.\nfunc {name}(x int) int {{\n\treturn x\n}}\n"
    return f"// {words}\nfunction {name}(x) {{\n  return x;\n}}\n"


WORDS = ["parse", "cookie", "header", "retry", "backoff", "slug", "title", "hash", "file", "merge", "sort"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("search") / "repo"
    for d in ("src/http", "src/util", "lib"):
        for lang, ext in LANG_EXT.items():
            body = []
            for i in range(12):
                words = " ".join(rng.choice(WORDS, size=4))
                body.append(unit_source(lang, f"{lang[:2]}_{d.replace('/', '_')}_{i}", words))
            p = root / d / f"mod.{ext}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(("package x\n\n" if lang == "go" else "") + "\n".join(body))
    emb = HashEmbedder(dim=24)
    index_repository(root, Settings(), embedder=emb)
    searcher = Searcher.open(root, Settings(), embedder=emb)
    conn = connect(root / ".codesearch" / DB_NAME, readonly=True)
    rows = conn.execute("SELECT u.id, u.path, u.language, u.kind, v.vector FROM units u "
                        "JOIN vectors v ON u.text_hash = v.text_hash").fetchall()
    conn.close()
    meta = {r[0]: (r[1], r[2], r[3]) for r in rows}
    ids = np.array([r[0] for r in rows])
    vecs = np.stack([np.frombuffer(r[4], np.float32) for r in rows])
    yield searcher, meta, ids, vecs
    searcher.close()


def brute_force(ids, vecs, q, k, allowed=None):
    scores = vecs.astype(np.float16).astype(np.float32) @ q  # FAISS holds the vectors as float16
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    out = [(int(ids[i]), float(scores[i])) for i in order if allowed is None or ids[i] in allowed]
    return out[:k]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 120))
def test_faiss_topk_equals_numpy(corpus, seed, k):
    searcher, _, ids, vecs = corpus
    q = np.random.default_rng(seed).normal(size=vecs.shape[1]).astype(np.float32)
    q /= np.linalg.norm(q)
    with searcher.reader.snapshot():
        got = searcher.reader.vector_search(q, k, None)
    want = brute_force(ids, vecs, q, k)
    assert len(got) == min(k, len(ids))
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=1e-5)


filters = st.builds(
    Filters,
    languages=st.lists(st.sampled_from(sorted(LANG_EXT)), unique=True, max_size=2).map(tuple),
    kinds=st.lists(st.sampled_from(["function", "method"]), unique=True, max_size=1).map(tuple),
    paths=st.lists(st.sampled_from(["src/", "src/http", "lib/", "*.go", "src/*/mod.py", "nope/"]),
                   unique=True, max_size=2).map(tuple),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=filters, k=st.integers(1, 30), mode=st.sampled_from(["semantic", "hybrid", "lexical"]),
       text=st.sampled_from(["parse cookie header", "retry backoff", "merge sort", "zzz"]))
def test_filters_apply_before_ranking(corpus, f, k, mode, text):
    searcher, meta, ids, vecs = corpus
    allowed = {uid for uid, (path, lang, kind) in meta.items()
               if (not f.languages or lang in f.languages) and (not f.kinds or kind in f.kinds) and f.path_ok(path)}
    hits = searcher.search(text, k=k, mode=mode, languages=f.languages, kinds=f.kinds, paths=f.paths)
    for h in hits:
        s = h.symbol
        assert (not f.languages or s.language in f.languages) and (not f.kinds or s.kind in f.kinds)
        assert f.path_ok(s.path)
    if mode != "lexical":  # the semantic side ranks every allowed unit: never fewer than k when k exist
        assert len(hits) == min(k, len(allowed))
    if mode == "semantic":
        q = searcher.embedder.encode([text], kind="query")[0]
        want = brute_force(ids, vecs, q, k, allowed)
        np.testing.assert_allclose([h.score for h in hits], [w[1] for w in want], atol=1e-5)


def test_phrase_is_a_lexical_must_match(corpus):
    searcher, *_ = corpus
    hits = searcher.search('"cookie header" parse', k=50, mode="semantic")
    assert hits
    for h in hits:
        text = (h.symbol.docstring + " " + h.symbol.code).lower()
        assert "cookie header" in " ".join(text.replace(".", " ").split())


def test_fusion_functions():
    assert rrf([[1, 2], [2, 3]], 60) == pytest.approx({1: 1 / 61, 2: 1 / 62 + 1 / 61, 3: 1 / 62})
    fused = weighted_fusion([[(1, 0.9), (2, 0.5)], [(2, 10.0), (3, 4.0)]], (0.5, 0.5))
    assert fused == pytest.approx({1: 0.5, 2: 0.5, 3: 0.0})


def test_coverage_is_the_idf_weighted_share_of_query_terms(corpus):
    searcher, *_ = corpus
    reader = searcher.reader
    weights = term_weights("parse zebra", reader)
    # "zebra" is in no unit, "parse" in many: the rare term weighs more.
    assert set(weights) == {"parse", "zebra"} and weights["zebra"] > weights["parse"] > 0
    syms = reader.symbols(list(range(1, reader.count_units() + 1))).values()
    with_parse = [s for s in syms if "parse" in s.docstring.split()]
    without = [s for s in syms if "parse" not in s.docstring.split() and "parse" not in s.name]
    assert with_parse and without
    share = weights["parse"] / (weights["parse"] + weights["zebra"])
    assert coverage(weights, with_parse[0]) == pytest.approx(share) and share < 0.5
    assert coverage(weights, without[0]) == 0.0
    # Inflections match: the unit says "parse", the query "parsing".
    assert coverage({"parsing": 1.0}, with_parse[0]) == 1.0
    assert coverage({}, with_parse[0]) == 0.0


def test_coverage_fusion_discounts_weak_lexical_matches():
    sem, lex = [(1, 0.9), (2, 0.5)], [(3, 10.0), (1, 2.0)]
    settings = Settings(fusion="coverage", semantic_weight=0.4)
    plain = weighted_fusion([sem, lex], (0.4, 0.6))
    # Full coverage is the plain weighted fusion; no strength given is too.
    full = dict(fuse(sem, lex, settings, {1: 1.0, 3: 1.0}))
    assert full == pytest.approx(plain) and dict(fuse(sem, lex, settings)) == pytest.approx(plain)
    assert [u for u, _ in fuse(sem, lex, settings, {1: 1.0, 3: 1.0})][0] == 3
    # A lexical-only hit matching a small share of the query no longer outranks the semantic top hit.
    weak = fuse(sem, lex, settings, {1: 1.0, 3: 0.09})
    assert [u for u, _ in weak] == [1, 3, 2]
    assert dict(weak)[3] == pytest.approx(0.6 * 0.09 ** COVERAGE_POWER)
    # The other fusions ignore strength.
    assert fuse(sem, lex, settings.replace(fusion="weighted"), {3: 0.0}) == fuse(sem, lex, settings.replace(
        fusion="weighted"))


def test_lexical_strength_is_the_top_bm25_over_the_query_idf():
    assert lexical_strength([(3, 10.0), (1, 2.0)], {"a": 2.0, "b": 3.0}) == pytest.approx(2.0)
    assert lexical_strength([], {"a": 2.0}) == 0.0 and lexical_strength([(3, 1.0)], {}) == 0.0


def test_adaptive_fusion_trusts_the_lexical_side_by_its_strength():
    settings = Settings(fusion="adaptive", semantic_weight=0.9)
    lo, hi = ADAPTIVE_STRENGTH
    assert ADAPTIVE_STRONG_WEIGHT < 0.9
    assert adaptive_weight(settings, lo - 0.5) == pytest.approx(0.9) == adaptive_weight(settings, lo)
    assert adaptive_weight(settings, hi + 3.0) == pytest.approx(ADAPTIVE_STRONG_WEIGHT)
    assert adaptive_weight(settings, (lo + hi) / 2) == pytest.approx((0.9 + ADAPTIVE_STRONG_WEIGHT) / 2)
    # Semantic: 1 first, 3 close behind; lexical: 3 first.
    sem, lex = [(1, 0.9), (3, 0.85), (2, 0.5)], [(3, 10.0), (1, 2.0)]
    weak = fuse(sem, lex, settings, lexical=lo)
    assert dict(weak) == pytest.approx(weighted_fusion([sem, lex], (0.9, 0.1))) and weak[0][0] == 1
    strong = fuse(sem, lex, settings, lexical=hi)
    w = ADAPTIVE_STRONG_WEIGHT
    assert dict(strong) == pytest.approx(weighted_fusion([sem, lex], (w, 1 - w))) and strong[0][0] == 3
    # Without a strength (no term statistics) it is the weighted fusion at semantic_weight; others ignore it.
    assert fuse(sem, lex, settings) == weak
    assert fuse(sem, lex, settings.replace(fusion="weighted"), lexical=hi) == fuse(
        sem, lex, settings.replace(fusion="weighted"))


def test_searcher_adaptive_weight_follows_the_query(corpus):
    searcher, *_ = corpus
    settings = searcher.settings.replace(fusion="adaptive")
    adaptive = Searcher(searcher.reader, settings, searcher.embedder)
    text, depth = "parse cookie header", 5 * settings.oversample
    lex = searcher.store.lexical_search(text, depth, None)
    sem = searcher.store.vector_search(searcher.embedder.encode([text], kind="query")[0], depth, None)
    assert lex and sem
    w = adaptive_weight(settings, lexical_strength(lex, term_weights(text, searcher.store)))
    expected = [uid for uid, _ in fuse(sem, lex, settings.replace(fusion="weighted", semantic_weight=w))][:5]
    assert [h.unit_id for h in adaptive.search(text, k=5, mode="hybrid", role_prior=1.0)] == expected


def test_hybrid_sides_run_concurrently_with_the_same_ranking(corpus, monkeypatch):
    import codesearch.store as store_mod

    searcher, *_ = corpus
    threads: list[str] = []
    real = store_mod.LocalStore.lexical_search

    def spy(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(store_mod.LocalStore, "lexical_search", spy)
    queries = ["parse cookie header", "retry backoff", "merge sort file", "slug title hash"]
    runs = {}
    for concurrent in (True, False):
        monkeypatch.setattr(store_mod.LocalStore, "concurrent_reads", concurrent)
        runs[concurrent] = [[(h.unit_id, h.score, h.lexical_rank, h.semantic_rank)
                             for h in searcher.search(q, k=8, mode="hybrid", role_prior=1.0)] for q in queries]
    assert runs[True] == runs[False] and all(runs[True])
    assert threads[:len(queries)] == ["codesearch-lexical_0"] * len(queries)
    assert threading.main_thread().name in threads[len(queries):]


def test_vector_search_runs_on_one_openmp_thread_in_any_thread(make_repo, hash_embedder):
    """OpenMP's thread count is a setting of the calling thread: a query on a new thread (a daemon
    connection, an LSP worker) must not fall back to all cores."""
    import faiss

    from codesearch.index import IndexReader

    root = make_repo({"pkg/a.py": unit_source("python", "slug_title", "slug title")})
    index_repository(root, Settings(), embedder=hash_embedder)
    reader = IndexReader(root / ".codesearch")
    with reader.snapshot():
        reader.vector_search(hash_embedder.encode(["slug"], kind="query")[0], 5, None)  # loads FAISS here
    seen: list[tuple[int, int]] = []

    def query_on_a_new_thread() -> None:
        before = faiss.omp_get_max_threads()
        with reader.snapshot():
            assert reader.vector_search(hash_embedder.encode(["slug"], kind="query")[0], 5, None)
        seen.append((before, faiss.omp_get_max_threads()))

    t = threading.Thread(target=query_on_a_new_thread)
    t.start()
    t.join()
    (before, after), = seen
    assert after == 1
    if (os.cpu_count() or 1) > 1:
        assert before > 1  # the default a new thread starts with: what the search must not use


def test_unit_count_follows_each_published_generation(make_repo, hash_embedder):
    from codesearch.index import IndexReader

    root = make_repo({"pkg/a.py": unit_source("python", "slug_title", "slug title")})
    index_repository(root, Settings(), embedder=hash_embedder)
    reader = IndexReader(root / ".codesearch")
    with reader.snapshot():
        assert reader.count_units() == 1
    (root / "pkg" / "b.py").write_text(unit_source("python", "merge_sort", "merge sort"))
    index_repository(root, Settings(), embedder=hash_embedder)
    assert reader.count_units() == 2  # outside a snapshot: counted live
    with reader.snapshot():
        assert reader.count_units() == 2
    reader.close()


def test_empty_query_is_usage_error(corpus):
    from codesearch.errors import UsageError

    searcher, *_ = corpus
    with pytest.raises(UsageError):
        searcher.search("lang:go")


def test_role_prior_function():
    from codesearch.query import parse
    from codesearch.search import apply_role_prior, preferred_roles

    roles = {1: "test", 2: "implementation", 3: "generated", 4: "implementation"}
    scored = [(1, 0.9), (2, 0.8), (3, 0.85), (4, -0.1)]
    impl = frozenset({"implementation"})
    assert apply_role_prior(scored, roles.__getitem__, impl, 1.0) == sorted(scored, key=lambda t: -t[1])
    out = apply_role_prior(scored, roles.__getitem__, impl, 0.5)
    assert [u for u, _ in out] == [2, 1, 3, 4] and dict(out)[1] == pytest.approx(0.45)
    neg = apply_role_prior([(1, -0.2), (2, -0.3)], roles.__getitem__, impl, 0.5)
    assert neg == [(2, -0.3), (1, -0.4)]  # a negative score moves down too
    assert preferred_roles(parse("parse cookie")) == impl
    assert preferred_roles(parse("test for parse cookie")) == {"test"}
    assert preferred_roles(parse("parse cookie -role:test")) == impl
    assert preferred_roles(parse("parse cookie role:test")) is None


def test_role_filters_apply_before_ranking(make_repo, hash_embedder):
    root = make_repo({
        "pkg/slug.py": unit_source("python", "slug_title", "slug title"),
        "pkg/test_slug.py": unit_source("python", "test_slug_title", "slug title"),
        "tests/helpers.py": unit_source("python", "slug_helper", "slug title"),
    })
    index_repository(root, Settings(), embedder=hash_embedder)
    s = Searcher.open(root, Settings(), embedder=hash_embedder)
    for mode in ("hybrid", "semantic", "lexical"):
        names = [h.symbol.name for h in s.search("slug title role:test", k=5, mode=mode)]
        assert sorted(names) == ["slug_helper", "test_slug_title"], mode
        assert [h.symbol.name for h in s.search("slug title -role:test", k=5, mode=mode)] == ["slug_title"]
        assert [h.symbol.role for h in s.search("slug title", k=5, mode=mode)][0] == "implementation"
    s.close()
