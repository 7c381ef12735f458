"""Which runtime should run the encoder? Speed and fidelity of each candidate on the shipped model.

Usage::

    python bench/runtime.py [--texts 256] [--queries 40] [--rounds 2] [--out bench/out/runtime.json]

Candidates (all on the shipped model, ``codesearch/model``):

- ``torch fp32``: :class:`codesearch.embed.TransformerEmbedder` (the encoder before ONNX).
- ``numpy fp32``: :class:`codesearch.embed_numpy.NumpyEmbedder` (the same vectors; the default for queries).
- ``torch int8``: the Hugging Face BERT with ``torch.ao.quantization.quantize_dynamic`` (qint8 Linear layers).
- ``ORT fp32``: the exported graph after ONNX Runtime's transformer fusions (``trainer.onnx_export.export_fp32``).
- ``ORT uint8 per channel``: ``model.int8.onnx`` as shipped (the same graph, uint8 weights with one scale
  per channel, dynamic quantisation: u8u8 kernels).
- ``ORT int8 per channel``: signed int8 weights, one scale per channel (u8s8 kernels; VNNI speeds them up).
- ``ORT int8 per tensor``: signed int8 weights, one scale per tensor (ORT's default).
- ``OpenVINO fp32``: the unfused export compiled by OpenVINO (skipped when ``openvino`` is not installed).

Documents are real code units (``header_doc_code`` text of the Python corpus of ``bench/corpora`` when
installed, else the fixture repositories), encoded in length-sorted batches of 32 on one thread (throughput
per core: the figure least distorted by other jobs) and on every core; queries are
the fixture repositories' paraphrased queries encoded one at a time on one thread, as ``codesearch query``
does. The rounds alternate the candidates (the machine is shared: compare ratios within one run). Fidelity
is the cosine of each document and query vector to torch fp32's, and the top-10 overlap of the fixture
queries' rankings over the fixture units.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import OUT, machine, write_json  # noqa: E402

from codesearch.embed import SHIPPED_MODEL, cpu_threads, tokenize  # noqa: E402
from codesearch.types import document_text  # noqa: E402
from codesearch.walk import walk  # noqa: E402
from parsers import extract  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "repos"
CORPUS = ROOT / "bench" / "corpora" / "python"


def unit_texts(root: Path, limit: int) -> tuple[list[str], list[str]]:
    """(ids, document texts) of up to ``limit`` units below ``root`` (every directory level searched)."""
    ids, texts = [], []
    for entry in walk(root):
        try:
            syms = extract((root / entry.path).read_bytes(), entry.language, entry.path)
        except Exception:  # noqa: BLE001 - a corpus file the parser rejects is just skipped here
            continue
        for s in syms:
            ids.append(f"{entry.path}:{s.qualified_name}")
            texts.append(document_text(s, "header_doc_code"))
            if len(texts) >= limit:
                return ids, texts
    return ids, texts


def fixture_queries() -> list[str]:
    return [q["query"] for repo in sorted(FIXTURES.glob("mini_*"))
            for q in json.loads((repo / "QUERIES.json").read_text())]


class _Pooled:
    """Tokenise like codesearch, run ``forward(ids, mask) -> hidden``, mean-pool and normalise in numpy."""

    def __init__(self, forward: Any, batch_size: int = 32, max_length: int = 128) -> None:
        from codesearch.embed import load_tokenizer, text_prefixes

        self.forward, self.batch_size, self.max_length = forward, batch_size, max_length
        self.tok, self.prefixes = load_tokenizer(SHIPPED_MODEL), text_prefixes(SHIPPED_MODEL)

    def encode(self, texts: list[str], kind: str = "document") -> np.ndarray:
        enc = tokenize(self.tok, texts, kind, self.max_length, 512, self.prefixes)
        order = sorted(range(len(texts)), key=lambda i: len(enc[i].ids))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            width = max(len(enc[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, i in enumerate(chunk):
                ids[row, :len(enc[i].ids)] = enc[i].ids
                mask[row, :len(enc[i].ids)] = 1
            hidden = self.forward(ids, mask)  # (batch, seq, dim)
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            out[chunk] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out


def ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def build_candidates(work: Path, threads: int) -> dict[str, dict[str, Any]]:
    """{name: {"bulk": encoder on ``threads`` threads, "query": encoder on one thread, "torch": bool}}."""
    import torch

    from codesearch.embed import TransformerEmbedder
    from codesearch.embed_numpy import NumpyEmbedder
    from codesearch.embed_onnx import OnnxEmbedder
    from trainer.model import Encoder
    from trainer.onnx_export import export_fp32, export_raw

    cands: dict[str, dict[str, Any]] = {}
    fp32 = TransformerEmbedder(None, max_length=128)
    cands["torch fp32"] = {"bulk": fp32, "query": fp32, "torch": True}
    cands["numpy fp32 (default for queries)"] = {"bulk": NumpyEmbedder(None, max_length=128, threads=threads),
                                                 "query": NumpyEmbedder(None, max_length=128, threads=1),
                                                 "torch": False}

    enc = Encoder.from_dir(SHIPPED_MODEL)
    enc.bert = torch.ao.quantization.quantize_dynamic(enc.bert, {torch.nn.Linear}, dtype=torch.qint8)

    class TorchInt8:
        def encode(self, texts: list[str], kind: str = "document") -> np.ndarray:
            return enc.encode(texts, kind, max_length=128 if kind == "document" else 512, batch_size=32)

    cands["torch int8 (dynamic)"] = {"bulk": TorchInt8(), "query": TorchInt8(), "torch": True}

    fused = export_fp32(SHIPPED_MODEL, work / "fused.onnx")

    def ort_pair(path: Path) -> dict[str, Any]:
        out = {}
        for role, n in (("bulk", threads), ("query", 1)):
            sess = ort_session(path, n)
            out[role] = _Pooled(lambda ids, mask, s=sess: s.run(None, {"input_ids": ids, "attention_mask": mask,
                                                                       "token_type_ids": np.zeros_like(ids)})[0])
        return {**out, "torch": False}

    cands["ORT fp32 (fused)"] = ort_pair(fused)
    cands["ORT uint8 per channel (shipped)"] = {"bulk": OnnxEmbedder(None, threads=threads),
                                               "query": OnnxEmbedder(None, threads=1), "torch": False}
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for name, weights, per_channel in (("ORT int8 per channel", QuantType.QInt8, True),
                                       ("ORT int8 per tensor (ORT default)", QuantType.QInt8, False)):
        path = work / f"{weights.name}-{per_channel}.onnx"
        quantize_dynamic(str(fused), str(path), weight_type=weights, per_channel=per_channel,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        cands[name] = ort_pair(path)
    try:
        import openvino as ov
    except ImportError:
        print("openvino not installed: skipped", file=sys.stderr)
    else:
        raw = export_raw(SHIPPED_MODEL, work / "raw.onnx")
        core = ov.Core()
        out = {}
        for role, n in (("bulk", threads), ("query", 1)):
            compiled = core.compile_model(str(raw), "CPU", {"INFERENCE_NUM_THREADS": n,
                                                            "INFERENCE_PRECISION_HINT": "f32"})
            out[role] = _Pooled(lambda ids, mask, c=compiled: c({"input_ids": ids, "attention_mask": mask,
                                                                 "token_type_ids": np.zeros_like(ids)})[0])
        cands[f"OpenVINO fp32 ({ov.__version__})"] = {**out, "torch": False}
    return cands


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=256, help="documents per bulk pass")
    ap.add_argument("--queries", type=int, default=40, help="single queries timed per candidate and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT / "runtime.json")
    args = ap.parse_args(argv)
    import torch

    threads = cpu_threads()
    _, docs = unit_texts(CORPUS if CORPUS.is_dir() else FIXTURES, args.texts)
    fx_ids, fx_docs = unit_texts(FIXTURES, 10_000)
    queries = (fixture_queries() * 4)[:args.queries]
    with tempfile.TemporaryDirectory(prefix="codesearch-runtime-") as tmp:
        cands = build_candidates(Path(tmp), threads)
        ref = cands["torch fp32"]["bulk"]
        ref_docs, ref_q = ref.encode(docs), ref.encode(fixture_queries(), kind="query")
        ref_rank = np.argsort(-(ref_q @ ref.encode(fx_docs).T), axis=1)[:, :10]
        tokens = sum(len(e.ids) for e in ref._tokenize(docs, "document"))
        bulk: dict[str, list[float]] = {n: [] for n in cands}
        bulk1: dict[str, list[float]] = {n: [] for n in cands}
        single: dict[str, list[float]] = {n: [] for n in cands}
        for _ in range(args.rounds):
            for name, c in cands.items():
                if c["torch"]:
                    torch.set_num_threads(threads)
                t0 = time.perf_counter()
                c["bulk"].encode(docs)
                bulk[name].append(time.perf_counter() - t0)
                if c["torch"]:
                    torch.set_num_threads(1)
                t0 = time.perf_counter()
                c["query"].encode(docs)  # the one-thread encoder: throughput per core, least hurt by load
                bulk1[name].append(time.perf_counter() - t0)
                for q in queries:
                    t0 = time.perf_counter()
                    c["query"].encode([q], kind="query")
                    single[name].append(time.perf_counter() - t0)
        rows = []
        for name, c in cands.items():
            if c["torch"]:
                torch.set_num_threads(threads)
            d = c["bulk"].encode(docs)
            q = c["query"].encode(fixture_queries(), kind="query")
            rank = np.argsort(-(q @ c["bulk"].encode(fx_docs).T), axis=1)[:, :10]
            overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rank, ref_rank, strict=True)]))
            cos_d, cos_q = np.sum(d * ref_docs, axis=1), np.sum(q * ref_q, axis=1)
            best, best1 = min(bulk[name]), min(bulk1[name])
            rows.append({"runtime": name, "bulk_seconds": round(best, 3),
                         "texts_per_second": round(len(docs) / best, 1), "tokens_per_second": round(tokens / best),
                         "bulk_1thread_seconds": round(best1, 3), "tokens_per_second_1thread": round(tokens / best1),
                         "query_ms_median": round(1000 * statistics.median(single[name]), 2),
                         "cos_doc_min": round(float(cos_d.min()), 4), "cos_doc_mean": round(float(cos_d.mean()), 4),
                         "cos_query_min": round(float(cos_q.min()), 4), "top10_overlap": round(overlap, 3)})
    base = rows[0]
    for r in rows:
        r["bulk_speedup"] = round(base["bulk_seconds"] / r["bulk_seconds"], 2)
        r["bulk_1thread_speedup"] = round(base["bulk_1thread_seconds"] / r["bulk_1thread_seconds"], 2)
        r["query_speedup"] = round(base["query_ms_median"] / r["query_ms_median"], 2)
    report = {"benchmark": "runtime", "command": "python bench/runtime.py " + " ".join(argv or sys.argv[1:]),
              "machine": machine(), "threads": threads, "documents": len(docs), "tokens": tokens,
              "queries_timed": len(queries) * args.rounds, "rows": rows}
    write_json(args.out, report)
    print(f"| runtime | bulk tokens/s, 1 thread | vs torch | bulk tokens/s, {threads} threads | vs torch "
          "| one query (ms) | query vs torch | cosine to fp32 (doc min / mean, query min) | top-10 overlap |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['runtime']} | {r['tokens_per_second_1thread']} | {r['bulk_1thread_speedup']}x "
              f"| {r['tokens_per_second']} | {r['bulk_speedup']}x "
              f"| {r['query_ms_median']} | {r['query_speedup']}x | {r['cos_doc_min']:.3f} / {r['cos_doc_mean']:.3f}, "
              f"{r['cos_query_min']:.3f} | {r['top10_overlap']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
