"""Hard-negative mining (trainer/mine_negatives.py): scopes (same file, package, language), the
false-negative filters (near-duplicate code, positive-aware ceiling) and the candidate pool.

The encoder here is a lookup table of hand-placed vectors, so each test states which candidate is nearest;
the mining logic, not an embedding model, is under test (stage 2 with the real loop is in test_train_loop.py).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from trainer.config import TrainConfig
from trainer.data import Pair
from trainer.mine_negatives import mine_hard_negatives, negative_pool


def unit(name: str, path: str, group: str = "python/src/pkg", code: str = "", query: str = "") -> Pair:
    body = code or f"def {name}():\n    return {abs(hash(name)) % 997} + {len(name)}"
    return Pair(id=f"python/src/{path}:{name}:1", query=query or f"query for {name}", code=body,
                language="python", source="src", path=path, group=group, kind="function", name=name,
                qualified_name=name, signature=f"def {name}():", tier="clean", split="train")


class TableEncoder:
    """Embeds a query or document by its unit's name (documents: the ``def NAME`` they contain)."""

    def __init__(self, queries: dict[str, list[float]], docs: dict[str, list[float]]) -> None:
        self.queries, self.docs = queries, docs

    def encode(self, texts, kind, max_length, batch_size):
        out = []
        for t in texts:
            if kind == "query":
                out.append(self.queries[t.removeprefix("query for ")])
            else:
                out.append(self.docs[re.search(r"def (\w+)", t).group(1)])
        v = np.asarray(out, dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def angle(deg: float) -> list[float]:
    """A unit vector at ``deg`` degrees from the query direction (1, 0)."""
    r = np.radians(deg)
    return [float(np.cos(r)), float(np.sin(r))]


@pytest.fixture
def layout():
    """``a`` is queried; ``far_sibling`` shares its file, ``near_other`` (another file, same package) and
    ``nearest_elsewhere`` (another package) are closer to its query."""
    pairs = [unit("a", "pkg/one.py"), unit("far_sibling", "pkg/one.py"),
             unit("near_other", "pkg/two.py"), unit("nearest_elsewhere", "other/three.py", "python/src/other")]
    docs = {"a": angle(0), "far_sibling": angle(60), "near_other": angle(30), "nearest_elsewhere": angle(10)}
    queries = {name: angle(0) if name == "a" else angle(90) for name in docs}
    return pairs, TableEncoder(queries, docs)


def negatives_of(pairs, enc, **kw):
    return mine_hard_negatives(enc, pairs, **{"k": 1, "depth": 1, **kw})[pairs[0].id]


def name_of(pid: str) -> str:
    return pid.split(":")[1]


def test_the_language_scope_takes_the_nearest_document_of_the_language(layout):
    pairs, enc = layout
    assert [name_of(n) for n in negatives_of(pairs, enc)] == ["nearest_elsewhere"]


def test_narrower_scopes_prefer_the_units_file_then_its_package(layout):
    pairs, enc = layout
    assert [name_of(n) for n in negatives_of(pairs, enc, scopes=("file", "language"))] == ["far_sibling"]
    assert [name_of(n) for n in negatives_of(pairs, enc, scopes=("package", "language"))] == ["near_other"]
    # Two negatives: the file gives one, the next scope the rest.
    got = mine_hard_negatives(enc, pairs, k=2, depth=1, scopes=("file", "package"))[pairs[0].id]
    assert [name_of(n) for n in got] == ["far_sibling", "near_other"]
    # Without a broader scope to fall back on, a lone unit gets none.
    alone = mine_hard_negatives(enc, pairs, k=1, depth=1, scopes=("file",))
    assert alone[pairs[2].id] == [] and alone[pairs[3].id] == []


def test_the_positive_aware_ceiling_drops_candidates_scored_like_the_positive(layout):
    pairs, enc = layout
    # sim(a's query, a) = 1; nearest_elsewhere = cos 10 = 0.985, near_other = cos 30 = 0.866.
    assert [name_of(n) for n in negatives_of(pairs, enc, max_ratio=0.95)] == ["near_other"]
    assert [name_of(n) for n in negatives_of(pairs, enc, max_ratio=0.99)] == ["nearest_elsewhere"]


def test_near_duplicate_code_is_not_a_negative():
    twin_code = "def twin(items, key):\n    return sorted(items, key=key, reverse=True)[:10]"
    pairs = [unit("a", "m.py", code="def a(items, key):\n    return sorted(items, key=key, reverse=False)[:10]"),
             unit("twin", "n.py", code=twin_code), unit("other", "o.py")]
    enc = TableEncoder({"a": angle(0), "twin": angle(90), "other": angle(90)},
                       {"a": angle(0), "twin": angle(5), "other": angle(40)})
    assert [name_of(n) for n in negatives_of(pairs, enc)] == ["twin"]  # not an exact duplicate
    assert [name_of(n) for n in negatives_of(pairs, enc, near_dup=0.7)] == ["other"]  # Jaccard 6/8


def test_the_pool_adds_the_sampled_units_file_neighbours_only_for_the_file_scope(layout):
    pairs, _ = layout
    sample = [pairs[0]]
    assert negative_pool(sample, pairs, ("language",)) == sample
    assert [p.name for p in negative_pool(sample, pairs, ("file", "language"))] == ["a", "far_sibling"]


def test_pool_documents_are_candidates_but_not_queries(layout):
    pairs, enc = layout
    got = mine_hard_negatives(enc, pairs[:1], k=1, depth=1, pool=pairs, scopes=("file",))
    assert list(got) == [pairs[0].id] and [name_of(n) for n in got[pairs[0].id]] == ["far_sibling"]
    with pytest.raises(ValueError, match="lacks"):
        mine_hard_negatives(enc, pairs, pool=pairs[1:])


def test_bad_scopes_are_refused():
    with pytest.raises(ValueError, match="negatives_scope"):
        TrainConfig(negatives_scope=("folder",))
    with pytest.raises(ValueError, match="negatives_scope"):
        TrainConfig(negatives_scope=("file", "file"))
    with pytest.raises(ValueError, match="near_dup"):
        TrainConfig(negatives_near_dup=1.5)
    assert TrainConfig().with_overrides(["negatives_scope=file,language"]).negatives_scope == ("file", "language")
