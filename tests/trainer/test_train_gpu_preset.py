"""The ``gpu`` preset's code path on CPU with the tiny model: stage 1 and stage 2 through ``codesearch-train
train --preset gpu`` (GradCache chunks, bf16 autocast, checkpoints, three hard negatives), only the sizes
shrunk, and a stopped-and-resumed run that equals an uninterrupted one."""

from __future__ import annotations

import json
import shutil

import torch
from safetensors.torch import load_file

from trainer import cli
from trainer.config import preset

#: Only sizes change; GradCache stays on (chunks smaller than the batch) and precision is forced to bf16,
#: which "auto" picks on CUDA, so the CPU runs the autocast branch a GPU run takes.
SHRINK = ["steps=4", "batch_size=12", "chunk_size=4", "precision=bf16", "checkpoint_every=2", "eval_every=2",
          "dev_queries_per_language=4", "min_source_pairs=1000", "query_max_length=24", "doc_max_length=64",
          "warmup_steps=1", "threads=1", "query_variants=0.5"]
#: Weights of a resumed run against an uninterrupted one (bf16 autocast on CPU is deterministic: the
#: measured difference is 0; the tolerance leaves room for kernels that reorder sums).
RESUME_ATOL = 1e-6


def train(work, stage, tiny_model_dir, *extra):
    sets = [x for s in SHRINK for x in ("--set", s)]
    init = ["--init", str(tiny_model_dir)] if stage == 1 else []
    code = cli.main(["train", "--work", str(work), "--stage", str(stage), "--preset", "gpu", "--no-progress",
                     *init, *sets, *extra])
    assert code == 0


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_gpu_preset_runs_both_stages_on_cpu(tmp_path, tiny_model_dir, fixture_data_dir, capsys):
    work = tmp_path / "work"
    shutil.copytree(fixture_data_dir, work / "data")
    train(work, 1, tiny_model_dir)
    assert last_json(capsys)["status"] == "done"
    cfg = json.loads((work / "stage1" / "train_config.json").read_text())
    gpu = preset(1, "gpu").to_dict()
    kept = ("lr", "temperature", "freeze_layers", "tiers", "loss", "directions", "sampling_alpha")
    assert {k: cfg[k] for k in kept} == {k: gpu[k] for k in kept}
    assert cfg["chunk_size"] == 4 < cfg["batch_size"] and cfg["precision"] == "bf16"
    log = [json.loads(line) for line in (work / "stage1" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [0, 1, 2, 3]
    assert all("dev_variants" in r for r in log if "dev" in r)

    train(work, 2, tiny_model_dir)  # starts from stage 1's model, mines 3 hard negatives per pair
    assert last_json(capsys)["status"] == "done"
    cfg2 = json.loads((work / "stage2" / "train_config.json").read_text())
    assert cfg2["hard_negatives"] == preset(2, "gpu").hard_negatives == 3
    negatives = json.loads((work / "stage2" / "negatives.json").read_text())
    assert max(len(v) for v in negatives["negatives"].values()) == 3
    manifest = json.loads((work / "stage2" / "model" / "manifest.json").read_text())
    assert manifest["init_model"]["path"] == str((work / "stage1" / "model").resolve())


def test_gpu_preset_resumes_to_the_same_weights(tmp_path, tiny_model_dir, fixture_data_dir, capsys):
    for name in ("straight", "resumed"):
        shutil.copytree(fixture_data_dir, tmp_path / name / "data")
    train(tmp_path / "straight", 1, tiny_model_dir)
    train(tmp_path / "resumed", 1, tiny_model_dir, "--stop-after", "3")
    assert last_json(capsys)["status"] == "stopped"  # the last line printed is the stopped run's
    assert (tmp_path / "resumed" / "stage1" / "checkpoint" / "state.pt").is_file()
    train(tmp_path / "resumed", 1, tiny_model_dir)
    assert last_json(capsys)["status"] == "done"
    a = load_file(str(tmp_path / "straight" / "stage1" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "stage1" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=RESUME_ATOL, msg=name)
    losses = {}
    for name in ("straight", "resumed"):
        log = [json.loads(line) for line in (tmp_path / name / "stage1" / "log.jsonl").read_text().splitlines()]
        losses[name] = [r["loss"] for r in log if "loss" in r]
    assert losses["straight"] == losses["resumed"]
