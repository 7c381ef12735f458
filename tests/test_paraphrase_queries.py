"""The paraphrased query set (bench/queries/paraphrased, fixture QUERIES.json): size, splits, and wording rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from codesearch.lexical import split_identifier

ROOT = Path(__file__).resolve().parent.parent
QUERY_DIR = ROOT / "bench" / "queries" / "paraphrased"
LANGS = ("python", "go", "java", "javascript", "php", "ruby")
FIXTURES = ROOT / "tests" / "fixtures" / "repos"


def load(lang: str) -> dict:
    return json.loads((QUERY_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9_.'-]+", text)


def check_wording(query: str, qualified_name: str, most: int = 12) -> None:
    """3-``most`` words, and the target's own identifier never appears whole (its parts may, as plain words)."""
    assert 3 <= len(words(query)) <= most, query
    name = re.split(r"[.#:]", qualified_name)[-1].rstrip("?!=")
    low = {w.lower().strip(".") for w in words(query)}
    if len(split_identifier(name)) > 1:
        assert name.lower() not in low, (query, qualified_name)


@pytest.mark.parametrize("lang", LANGS)
def test_language_file_has_enough_queries_split_by_package(lang):
    doc = load(lang)
    assert doc["language"] == lang and doc["how_written"]
    tune, report = set(doc["splits"]["tune"]), set(doc["splits"]["report"])
    assert not tune & report
    queries = doc["queries"]
    assert len(queries) >= 40
    for q in queries:
        assert q["split"] in ("tune", "report")
        assert q["package"] in (tune if q["split"] == "tune" else report), q
        assert q["path"].startswith(q["package"].removesuffix("/") + ("/" if "/" not in q["package"] else "")) \
            or q["path"].startswith(q["package"] + "."), q
        check_wording(q["query"], q["qualified_name"])
    # Both halves are real: at least a third of the queries on each side.
    n_tune = sum(q["split"] == "tune" for q in queries)
    assert len(queries) / 3 <= n_tune <= 2 * len(queries) / 3
    # One query per target.
    assert len({(q["path"], q["qualified_name"]) for q in queries}) == len(queries)


def test_whole_set_is_large_enough():
    assert sum(len(load(lang)["queries"]) for lang in LANGS) >= 300


def test_fixture_queries_follow_the_same_rules():
    total = 0
    for repo in sorted(FIXTURES.glob("mini_*")):
        queries = json.loads((repo / "QUERIES.json").read_text(encoding="utf-8"))
        assert len(queries) >= 10, repo.name
        assert len({q["query"] for q in queries}) == len(queries)
        for q in queries:
            check_wording(q["query"], q["target"].partition(":")[2], most=14)  # the first 25 ran longer
        total += len(queries)
    assert total >= 80
