"""Export is the contract with codesearch: TransformerEmbedder loads it and gives the trainer's vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codesearch.embed import TransformerEmbedder, load_embedder, read_model_info
from trainer.evaluate import evaluate_pairs, markdown_table
from trainer.export import export_model, verdict
from trainer.model import Encoder

TEXTS = ["parse a cookie header", "def retry(fn, attempts=5):\n    for i in range(attempts):\n        fn()",
         "x", "public static String slugify(String title) { return title.toLowerCase(); } " * 8]


@pytest.mark.parametrize("dtype,atol", [("float32", 2e-5), ("float16", None)])
def test_embedder_loads_the_export(tmp_path, tiny_model_dir, dtype, atol):
    out = tmp_path / "export"
    manifest = export_model(tiny_model_dir, out, model_id="tiny-export", dtype=dtype, max_length=64,
                            data_manifest={"pairs": 3, "sources": []}, metrics={"x": 1})
    assert {"config.json", "model.safetensors", "tokenizer.json", "manifest.json", "README.md"} <= \
        {p.name for p in out.iterdir()}
    assert manifest["model_id"] == "tiny-export" and manifest["data"]["pairs"] == 3
    trainer_enc = Encoder.from_dir(tiny_model_dir)
    emb = TransformerEmbedder(str(out), max_length=64)
    assert emb.info.model_id == "tiny-export" and emb.info.max_length == 64 and manifest["max_length"] == 64
    assert emb.info.doc_text_format == "header_doc_code"
    for kind in ("document", "query"):
        got = emb.encode(TEXTS, kind=kind)
        limit = 64 if kind == "document" else 512
        want = trainer_enc.encode(TEXTS, kind, max_length=limit)
        if atol is not None:
            np.testing.assert_allclose(got, want, atol=atol)
        else:  # float16 weights: same direction
            assert float(np.min(np.sum(got * want, axis=1))) > 0.999


def test_export_keeps_prefixes_and_identity(tmp_path, tiny_model_dir):
    enc = Encoder.from_dir(tiny_model_dir)
    src = tmp_path / "stage"
    enc.save(src, manifest={"query_prefix": "query: ", "document_prefix": "passage: ", "max_length": 32,
                            "base_model": {"model_id": "tiny-test"}})
    export_model(src, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert meta["query_prefix"] == "query: " and meta["base_model"] == {"model_id": "tiny-test"}
    info = read_model_info(str(tmp_path / "out"), 256)
    assert meta["max_length"] == 32  # recorded, but the setting decides the index's limit
    assert info.max_length == 256 and len(info.sha256) == 64
    a = Encoder.from_dir(tmp_path / "out").encode(["find a file"], "query", 32)
    b = TransformerEmbedder(str(tmp_path / "out")).encode(["find a file"], kind="query")
    np.testing.assert_allclose(a, b, atol=1e-3)


def _result(mrr_by_lang):
    return {"languages": {lang: {"distractors": {"mrr@10": v}} for lang, v in mrr_by_lang.items()}}


LANGS = ("go", "java", "javascript", "php", "python", "ruby")


def _repo(mrr_by_lang):
    return {"results": {lang: {"modes": {"semantic": {"mrr@10": v}}} for lang, v in mrr_by_lang.items()}}


def _para(tune, report=None):
    """One model's block of a bench/paraphrase.py report: semantic MRR@10 per language and split."""
    report = tune if report is None else report
    return {lang: {"paraphrased": {"tune": {"semantic": {"mrr@10": tune[lang]}},
                                   "report": {"semantic": {"mrr@10": report[lang]}}}} for lang in LANGS}


def _all(v):
    return dict.fromkeys(LANGS, v)


def _measures(base, shipped, cand):
    """held_out, repo and paraphrased results of the three models, each a {lang: mrr} or a constant."""
    rows = {"base": base, "shipped": shipped, "final": cand}
    norm = {k: v if isinstance(v, dict) else _all(v) for k, v in rows.items()}
    return ({k: _result(v) for k, v in norm.items()}, {k: _repo(v) for k, v in norm.items()},
            {k: _para(v) for k, v in norm.items()})


def test_verdict_ships_only_a_model_above_base_and_default_everywhere():
    held, repo, para = _measures(0.5, 0.55, 0.6)
    ok = verdict(held, repo, "base", "final", para, "shipped")
    assert ok["ship"] and ok["references"] == ["base", "shipped"], ok
    assert all(all(v.values()) for m in ("held_out", "repository", "paraphrased") for v in ok[m].values())
    assert ok["paraphrase_split"] == "tune"

    # Above the base model everywhere, but not above the shipped default on Ruby's paraphrased queries.
    held, repo, para = _measures(0.5, 0.55, 0.6)
    para["shipped"] = _para({**_all(0.55), "ruby": 0.61})
    no = verdict(held, repo, "base", "final", para, "shipped")
    assert not no["ship"] and no["paraphrased"]["base"]["ruby"] and not no["paraphrased"]["shipped"]["ruby"]
    assert no["reason"] == "does not beat shipped on the paraphrased queries (tune split) in ruby"

    # A tie does not beat; each measure counts on its own (here the held-out split in Go).
    held, repo, para = _measures(0.5, 0.55, 0.6)
    held["final"] = _result({**_all(0.6), "go": 0.55})
    assert verdict(held, repo, "base", "final", para, "shipped")["held_out"]["shipped"]["go"] is False

    # Without a default, only the base model is the reference (the rule before the paraphrased queries too).
    held, repo, para = _measures(0.5, 0.7, 0.6)
    assert not verdict(held, repo, "base", "final", para, "shipped")["ship"]
    assert verdict(held, repo, "base", "final", para)["ship"]


def test_verdict_reads_the_tune_split_and_needs_every_measure():
    held, repo, para = _measures(0.5, 0.55, 0.6)
    para["final"] = _para(_all(0.6), report=_all(0.1))  # the report split is not the rule's business
    assert verdict(held, repo, "base", "final", para, "shipped")["ship"]
    para["final"] = _para(_all(0.1), report=_all(0.9))
    assert not verdict(held, repo, "base", "final", para, "shipped")["ship"]

    held, repo, para = _measures(0.5, 0.55, 0.6)
    missing = verdict(held, repo, "base", "final", None, "shipped")
    assert not missing["ship"] and missing["paraphrased"] is None
    assert missing["reason"] == "the paraphrased queries (tune split): results missing for base, shipped, final"
    del repo["shipped"]
    assert "the repository benchmark: results missing for shipped" in \
        verdict(held, repo, "base", "final", para, "shipped")["reason"]
    worse_go = _result({**_all(0.6), "go": 0.4})
    assert "does not beat base on the held-out split in go" in \
        verdict({**held, "final": worse_go}, None, "base", "final", para)["reason"]


def test_export_reads_only_paraphrase_figures_of_the_same_weights(tmp_path, tiny_model_dir):
    from trainer.cli import paraphrase_results
    from trainer.train import file_sha256

    work = tmp_path / "work"
    (work / "eval").mkdir(parents=True)
    sha = file_sha256(tiny_model_dir / "model.safetensors")
    report = {"results": {"stage1": _para(_all(0.6)), "default": _para(_all(0.5))},
              "model_sha256": {"stage1": sha, "default": "0" * 64}}
    (work / "eval" / "paraphrase.json").write_text(json.dumps(report))
    got = paraphrase_results(work, {"stage1": tiny_model_dir, "shipped": tiny_model_dir})
    assert list(got) == ["stage1"]  # the shipped model's figures were measured on other weights
    assert got["stage1"]["go"]["paraphrased"]["tune"]["semantic"]["mrr@10"] == 0.6
    assert paraphrase_results(tmp_path / "nowhere", {"stage1": tiny_model_dir}) is None


def test_evaluation_protocol(tiny_model_dir, fixture_data_dir):
    from trainer.data import read_pairs

    pairs = read_pairs(fixture_data_dir / "train.jsonl")
    enc = Encoder.from_dir(tiny_model_dir)
    res = evaluate_pairs(enc, pairs, distractors=5, max_queries=6, doc_max_length=64)
    assert set(res["languages"]) == {"go", "java", "javascript", "php", "python", "ruby"}
    for v in res["languages"].values():
        assert v["queries"] == 6 and v["distractors_per_query"] == 5
        for proto in ("distractors", "pool_ranking"):
            assert 0.0 <= v[proto]["recall@1"] <= v[proto]["mrr@10"] <= v[proto]["recall@10"] <= 1.0
        # The target ranks no worse among a subset of the pool than in the whole pool.
        assert v["distractors"]["mrr@10"] >= v["pool_ranking"]["mrr@10"] - 1e-9
    assert "| python | 6 |" in markdown_table({"tiny": res})


def test_export_ship_only_with_a_winning_verdict(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import codesearch.embed
    from trainer.cli import main

    work, shipped = tmp_path / "work", tmp_path / "pkg" / "model"
    Encoder.from_dir(tiny_model_dir).save(work / "stage1" / "model", manifest={"stage": 1})
    monkeypatch.setattr(codesearch.embed, "SHIPPED_MODEL", shipped)
    assert main(["export", "--work", str(work), "--ship"]) == 1  # no evaluation: no verdict, nothing shipped
    err = capsys.readouterr().err
    assert "not shipped: the held-out split: results missing for base, shipped, stage1" in err
    assert not shipped.exists()
    assert main(["export", "--work", str(work), "--ship", "--force"]) == 0
    meta = json.loads((shipped / "manifest.json").read_text())
    assert meta["stage"] == 1 and meta["max_length"] == 128 and not meta["ship"]["ship"]
    assert (shipped / "model.safetensors").stat().st_mode & 0o044 == 0o044  # readable by everyone
    assert TransformerEmbedder(str(shipped)).info.model_id == "codesearch-minilm-gte"
    # Every export carries its int8 ONNX encoder, which `runtime = "onnx"` runs.
    assert (shipped / "model.int8.onnx").is_file()
    assert load_embedder(str(shipped), max_length=64, runtime="onnx").info.key.startswith("codesearch-minilm-gte+int8@")
