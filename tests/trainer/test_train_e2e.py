"""One short end-to-end run with the real packaged model on CPU: train 2 steps -> eval -> export -> index loader."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from codesearch.embed import TransformerEmbedder, base_model_dir
from trainer import cli
from trainer.model import Encoder

SMALL = ["batch_size=4", "chunk_size=2", "query_max_length=16", "doc_max_length=48", "eval_every=0",
         "dev_queries_per_language=2", "freeze_layers=4", "min_source_pairs=1000", "threads=1", "warmup_steps=1"]


@pytest.mark.slow
def test_real_model_two_steps_then_eval_and_export(tmp_path, fixture_data_dir, capsys):
    work = tmp_path / "work"
    shutil.copytree(fixture_data_dir, work / "data")
    sets = [x for s in SMALL for x in ("--set", s)]
    assert cli.main(["train", "--work", str(work), "--stage", "1", "--steps", "2", "--no-progress", *sets]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "done" and out["step"] == 2 and out["pairs_per_second"] > 0
    stage1 = work / "stage1" / "model"
    manifest = json.loads((stage1 / "manifest.json").read_text())
    assert manifest["base_model"]["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["init_model"]["path"] == str(base_model_dir().resolve())
    # Idempotent: a finished stage is not trained again.
    assert cli.main(["train", "--work", str(work), "--stage", "1", "--steps", "2", "--no-progress", *sets]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "already_done"

    assert cli.main(["eval", "--work", str(work), "--models", "stage1", "--max-queries", "3"]) == 0
    result = json.loads((work / "eval" / "stage1.json").read_text())
    assert set(result["languages"]) == {"go", "java", "javascript", "php", "python", "ruby"}

    assert cli.main(["export", "--work", str(work), "--dtype", "float32"]) == 0
    exported = work / "export"
    meta = json.loads((exported / "manifest.json").read_text())
    assert meta["train_configs"]["stage1"]["steps"] == 2 and meta["ship"]["ship"] is False
    assert meta["metrics"]["held_out"]["stage1"]["languages"]
    texts = ["read a file into a string", "def read(path):\n    with open(path) as f:\n        return f.read()"]
    got = TransformerEmbedder(str(exported)).encode(texts)
    want = Encoder.from_dir(stage1).encode(texts, "document", max_length=256)
    np.testing.assert_allclose(got, want, atol=2e-5)
