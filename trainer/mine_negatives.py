"""Hard negatives for stage 2, mined with the stage-1 model.

For each training pair, the documents nearest to its query (by the stage-1 encoder) are candidates,
within a scope: the same file, the same package or the same language (``scopes``, narrowest first:
the functions a search confuses most are a unit's neighbours). Likely false negatives are removed: the
pair itself, duplicates of its code (whitespace-normalised), units with the same name (overloads and
re-implementations of the same function, often documented alike), units with the same query text,
and optionally near-duplicate code (identifier-set Jaccard, ``near_dup``) and candidates the model
scores close to or above the pair's own code (``max_ratio``: NV-Retriever's positive-aware filter).
After skipping the ``skip`` nearest survivors, ``k`` negatives are drawn at random (seeded) from the
next ``depth``; a scope with fewer than ``k`` survivors leaves the rest to the next scope.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import NEGATIVE_SCOPES as SCOPES
from .data import Pair, identifier_set, jaccard, normalized_code
from .model import Encoder

log = logging.getLogger(__name__)

__all__ = ["SCOPES", "excluded", "load_negatives", "mine_hard_negatives", "negative_pool", "scope_key"]


def excluded(a: Pair, b: Pair) -> bool:
    """Whether ``b`` must not be a negative of ``a`` (same unit, duplicate code, same name, same query)."""
    return (a.id == b.id or normalized_code(a.code, a.name) == normalized_code(b.code, b.name)
            or a.name.casefold() == b.name.casefold() or a.query.casefold() == b.query.casefold())


def scope_key(pair: Pair, scope: str) -> str:
    """The key two pairs share when they are in the same ``scope`` (file, package or language)."""
    if scope == "file":
        return f"{pair.language}/{pair.source}/{pair.path}"
    if scope == "package":
        return pair.group
    if scope == "language":
        return pair.language
    raise ValueError(f"negative scope must be one of {SCOPES}, got {scope!r}")


def negative_pool(pairs: Sequence[Pair], candidates: Sequence[Pair], scopes: Sequence[str]) -> list[Pair]:
    """The documents negatives are drawn from: ``pairs`` and, when the file scope is on, every pair of
    ``candidates`` in a file one of ``pairs`` is in (a sampled stage sees its units' file neighbours)."""
    if "file" not in scopes:
        return list(pairs)
    files = {scope_key(p, "file") for p in pairs}
    have = {p.id for p in pairs}
    return list(pairs) + [c for c in candidates if c.id not in have and scope_key(c, "file") in files]


def mine_hard_negatives(encoder: Encoder, pairs: Sequence[Pair], k: int = 1, depth: int = 30, skip: int = 0,
                        doc_text_format: str = "header_doc_code", query_max_length: int = 64,
                        doc_max_length: int = 256, seed: int = 0, batch_size: int = 32,
                        block: int = 1024, pool: Sequence[Pair] | None = None,
                        scopes: Sequence[str] = ("language",), near_dup: float = 0.0,
                        max_ratio: float = 0.0) -> dict[str, list[str]]:
    """Mine ``k`` hard negatives per pair among the documents of the same language.

    Each scope in ``scopes`` (narrowest first: ``file``, ``package``, ``language``) ranks its allowed
    candidates by similarity to the query; negatives are drawn from the first scope's list, and from the
    next scope's when the first has fewer than ``k``.

    Args:
        encoder: The stage-1 model.
        pairs: Training pairs (their queries are mined for).
        k: Negatives per pair.
        depth: Draw from this many nearest allowed candidates (per scope).
        skip: Skip this many nearest allowed candidates first (per scope).
        doc_text_format: Document text format.
        query_max_length: Query token limit.
        doc_max_length: Document token limit.
        seed: Seed of the draw.
        batch_size: Encoding batch size.
        block: Queries scored at once (bounds the similarity matrix in memory).
        pool: Candidate documents (default ``pairs``; it must hold every pair of ``pairs``).
        scopes: Where candidates come from, narrowest first.
        near_dup: Also exclude candidates whose identifier set has a Jaccard similarity of at least this
            with the pair's (near-duplicate code; 0: off).
        max_ratio: Also exclude candidates the stage-1 model scores above ``max_ratio`` times the pair's
            own similarity (likely unlabelled positives, NV-Retriever's positive-aware filter; 0: off).

    Returns:
        {pair id: [negative pair ids]} (fewer than ``k`` when the pool has too few allowed candidates).
    """
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"negative scopes must be a non-empty sequence of {SCOPES}, got {tuple(scopes)}")
    pool = list(pairs) if pool is None else list(pool)
    have = {p.id for p in pool}
    missing = [p.id for p in pairs if p.id not in have]
    if missing:
        raise ValueError(f"the negative pool lacks {len(missing)} of the pairs, e.g. {missing[0]}")
    by_lang: dict[str, list[int]] = defaultdict(list)
    for j, p in enumerate(pool):
        by_lang[p.language].append(j)
    queries_of: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        queries_of[p.language].append(p)
    out: dict[str, list[str]] = {}
    for lang in sorted(queries_of):
        members = by_lang[lang]
        cand = [pool[j] for j in members]
        local = {p.id: i for i, p in enumerate(cand)}
        mine = queries_of[lang]
        q = encoder.encode([p.query for p in mine], "query", query_max_length, batch_size)  # (m, dim)
        d = encoder.encode([p.document(doc_text_format) for p in cand], "document", doc_max_length,
                           batch_size)  # (n, dim)
        keys = _FalseNegativeKeys(cand, near_dup)
        keyed = {s: _members(cand, s) for s in scopes if s != "language"}
        want = min(len(cand), skip + depth + 64)
        for start in range(0, len(mine), block):
            rows = [local[p.id] for p in mine[start:start + block]]
            sims = q[start:start + block] @ d.T  # (block, n)
            top = np.argsort(-sims, axis=1, kind="stable")[:, :want] if "language" in scopes else None
            for row, i in enumerate(rows):
                ceiling = max_ratio * float(sims[row, i]) if max_ratio > 0 else np.inf
                rng = np.random.default_rng([seed, int(hashlib.sha1(cand[i].id.encode()).hexdigest()[:12], 16)])
                picked: list[int] = []
                for scope in scopes:
                    if len(picked) >= k:
                        break
                    if scope == "language":
                        ranked = (int(j) for j in top[row])
                    else:
                        same = keyed[scope][scope_key(cand[i], scope)]
                        ranked = (same[int(x)] for x in np.argsort(-sims[row, same], kind="stable"))
                    choices = [j for j in ranked if j not in picked and sims[row, j] <= ceiling
                               and keys.allowed(i, j)][skip:skip + depth]
                    if choices:
                        draw = rng.choice(len(choices), size=min(k - len(picked), len(choices)), replace=False)
                        picked += [choices[int(x)] for x in sorted(draw)]
                out[cand[i].id] = [cand[j].id for j in picked]
        log.info("%s: hard negatives for %d pairs from %d documents", lang, len(mine), len(cand))
    return out


class _FalseNegativeKeys:
    """What decides that candidate ``j`` may not be a negative of ``i`` (see ``excluded``, plus near
    duplicates when ``near_dup`` > 0)."""

    def __init__(self, cand: Sequence[Pair], near_dup: float) -> None:
        self.codes = [normalized_code(p.code, p.name) for p in cand]
        self.names = [p.name.casefold() for p in cand]
        self.queries = [p.query.casefold() for p in cand]
        self.near_dup = near_dup
        self.idents = [identifier_set(p.code, p.name) for p in cand] if near_dup > 0 else []

    def allowed(self, i: int, j: int) -> bool:
        """Whether ``j`` may be a negative of ``i``."""
        return (j != i and self.codes[j] != self.codes[i] and self.names[j] != self.names[i]
                and self.queries[j] != self.queries[i]
                and (self.near_dup <= 0 or jaccard(self.idents[i], self.idents[j]) < self.near_dup))


def _members(cand: Sequence[Pair], scope: str) -> dict[str, list[int]]:
    """Candidate indices per key of ``scope``."""
    out: dict[str, list[int]] = defaultdict(list)
    for j, p in enumerate(cand):
        out[scope_key(p, scope)].append(j)
    return out


def fingerprint(model_sha: str, pairs: Sequence[Pair], settings: dict[str, Any]) -> str:
    """Identity of a mining run: the model, the pool and the settings."""
    h = hashlib.sha256(model_sha.encode())
    for p in pairs:
        h.update(p.id.encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:16]


def save_negatives(path: Path, negatives: dict[str, list[str]], fp: str, settings: dict[str, Any]) -> None:
    """Write the negatives with the fingerprint that produced them."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fp, "settings": settings, "negatives": negatives}) + "\n",
                   encoding="utf-8")
    tmp.replace(path)


def load_negatives(path: Path, fp: str | None = None) -> dict[str, list[str]] | None:
    """The negatives in ``path``, or None if missing or mined by another run than ``fp``."""
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    if fp is not None and raw.get("fingerprint") != fp:
        return None
    return {k: list(v) for k, v in raw["negatives"].items()}
