"""Hard negatives for stage 2, mined with the stage-1 model.

For each training pair, the documents of the same language nearest to its query (by the stage-1
encoder) are candidates, minus likely false negatives: the pair itself, duplicates of its code
(whitespace-normalised), units with the same name (overloads and re-implementations of the same
function, often documented alike) and units with the same query text. After skipping the
``skip`` nearest survivors, ``k`` negatives are drawn at random (seeded) from the next ``depth``.
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

from .data import Pair, normalized_code
from .model import Encoder

log = logging.getLogger(__name__)

__all__ = ["excluded", "load_negatives", "mine_hard_negatives"]


def excluded(a: Pair, b: Pair) -> bool:
    """Whether ``b`` must not be a negative of ``a`` (same unit, duplicate code, same name, same query)."""
    return (a.id == b.id or normalized_code(a.code, a.name) == normalized_code(b.code, b.name)
            or a.name.casefold() == b.name.casefold() or a.query.casefold() == b.query.casefold())


def mine_hard_negatives(encoder: Encoder, pairs: Sequence[Pair], k: int = 1, depth: int = 30, skip: int = 0,
                        doc_text_format: str = "header_doc_code", query_max_length: int = 64,
                        doc_max_length: int = 256, seed: int = 0, batch_size: int = 32,
                        block: int = 1024) -> dict[str, list[str]]:
    """Mine ``k`` hard negatives per pair among the pairs of the same language.

    Args:
        encoder: The stage-1 model.
        pairs: Training pairs (the candidate pool too).
        k: Negatives per pair.
        depth: Draw from this many nearest allowed candidates.
        skip: Skip this many nearest allowed candidates first.
        doc_text_format: Document text format.
        query_max_length: Query token limit.
        doc_max_length: Document token limit.
        seed: Seed of the draw.
        batch_size: Encoding batch size.
        block: Queries scored at once (bounds the similarity matrix in memory).

    Returns:
        {pair id: [negative pair ids]} (fewer than ``k`` when the pool has too few allowed candidates).
    """
    by_lang: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_lang[p.language].append(p)
    out: dict[str, list[str]] = {}
    for lang in sorted(by_lang):
        pool = by_lang[lang]
        q = encoder.encode([p.query for p in pool], "query", query_max_length, batch_size)  # (n, dim)
        d = encoder.encode([p.document(doc_text_format) for p in pool], "document", doc_max_length,
                           batch_size)  # (n, dim)
        codes = [normalized_code(p.code, p.name) for p in pool]
        names = [p.name.casefold() for p in pool]
        queries = [p.query.casefold() for p in pool]
        want = min(len(pool), skip + depth + 64)
        for start in range(0, len(pool), block):
            sims = q[start:start + block] @ d.T  # (block, n)
            top = np.argsort(-sims, axis=1, kind="stable")[:, :want]
            for row, cands in enumerate(top):
                i = start + row
                allowed = [int(j) for j in cands if j != i and codes[j] != codes[i] and names[j] != names[i]
                           and queries[j] != queries[i]][skip:skip + depth]
                rng = np.random.default_rng([seed, int(hashlib.sha1(pool[i].id.encode()).hexdigest()[:12], 16)])
                picked = rng.choice(len(allowed), size=min(k, len(allowed)), replace=False) if allowed else []
                out[pool[i].id] = [pool[allowed[int(x)]].id for x in sorted(picked)]
        log.info("%s: hard negatives for %d pairs", lang, len(pool))
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
