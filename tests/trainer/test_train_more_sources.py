"""trainer/more_sources.py: the lists never name benchmark code, and small real packages install and mine.

The full install (about 2,500 Debian packages, 150 npm packages, 200 wheels) is a bench step
(docs/training.md); here one small package of each registry kind goes through the same code into a
temporary corpus folder, offline apart from the registries themselves.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trainer import corpora as C
from trainer import more_sources as M
from trainer.data import mine

SMALL = {"deb": {"go": ["golang-github-pkg-errors-dev"]}, "npm": {"ms": "2.1.3"}, "pypi": {"six": "1.16.0"}}


def test_committed_lists_name_no_benchmark_or_older_source():
    lists = M.load_lists()
    assert M.check_lists(lists) == []
    assert sum(len(v) for v in lists["deb"].values()) > 1000 and len(lists["npm"]) > 100
    assert len(lists["pypi"]) > 100
    bench = C.bench_module("corpora")
    for src in M.all_sources(lists):
        assert src.package not in {s.package for s in bench.SOURCES}


def test_check_lists_refuses_benchmark_packages_and_repeats():
    bad = {"deb": {"php": ["php-twig", "php-foo", "php-foo"]}, "npm": {"lodash.get": "4.4.2", "express": "5"},
           "pypi": {"networkx": "3"}}
    problems = " ".join(M.check_lists(bad))
    for word in ("php-twig", "listed twice", "lodash.get", "express", "networkx"):
        assert word in problems


def test_rest_sources_leave_out_the_benchmark_parts():
    bench = C.bench_module("corpora")
    rest = {s.language: s for s in M.rest_sources()}
    py = rest["python"].spec["include"]
    assert py and not set(py) & set(bench.PY_MODULES) and "test" not in py
    if "java" in rest:  # openjdk-17-source installed (bench/corpora.py install)
        assert all(f"/{p}/*" in rest["java"].spec["exclude"] for p in bench.JAVA_PACKAGES)
    if "go" in rest:
        assert not set(rest["go"].spec["include"]) & set(bench.GO_PACKAGES)


def test_files_under_a_benchmark_root_are_never_taken(tmp_path, monkeypatch):
    pkg = tmp_path / "node_modules" / "thing"
    (pkg / "lib").mkdir(parents=True)
    (pkg / "dist").mkdir()
    (pkg / "lib" / "a.js").write_text("function a() {}\n")
    (pkg / "dist" / "a.js").write_text("function a() {}\n")
    (pkg / "lib" / "b.min.js").write_text("function b(){}\n")
    monkeypatch.setattr(M, "_npm_folder", lambda: tmp_path)
    src = M.MoreSource("javascript", "npm-thing", "npm", "thing", "1.0.0", kind="npm")
    _, files = M.source_files(src, [], {})
    assert [r for r, _ in files] == ["lib/a.js"]
    _, files = M.source_files(src, [(pkg / "lib").resolve()], {})
    assert files == []


@pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("npm") is None,
                    reason="needs Debian's apt-get and npm (the registries these machines reach)")
def test_small_real_packages_install_copy_and_mine(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "EXTRA_ROOT", tmp_path / "corpora")
    got = M.install_more(lists=SMALL, rest=False)
    assert got["failed"] == []
    by = {e["source"]: e for e in got["sources"]}
    assert set(by) == {"deb-golang-github-pkg-errors-dev", "npm-ms", "pypi-six"}
    assert by["npm-ms"]["version"] == "2.1.3" and by["pypi-six"]["version"] == "1.16.0"
    assert by["deb-golang-github-pkg-errors-dev"]["origin"].endswith("github.com/pkg/errors")
    for e in by.values():
        files = [p for p in (tmp_path / "corpora" / e["path"]).rglob("*") if p.is_file()]
        assert len(files) == e["files"] > 0
        assert not any("_test.go" in p.name or "/test/" in p.as_posix() for p in files)
    manifest = json.loads((tmp_path / "corpora" / "manifest.json").read_text())
    assert {e["source"] for e in manifest["sources"]} == set(by)
    # Idempotent: nothing is copied again.
    mtime = (tmp_path / "corpora" / by["pypi-six"]["path"]).stat().st_mtime_ns
    assert M.install_more(lists=SMALL, rest=False)["failed"] == []
    assert (tmp_path / "corpora" / by["pypi-six"]["path"]).stat().st_mtime_ns == mtime
    # The mine step reads them like any training-only source.
    sources = [s for s in C.sources(extra=True) if s.source in by]
    assert len(sources) == 3
    assert not [s for s in C.sources(extra=True, more=False) if s.source in by]  # `mine --no-more`
    out = mine(sources, tmp_path / "data")
    counts = out["counts"]
    assert counts["go"]["deb-golang-github-pkg-errors-dev"]["clean"] > 5
    assert counts["python"]["pypi-six"]["clean"] > 5
    assert sum(1 for _ in (tmp_path / "data" / "train.jsonl").open()) + sum(
        1 for _ in (tmp_path / "data" / "test.jsonl").open()) + sum(
        1 for _ in (tmp_path / "data" / "dev.jsonl").open()) == out["pairs"]
    assert Path(tmp_path / "data" / "manifest.json").is_file()
