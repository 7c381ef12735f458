"""The training-only sources never overlap the benchmark corpora, and the mine step is idempotent."""

from __future__ import annotations

import json

from trainer import cli
from trainer.corpora import bench_module, extra_sources_spec


def test_extra_sources_are_disjoint_from_the_benchmark_corpora():
    bench = bench_module("corpora")
    bench_packages = {(s.language, s.package) for s in bench.SOURCES}
    bench_names = {(s.language, s.name) for s in bench.SOURCES}
    extra = extra_sources_spec()
    assert {s.language for s, _ in extra} == {"python", "go", "javascript", "php", "ruby"}
    for src, registry in extra:
        assert (src.language, src.package) not in bench_packages, src
        assert (src.language, src.name) not in bench_names, src
        assert registry in ("npm", "apt", "pypi")


def test_mine_step_is_idempotent_and_prints_counts(tmp_path, capsys):
    """`mine --tree` on two fixture repos writes the data once, then finds it up to date."""
    from trainer_helpers import REPOS

    args = ["mine", "--work", str(tmp_path / "w"), "--langs", "go", "ruby", "--no-bench-holdout",
            "--tree", f"go={REPOS / 'mini_go'}", "--tree", f"ruby={REPOS / 'mini_ruby'}",
            "--tree", f"php={REPOS / 'mini_php'}"]
    assert cli.main(args) == 0
    first = (tmp_path / "w" / "data" / "manifest.json").read_text()
    out = capsys.readouterr().out
    assert "| **go** | all |" in out and "| **ruby** | all |" in out and "php" not in out
    assert cli.main(args) == 0
    assert (tmp_path / "w" / "data" / "manifest.json").read_text() == first
    manifest = json.loads(first)
    assert manifest["benchmark_holdout"] == {"disabled": True} and manifest["pairs"] > 20
    assert {c["source"] for c in manifest["corpora"]} == {"mini_go", "mini_ruby"}
