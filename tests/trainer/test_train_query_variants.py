"""Query variants: the docstring query without the words it shares with its function's identifiers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from trainer_helpers import fixture_sources

from trainer.data import MiningStats, Pair, mine_source
from trainer.query_variants import choose_queries, identifier_parts, pair_variant, query_variant

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden" / "query_variants.json"


def pair(query: str, name: str, qualified_name: str = "", signature: str = "", pid: str = "p") -> Pair:
    return Pair(id=pid, query=query, code="pass", language="python", source="s", path="a.py", group="g",
                kind="function", name=name, qualified_name=qualified_name or name, signature=signature,
                tier="clean")


def test_identifier_parts_split_like_the_lexical_side():
    assert identifier_parts("parseHTTPHeader_v2", "http.Server.parseHTTPHeader_v2", "def f(max_len, to)") == \
        frozenset({"parse", "http", "header", "server", "def", "max", "len"})


@pytest.mark.parametrize("query,name,qualified_name,signature,want", [
    # The name's words go, with their inflections; the rest of the sentence stays.
    ("Parses a cookie header into a dict of names and values.", "parse_cookie_header", "",
     "def parse_cookie_header(raw)", "a into a dict of names and values."),
    ("Closes the server and drops its connections.", "Close", "Server.Close", "func (s *Server) Close() error",
     "the and drops its connections."),
    # Parameters and types count; a plural part matches the singular query word and back.
    ("Returns the entry stored under key, or nil.", "lookup", "Cache.lookup", "def lookup(entries, key)",
     "Returns the stored under or nil."),
    # A token goes only when every piece of it is shared (parseCookie), and stopwords never go.
    ("Calls parseCookie for each of the values.", "parse_cookie", "", "", "Calls for each of the values."),
    # Nothing shared: no variant (the original is already a paraphrase).
    ("Returns the middle value of xs without modifying it.", "Median", "", "func Median(xs []float64) float64",
     None),
    # Too little left: no variant.
    ("Returns the median.", "Median", "", "", None),
])
def test_query_variant(query, name, qualified_name, signature, want):
    assert query_variant(query, identifier_parts(name, qualified_name, signature)) == want


def test_variants_of_the_fixture_pairs_match_the_golden(update_golden):
    got = {}
    for src in fixture_sources():
        for p in mine_source(src, MiningStats()):
            got[p.id] = {"query": p.query, "variant": pair_variant(p)}
    if update_golden:
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert got == want
    # Most fixture docstrings repeat a word of their identifiers, as real ones do.
    assert 0.5 < sum(v["variant"] is not None for v in got.values()) / len(got) < 0.95


def test_choose_queries_is_seeded_and_keeps_the_fraction():
    batch = [pair(f"query {i}", f"f{i}", pid=str(i)) for i in range(400)]
    variants = [f"variant {i}" if i % 4 else None for i in range(400)]  # a quarter has no variant
    assert choose_queries(batch, variants, 0.0, 0, 5) == [p.query for p in batch]
    everything = choose_queries(batch, variants, 1.0, 0, 5)
    assert everything == [v or p.query for p, v in zip(batch, variants, strict=True)]
    half = choose_queries(batch, variants, 0.5, 0, 5)
    assert half == choose_queries(batch, variants, 0.5, 0, 5)  # a pure function of (seed, step)
    assert half != choose_queries(batch, variants, 0.5, 0, 6)
    kinds = Counter(q.split()[0] for q in half)
    assert 120 < kinds["variant"] < 180  # about half of the 300 pairs that have one
    assert all(q == f"query {i}" for i, q in enumerate(half) if i % 4 == 0)
