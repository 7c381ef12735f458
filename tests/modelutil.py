"""Helpers for encoder tests: the fixture repositories' units and queries, and copies of the shipped model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from codesearch.config import Settings
from codesearch.embed import FP32_GRAPH, FP32_RECIPE, ONNX_FILE, SHIPPED_MODEL, Embedder, load_embedder
from codesearch.types import document_text
from codesearch.walk import walk
from parsers import extract

REPOS = Path(__file__).parent / "fixtures" / "repos"


def fixture_units() -> tuple[list[str], list[str]]:
    """(unit ids, document texts) of every unit in the six fixture repositories."""
    ids, texts = [], []
    for repo in sorted(REPOS.glob("mini_*")):
        for entry in walk(repo):
            for sym in extract((repo / entry.path).read_bytes(), entry.language, entry.path):
                ids.append(f"{repo.name}/{entry.path}:{sym.qualified_name}")
                texts.append(document_text(sym, Settings().doc_text_format))
    return ids, texts


def fixture_queries() -> list[tuple[str, str]]:
    """(query, unit id) of every query in the fixture repositories' QUERIES.json."""
    out = []
    for repo in sorted(REPOS.glob("mini_*")):
        for q in json.loads((repo / "QUERIES.json").read_text()):
            path, _, qualname = q["target"].partition(":")
            out.append((q["query"], f"{repo.name}/{path}:{qualname}"))
    return out


def runtime_embedder(runtime: str) -> Embedder:
    """The shipped model under ``runtime`` with the default settings' length and batch size."""
    defaults = Settings()
    return load_embedder(None, max_length=defaults.max_length, batch_size=defaults.batch_size, runtime=runtime)


def fixture_vectors(embedders: dict[str, Embedder]) -> dict[str, tuple[object, object]]:
    """Each encoder's vectors of the fixture units and of the fixture queries: ``{name: (units, queries)}``."""
    _, texts = fixture_units()
    queries = [q for q, _ in fixture_queries()]
    return {name: (e.encode(texts), e.encode(queries, kind="query")) for name, e in embedders.items()}


def batching_cosines(embedder: Embedder, n: int) -> object:
    """Per text, the cosine between the first ``n`` fixture units encoded one by one and all in one
    (reversed) batch: how much a text's vector depends on its batch."""
    import numpy as np

    _, texts = fixture_units()
    texts = texts[:n]
    one_by_one = np.stack([embedder.encode([t])[0] for t in texts])
    batched = embedder.encode(texts[::-1])[::-1]
    return np.sum(one_by_one * batched, axis=1)


def model_copy(dest: Path, onnx: bytes | None, fp32_graph: bool = True) -> Path:
    """A copy of the shipped model directory (weights linked), with ``onnx`` as its int8 file (None: none),
    and with its fp32 graph (``model.fp32.graph.onnx`` and its recipe) unless ``fp32_graph`` is false."""
    dest.mkdir()
    for f in SHIPPED_MODEL.iterdir():
        if f.name == ONNX_FILE or (not fp32_graph and f.name in (FP32_GRAPH, FP32_RECIPE)):
            continue
        if f.suffix == ".safetensors":
            (dest / f.name).symlink_to(f)
        else:
            shutil.copy(f, dest / f.name)
    if onnx is not None:
        (dest / ONNX_FILE).write_bytes(onnx)
    return dest


def assert_torch_vectors(vectors: tuple[object, object], torch_vectors: tuple[object, object]) -> None:
    """An fp32 runtime's (units, queries) vectors are the torch encoder's: unit length, cosine >= 0.99999."""
    import numpy as np

    for a, b in zip(vectors, torch_vectors, strict=True):
        assert a.dtype == np.float32 and len(a) > 20
        assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
        cos = np.sum(a * b, axis=1)
        assert cos.min() >= 0.99999, cos.min()


def assert_torch_rankings(vectors: tuple[object, object], torch_vectors: tuple[object, object]) -> None:
    """Every fixture query ranks the fixture units as on torch (top 10 in order, up to ties < 1e-5)."""
    import numpy as np

    docs, queries = vectors
    docs_t, queries_t = torch_vectors
    for a, b in zip(queries @ docs.T, queries_t @ docs_t.T, strict=True):
        top_a, top_b = np.argsort(-a)[:10], np.argsort(-b)[:10]
        # Equal order, except where two units' scores are closer than the vectors' float rounding.
        assert all(i == j or abs(b[i] - b[j]) < 1e-5 for i, j in zip(top_a, top_b, strict=True))
