"""The training loop on a tiny random BERT: the loss goes down, a resumed run equals an uninterrupted one,
a finished stage is not run again, and stage 2 mines hard negatives with the stage-1 model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from trainer.config import TrainConfig
from trainer.data import read_pairs
from trainer.mine_negatives import excluded, load_negatives
from trainer.train import run_stage, sampling_sources


def tiny_config(**kw) -> TrainConfig:
    base = {"stage": 1, "steps": 4, "batch_size": 8, "chunk_size": 4, "lr": 1e-3, "warmup_steps": 1,
            "temperature": 0.05, "query_max_length": 24, "doc_max_length": 64, "freeze_layers": 0,
            "eval_every": 2, "checkpoint_every": 2, "dev_queries_per_language": 4, "seed": 7}
    return TrainConfig(**{**base, **kw})


def weights(model_dir):
    return load_file(str(model_dir / "model.safetensors"))


def test_loss_decreases(tmp_path, tiny_model_dir, fixture_data_dir):
    # min_source_pairs=1000 pools every source into its language: 6 sources of 8+ pairs.
    cfg = tiny_config(steps=40, eval_every=0, checkpoint_every=0, min_source_pairs=1000, lr=2e-3, chunk_size=0)
    res = run_stage(cfg, fixture_data_dir, tmp_path / "s1", tiny_model_dir, progress=False)
    assert res.status == "done" and res.step == 40
    first, last = sum(res.losses[:8]) / 8, sum(res.losses[-8:]) / 8
    assert last < 0.8 * first, (first, last)
    assert res.pairs_per_second > 0
    assert (tmp_path / "s1" / "done.json").is_file()
    assert not (tmp_path / "s1" / "checkpoint").exists()


@pytest.mark.parametrize("variants", [0.0, 0.5])
def test_resume_gives_the_same_weights(tmp_path, tiny_model_dir, fixture_data_dir, variants):
    cfg = tiny_config(query_variants=variants)
    straight = run_stage(cfg, fixture_data_dir, tmp_path / "a", tiny_model_dir, progress=False)
    first = run_stage(cfg, fixture_data_dir, tmp_path / "b", tiny_model_dir, stop_after=3, progress=False)
    assert first.status == "stopped" and first.step == 3
    assert (tmp_path / "b" / "checkpoint" / "model" / "model.safetensors").is_file()
    second = run_stage(cfg, fixture_data_dir, tmp_path / "b", tiny_model_dir, progress=False)
    assert second.status == "done" and second.step == 4
    assert first.losses + second.losses == pytest.approx(straight.losses, rel=1e-6)
    a, b = weights(tmp_path / "a" / "model"), weights(tmp_path / "b" / "model")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [0, 1, 2, 3]
    assert any("dev" in r for r in log)
    assert all(("dev_variants" in r) == bool(variants) for r in log if "dev" in r)
    starts = [r for r in log if r["step"] == -1]  # the starting model, logged once despite the resume
    assert len(starts) == 1 and starts[0]["model"] == "init" and "mrr@10" in starts[0]["dev"]
    again = run_stage(cfg, fixture_data_dir, tmp_path / "b", tiny_model_dir, progress=False)
    assert again.status == "already_done"


def test_query_variants_change_the_queries_trained_on(tmp_path, tiny_model_dir, fixture_data_dir):
    plain = run_stage(tiny_config(checkpoint_every=0), fixture_data_dir, tmp_path / "plain", tiny_model_dir,
                      progress=False)
    mixed = run_stage(tiny_config(checkpoint_every=0, query_variants=1.0), fixture_data_dir, tmp_path / "mixed",
                      tiny_model_dir, progress=False)
    assert plain.losses[0] != pytest.approx(mixed.losses[0], rel=1e-6)  # same batch, other queries


def test_an_older_config_without_new_fields_still_matches(tmp_path, tiny_model_dir, fixture_data_dir):
    cfg = tiny_config(checkpoint_every=0)
    run_stage(cfg, fixture_data_dir, tmp_path / "s", tiny_model_dir, progress=False)
    done = json.loads((tmp_path / "s" / "done.json").read_text())
    del done["train_config"]["query_variants"]  # as written before the field existed
    (tmp_path / "s" / "done.json").write_text(json.dumps(done))
    assert run_stage(cfg, fixture_data_dir, tmp_path / "s", tiny_model_dir, progress=False).status == "already_done"


def test_stage_two_with_hard_negatives(tmp_path, tiny_model_dir, fixture_data_dir):
    cfg = tiny_config(stage=2, steps=2, tiers=("clean",), hard_negatives=1, negatives_depth=5,
                      loss="gte", checkpoint_every=0)
    res = run_stage(cfg, fixture_data_dir, tmp_path / "s2", tiny_model_dir, progress=False)
    assert res.status == "done"
    negatives = load_negatives(tmp_path / "s2" / "negatives.json")
    pairs = {p.id: p for p in read_pairs(fixture_data_dir / "train.jsonl")}
    assert negatives and len(negatives) == sum(1 for p in pairs.values() if p.tier == "clean")
    for pid, negs in negatives.items():
        assert len(negs) == 1
        for n in negs:
            assert pairs[n].language == pairs[pid].language and not excluded(pairs[pid], pairs[n])
    manifest = json.loads((tmp_path / "s2" / "model" / "manifest.json").read_text())
    assert manifest["stage"] == 2 and manifest["train_config"]["hard_negatives"] == 1


def test_stage_two_draws_negatives_from_a_sampled_units_file(tmp_path, tiny_model_dir, fixture_data_dir):
    # A sample of the clean pairs as queries; the file scope adds their files' other pairs as documents.
    cfg = tiny_config(stage=2, steps=2, tiers=("clean",), hard_negatives=1, negatives_depth=3, max_pairs=20,
                      negatives_scope=("file", "language"), negatives_near_dup=0.8, checkpoint_every=0)
    assert run_stage(cfg, fixture_data_dir, tmp_path / "s2", tiny_model_dir, progress=False).status == "done"
    negatives = load_negatives(tmp_path / "s2" / "negatives.json")
    pairs = {p.id: p for p in read_pairs(fixture_data_dir / "train.jsonl")}
    assert len(negatives) == 20
    same_file = 0
    for pid, negs in negatives.items():
        p = pairs[pid]
        siblings = [q for q in pairs.values() if q.tier == "clean" and q.path == p.path and q.source == p.source
                    and not excluded(p, q)]
        assert len(negs) == 1 and not excluded(p, pairs[negs[0]])
        n = pairs[negs[0]]
        if siblings:  # the file had an allowed candidate: the negative is from it, sampled or not
            assert (n.source, n.path) == (p.source, p.path)
            same_file += 1
    assert same_file >= 10


def test_small_sources_are_pooled_per_language(fixture_data_dir):
    pairs = read_pairs(fixture_data_dir / "train.jsonl")
    sources = sampling_sources(pairs, 1000)
    assert set(sources) == {f"{lang}/*" for lang in ("go", "java", "javascript", "php", "python", "ruby")}
    assert sorted(i for v in sources.values() for i in v) == list(range(len(pairs)))
    assert set(sampling_sources(pairs, 1)) == {f"{p.language}/{p.source}" for p in pairs}
