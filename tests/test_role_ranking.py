"""Ranking with tests beside the code (tests/fixtures/with_tests, real packaged model, default settings).

For plain queries the implementation ranks first; for "test for ..." queries the test does; ``role:`` and
``-role:`` (and the CLI's ``--role``/``--exclude-role``) include and exclude exactly. The top-5 of every
query and mode is also kept in ``tests/fixtures/golden/roles_ranking.json`` (``--update-golden``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codesearch.cli import main
from codesearch.config import Settings
from codesearch.indexer import index_repository
from codesearch.search import Searcher
from tests.parsers.test_roles import WITH_TESTS_ROLES

FIXTURE = Path(__file__).parent / "fixtures" / "with_tests"
GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "roles_ranking.json"
MODES = ("hybrid", "semantic", "lexical")

#: (plain query, its implementation, the "test for" query, its test): the queries were written as a user
#: asking for the behaviour would, without copying the unit's identifiers where the behaviour has words.
FEATURES = [
    ("rate limit requests per client IP", "ratelimit/limiter.go:Limiter.Allow",
     "test for rate limiting requests per client IP",
     "ratelimit/limiter_test.go:TestAllowRateLimitsRequestsPerClientIP"),
    ("compress response body with gzip", "web/gzip.js:compressResponse",
     "test for compressing the response body with gzip",
     "web/gzip.test.js:compressResponseBodyWithGzipForTest"),
    ("parse a price into cents", "src/main/java/shop/PriceFormatter.java:PriceFormatter.parseCents",
     "test for parsing a price into cents",
     "src/test/java/shop/PriceFormatterTest.java:PriceFormatterTest.parseCentsReadsAPriceIntoIntegerCents"),
    ("turn a title into a url slug without accents", "slugs/slugify.py:slugify",
     "tests of slugify stripping accents",
     "tests/test_slugify.py:test_slugify_strips_accents_and_joins_words_with_dashes"),
    ("convert an integer to a roman numeral", "lib/roman.rb:Roman.to_roman",
     "test for converting an integer to a roman numeral",
     "test/test_roman.rb:TestRoman.test_to_roman_converts_an_integer_to_a_roman_numeral"),
    ("split a csv line into fields", "php/src/Csv.php:Csv.splitLine",
     "test for splitting a csv line with quoted fields",
     "php/tests/CsvTest.php:CsvTest.testSplitLineHonoursQuotedFieldsWithCommas"),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory, shipped_embedder):
    root = tmp_path_factory.mktemp("roles") / "repo"
    shutil.copytree(FIXTURE, root)
    index_repository(root, Settings(), embedder=shipped_embedder)
    return root


@pytest.fixture(scope="module")
def searcher(repo, shipped_embedder):
    s = Searcher.open(repo, Settings(), embedder=shipped_embedder)
    yield s
    s.close()


def ids(hits) -> list[str]:
    return [f"{h.symbol.path}:{h.symbol.qualified_name}" for h in hits]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("plain", "impl", "asks", "test"), FEATURES, ids=[f[1].split(":")[1] for f in FEATURES])
def test_implementation_first_unless_the_query_asks_for_tests(searcher, mode, plain, impl, asks, test):
    """The top hit is in the implementation's file (the unit or its class) / in the test's file."""
    top = searcher.search(plain, k=5, mode=mode)[0]
    assert top.symbol.path == impl.split(":")[0] and top.symbol.role == "implementation", ids([top])
    top = searcher.search(asks, k=5, mode=mode)[0]
    assert top.symbol.path == test.split(":")[0] and top.symbol.role == "test", ids([top])


def test_without_the_prior_tests_win_some_plain_queries(searcher):
    """The prior is what puts implementation first here: without it, tests take the top of some queries."""
    lost = [plain for plain, impl, _, _ in FEATURES for mode in MODES
            if searcher.search(plain, k=1, mode=mode, role_prior=1.0)[0].symbol.path != impl.split(":")[0]]
    assert lost


@pytest.mark.parametrize("mode", MODES)
def test_role_filters_include_and_exclude_exactly(searcher, mode):
    every = {f"{p}:{q}": r for (p, q), r in WITH_TESTS_ROLES.items()}
    tests = {u for u, r in every.items() if r == "test"}
    found = set(ids(searcher.search("code role:test", k=100, mode="semantic")))
    assert found == tests  # semantic ranks every allowed unit: exactly the tests
    found = set(ids(searcher.search("code -role:test", k=100, mode="semantic")))
    assert found == set(every) - tests
    for plain, _, asks, _ in FEATURES:
        for text in (plain, asks):
            assert {every[u] for u in ids(searcher.search(f"{text} role:test", k=10, mode=mode))} <= {"test"}
            assert "test" not in {every[u] for u in ids(searcher.search(f"{text} -role:test", k=10, mode=mode))}
            only_impl = ids(searcher.search(f"{text} role:impl role:generated", k=10, mode=mode))
            assert {every[u] for u in only_impl} <= {"implementation", "generated"}
    benches = ids(searcher.search("measure role:benchmark", k=10, mode="semantic"))
    assert set(benches) == {u for u, r in every.items() if r == "benchmark"}


def test_rankings_match_golden(searcher, update_golden):
    current = {mode: {q: ids(searcher.search(q, k=5, mode=mode)) for f in FEATURES for q in (f[0], f[2])}
               for mode in MODES}
    if update_golden or not GOLDEN.exists():
        GOLDEN.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
        if not update_golden:
            pytest.fail(f"wrote missing golden {GOLDEN}; review and commit it")
    assert current == json.loads(GOLDEN.read_text()), "rankings changed: run with --update-golden and review the diff"


def test_cli_tags_roles_and_filters(repo, capsys, monkeypatch):
    monkeypatch.chdir(repo)
    assert main(["query", "rate limit per client IP", "--repo", str(repo), "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "ratelimit/limiter_test.go:9-20  TestAllowRateLimitsRequestsPerClientIP" in out
    test_line = next(line for line in out.splitlines() if "TestAllowRateLimitsRequestsPerClientIP" in line)
    assert test_line.endswith("[test]")
    impl_line = next(line for line in out.splitlines() if "Limiter.Allow" in line)
    assert "[" not in impl_line
    assert main(["query", "rate limit per client IP", "--repo", str(repo), "-k", "5", "--json", "--role", "test"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and {r["role"] for r in rows} == {"test"}
    assert main(["query", "rate limit per client IP", "--repo", str(repo), "-k", "5", "--json",
                 "--exclude-role", "test", "--exclude-role", "benchmark"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and not {r["role"] for r in rows} & {"test", "benchmark"}
    assert main(["query", "x", "--repo", str(repo), "--role", "tset"]) == 2
    assert "unknown role 'tset'" in capsys.readouterr().err
