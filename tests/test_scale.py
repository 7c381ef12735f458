"""The Ray batch job into Milvus Lite, and search through it (real Ray, real Milvus Lite, real model).

One local Ray cluster (2 CPUs) serves the whole module; the fixture repositories are two of
tests/fixtures/repos plus a copy of one as a "fork".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("pymilvus")

from codesearch.batch import index_repositories, read_repositories  # noqa: E402
from codesearch.cli import main  # noqa: E402
from codesearch.config import Settings  # noqa: E402
from codesearch.index import DB_NAME, IndexReader, connect  # noqa: E402
from codesearch.indexer import index_repository  # noqa: E402
from codesearch.milvus_store import MilvusStore  # noqa: E402
from codesearch.search import Searcher  # noqa: E402

REPOS = Path(__file__).parent / "fixtures" / "repos"
FIELDS = ["path", "qualified_name", "kind", "language", "role", "start_line", "end_line", "text_hash"]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def org(ray_cluster, tmp_path_factory, real_embedder):
    """Three repositories (mini_python, mini_go, and a fork of mini_python) in one backend, and local indexes."""
    base = tmp_path_factory.mktemp("org")
    roots = {}
    for name, src in (("mini_python", "mini_python"), ("mini_go", "mini_go"), ("fork_python", "mini_python")):
        roots[name] = base / name
        shutil.copytree(REPOS / src, roots[name])
    settings = Settings()
    for root in roots.values():
        index_repository(root, settings, embedder=real_embedder)
    backend = str(base / "org.db")
    report = index_repositories(read_repositories([str(r) for r in roots.values()]), backend, settings)
    return {"roots": roots, "backend": backend, "report": report, "settings": settings}


def _local_units(root: Path) -> set[tuple]:
    conn = connect(root / ".codesearch" / DB_NAME, readonly=True)
    try:
        return {tuple(r[f] for f in FIELDS) for r in conn.execute(f"SELECT {', '.join(FIELDS)} FROM units")}
    finally:
        conn.close()


def _backend_units(store: MilvusStore, repo: str) -> set[tuple]:
    rows = store.client.query(store.units, filter=f'repo == "{repo}"', output_fields=FIELDS)
    return {tuple(r[f] for f in FIELDS) for r in rows}


def test_units_land_as_in_the_local_index(org):
    report = org["report"]
    store = MilvusStore(org["backend"])
    try:
        with store.snapshot():
            for name, root in org["roots"].items():
                assert _backend_units(store, name) == _local_units(root), name
            assert store.count_units() == report.units
    finally:
        store.close()
    assert report.repositories == 3
    assert report.units == sum(len(_local_units(r)) for r in org["roots"].values())
    assert report.units_added == report.units and report.units_removed == 0
    n_py, n_go = (len(list((REPOS / d).rglob(g))) for d, g in (("mini_python", "*.py"), ("mini_go", "*.go")))
    assert report.files == 2 * n_py + n_go


def test_fork_units_are_embedded_once_with_the_local_vectors(org):
    report = org["report"]
    roots = org["roots"]
    py, go, fork = (_local_units(roots[n]) for n in ("mini_python", "mini_go", "fork_python"))
    distinct = {u[-1] for u in py | go}
    assert {u[-1] for u in fork} <= {u[-1] for u in py}
    assert report.embedded == report.unique_texts == len(distinct) < report.units
    assert report.tokens > 0 and 0 < report.encode_seconds
    assert report.tokens_per_worker_second == pytest.approx(report.tokens / report.encode_seconds)
    reader = IndexReader(roots["mini_go"] / ".codesearch")
    store = MilvusStore(org["backend"])
    try:
        hashes = sorted(u[-1] for u in go)
        local = reader.cached_vectors(hashes)
        remote = store.cached_vectors(hashes)
        assert set(remote) == set(local) == set(hashes)
        for h in hashes:  # the actor's encoder gives the local index's vectors
            np.testing.assert_allclose(remote[h], local[h], atol=1e-5)
    finally:
        store.close()
        reader.close()


def _ranked(hits):
    return [(h.symbol.path, h.symbol.qualified_name) for h in hits]


def _scores(hits):
    return [h.score for h in hits]


def test_semantic_search_through_the_backend_equals_the_local_index(org, real_embedder):
    queries = [q["query"] for q in json.loads((REPOS / "mini_python" / "QUERIES.json").read_text())]
    settings = org["settings"]
    local = Searcher(IndexReader(org["roots"]["mini_python"] / ".codesearch"), settings, embedder=real_embedder)
    remote = Searcher(MilvusStore(org["backend"]), settings, embedder=real_embedder)
    try:
        for q in queries:
            expected = local.search(q, mode="semantic", k=5)
            hits = remote.search(f"{q} repo:mini_python", mode="semantic", k=5)
            assert _ranked(hits) == _ranked(expected), q
            # Milvus holds float32 vectors, the local FAISS float16: scores agree to float16's rounding.
            np.testing.assert_allclose(_scores(hits), _scores(expected), atol=2e-3)
            assert {h.repo for h in hits} == {"mini_python"}
        # Lexical and hybrid: the same winner for a query that names its target.
        for mode in ("lexical", "hybrid"):
            top = remote.search("parse cookie header repo:mini_python", mode=mode, k=3)[0]
            want = local.search("parse cookie header", mode=mode, k=3)[0]
            assert top.symbol.qualified_name == want.symbol.qualified_name
    finally:
        local.close()
        remote.close()


def test_filters_of_the_query_language_and_repository(org, real_embedder):
    remote = Searcher(MilvusStore(org["backend"]), org["settings"], embedder=real_embedder)
    try:
        both = remote.search("parse a cookie header", mode="semantic", k=4)
        assert {h.repo for h in both[:2]} == {"mini_python", "fork_python"}  # the fork's copy ranks beside it
        assert both[0].score == pytest.approx(both[1].score, abs=1e-6)
        go = remote.search("parse a cookie header lang:go", k=5)
        assert go and all(h.symbol.language == "go" and h.repo == "mini_go" for h in go)
        fork = remote.search("parse a cookie header repo:fork_python", k=20)
        assert fork and all(h.repo == "fork_python" for h in fork)
        methods = remote.search("cache kind:method", k=20)
        assert methods and all(h.symbol.kind == "method" for h in methods)
        prefix = remote.search("cookie path:minipy/http", k=20)
        assert prefix and all(h.symbol.path.startswith("minipy/http") for h in prefix)
        glob = remote.search("cookie path:*.go", k=20)
        assert glob and all(h.symbol.path.endswith(".go") for h in glob)
        bracket = remote.search("cookie path:minipy/[ht]*", k=50)  # no Milvus form: filtered here
        assert bracket and all(h.symbol.path[7] in "ht" for h in bracket)
        assert remote.search("cookie repo:nosuchrepo", k=5) == []
    finally:
        remote.close()


def test_rerun_embeds_only_changed_texts_and_removes_stale_units(ray_cluster, tmp_path):
    go = tmp_path / "go"
    shutil.copytree(REPOS / "mini_go", go)
    fork = tmp_path / "fork"
    shutil.copytree(REPOS / "mini_go", fork)
    backend = str(tmp_path / "b.db")
    repos = read_repositories([str(go), f"gofork={fork}"])
    settings = Settings()
    first = index_repositories(repos, backend, settings)
    assert first.embedded == first.unique_texts == first.units // 2
    again = index_repositories(repos, backend, settings)
    assert (again.embedded, again.units_added, again.units_removed) == (0, 0, 0)
    src = fork / "cache" / "ttl.go"
    text = src.read_text()
    assert "func New(" in text
    # Renaming New shifts the bytes of the units after it in the file: their rows are replaced
    # (as the local index replaces a changed file's units), but only New's text is new.
    new_at = text.index("func New(")
    moved = [r for r in _backend_rows(backend, "gofork") if r["path"] == "cache/ttl.go" and r["start_byte"] >= new_at]
    src.write_text(text.replace("func New(", "func NewCache("))
    edited = index_repositories(repos, backend, settings)
    assert (edited.embedded, edited.units_added, edited.units_removed) == (1, len(moved), len(moved))
    (fork / "stats").rename(tmp_path / "stats-moved")  # a directory gone from the fork
    gone = len([u for u in _backend_rows(backend, "gofork") if u["path"].startswith("stats/")])
    assert gone > 0
    shrunk = index_repositories(repos, backend, settings)
    assert (shrunk.embedded, shrunk.units_added, shrunk.units_removed) == (0, 0, gone)
    rows = _backend_rows(backend, "gofork")
    assert not any(r["path"].startswith("stats/") for r in rows)
    assert any(r["qualified_name"] == "NewCache" for r in rows)
    assert len(_backend_rows(backend, "go")) == first.units // 2
    # The vector cache keeps exactly the texts some unit uses: "go" still has New and stats/.
    assert edited.texts_removed == shrunk.texts_removed == 0
    assert _cached_texts(backend) == {r["text_hash"] for r in _backend_rows(backend, "go") + rows}
    # Removing "go" drops its rows and the texts only it used (old New, stats/), not the shared ones.
    only_go = {r["text_hash"] for r in _backend_rows(backend, "go")} - {r["text_hash"] for r in rows}
    assert main(["index", "--backend", backend, "--remove", "go", "--json"]) == 0
    assert _cached_texts(backend) == {r["text_hash"] for r in _backend_rows(backend, "gofork")}
    assert len(only_go) > 1  # the old New and the units of stats/
    assert _backend_rows(backend, "go") == [] and len(_backend_rows(backend, "gofork")) == len(rows)
    assert main(["index", "--backend", backend, "--remove", "nosuchrepo"]) != 0
    again = index_repositories(repos, backend, settings)  # put back: only the texts it lost are embedded
    assert again.embedded == len(only_go) and again.units_added == first.units // 2


def _cached_texts(backend: str) -> set[str]:
    store = MilvusStore(backend)
    try:
        with store.snapshot():
            return {r["text_hash"] for r in store.client.query(store.texts, filter="", output_fields=["text_hash"],
                                                                limit=16384)}
    finally:
        store.close()


def test_another_model_builds_its_own_index_and_queries_use_theirs(ray_cluster, tmp_path, real_embedder):
    from codesearch.backend_service import open_store
    from codesearch.errors import IndexStale

    repo = tmp_path / "go"
    shutil.copytree(REPOS / "mini_go", repo)
    backend = str(tmp_path / "models.db")
    repos = read_repositories([str(repo)])
    shipped = index_repositories(repos, backend, Settings())
    base = index_repositories(repos, backend, Settings(model="base"))
    assert base.embedded == base.unique_texts == shipped.embedded and base.units_added == shipped.units
    assert index_repositories(repos, backend, Settings(model="base")).embedded == 0
    query = "a cache whose entries expire"
    for settings in (Settings(), Settings(model="base")):
        store = open_store(backend, settings)
        try:
            assert len(store.indexes) == 2 and store.count_units() == shipped.units
            hits = Searcher(store, settings).search(query, mode="semantic", k=3)
            local_store = str(tmp_path / f"{settings.model or 'shipped'}.db")
            index_repositories(repos, local_store, settings)  # a backend with that model alone
            alone = Searcher(MilvusStore(local_store), settings)
            try:
                assert _ranked(hits) == _ranked(alone.search(query, mode="semantic", k=3))
            finally:
                alone.close()
        finally:
            store.close()
    assert main(["status", "--backend", backend, "--json"]) == 0
    with pytest.raises(IndexStale, match="holds no index of"):
        open_store(backend, Settings(max_length=64, model="base"))


def test_roles_filter_and_prior_through_the_backend(ray_cluster, tmp_path, real_embedder):
    repo = tmp_path / "withtests"
    (repo / "tests").mkdir(parents=True)
    (repo / "slug.py").write_text('def slugify(title):\n    """Make a URL slug of a title."""\n'
                                  '    return "-".join(title.lower().split())\n')
    (repo / "tests" / "test_slug.py").write_text("from slug import slugify\n\n\ndef test_slugify():\n"
                                                 '    assert slugify("A Title") == "a-title"\n')
    backend = str(tmp_path / "r.db")
    index_repositories(read_repositories([str(repo)]), backend, Settings())
    remote = Searcher(MilvusStore(backend), Settings(), embedder=real_embedder)
    try:
        assert {h.symbol.role for h in remote.search("slugify a title", k=5)} == {"implementation", "test"}
        assert remote.search("slugify a title", k=5)[0].symbol.qualified_name == "slugify"  # the role prior
        assert [h.symbol.role for h in remote.search("slugify a title role:test", k=5)] == ["test"]
        assert [h.symbol.role for h in remote.search("slugify a title -role:test", k=5)] == ["implementation"]
    finally:
        remote.close()


def _backend_rows(backend: str, repo: str) -> list[dict]:
    store = MilvusStore(backend)
    try:
        with store.snapshot():
            return list(store.client.query(store.units, filter=f'repo == "{repo}"',
                                           output_fields=["path", "qualified_name", "start_byte", "text_hash"]))
    finally:
        store.close()


def test_cli_query_json_has_repo(org, capsys):
    assert main(["query", "--backend", org["backend"], "--json", "-k", "3", "parse a cookie header"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3
    assert {r["repo"] for r in rows[:2]} == {"mini_python", "fork_python"}
    assert rows[0]["qualified_name"] == "parse_cookie_header"


def test_cli_status_counts_units_per_repository(org, capsys):
    assert main(["status", "--backend", org["backend"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    want = {name: len(_local_units(root)) for name, root in org["roots"].items()}
    assert info["units_per_repository"] == want
    assert info["repositories"] == 3 and info["units"] == sum(want.values())
    assert info["vectors"] == org["report"].unique_texts


@pytest.mark.parametrize("args,message", [
    (["index", "--backend", "{tmp}/x.db", "{tmp}/does-not-exist"], "not a directory"),
    (["index", "--backend", "{tmp}/no/such/dir/x.db", "{repo}"], "does not exist"),
    (["index", "--backend", "{tmp}/x.sqlite", "{repo}"], "ending in .db"),
    (["index", "--backend", "http://127.0.0.1:1", "{repo}"], "cannot open backend"),
    (["query", "--backend", "{tmp}/missing.db", "anything"], "no backend at"),
    (["query", "--backend", "http://127.0.0.1:1", "anything"], "cannot open backend"),
    (["index", "--remove", "x"], "give --backend URI"),
    (["index", "--backend", "{tmp}/x.db", "--remove", "x", "{repo}"], "not both"),
])
def test_bad_input_is_one_line(ray_cluster, tmp_path, capsys, args, message):
    argv = [a.format(tmp=tmp_path, repo=REPOS / "mini_go") for a in args]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


# -- the service, MCP and LSP servers pointed at a backend ---------------------------------------------------


def test_backend_service_get_similar_status_and_refusals(org, real_embedder):
    from codesearch.backend_service import BackendService
    from codesearch.errors import IndexMissing, UsageError

    service = BackendService(org["backend"], org["settings"], embedder=real_embedder)
    try:
        hits, fresh = service.search("parse a cookie header repo:mini_python", k=1)
        (hit,) = hits
        assert hit.repo == "mini_python" and fresh["state"] == "backend" and fresh["updated_at"] > 0
        unit = service.get_code(hit.unit_id)["unit"]
        local = {u[1]: u for u in _local_units(org["roots"]["mini_python"])}
        assert unit["repo"] == "mini_python" and unit["qualified_name"] in local
        src = (org["roots"]["mini_python"] / unit["path"]).read_text().splitlines()
        assert unit["code"] == "\n".join(src[unit["start_line"] - 1:unit["end_line"]])
        # A path both the repository and its fork hold: ambiguous without a repository.
        with pytest.raises(UsageError, match="several repositories"):
            service.get_code(None, unit["path"], unit["start_line"])
        fork = service.get_code(None, unit["path"], unit["start_line"] + 1, repo="fork_python")["unit"]
        assert (fork["repo"], fork["qualified_name"], fork["code"]) == ("fork_python", unit["qualified_name"],
                                                                       unit["code"])
        with pytest.raises(IndexMissing, match="spans line"):
            service.get_code(None, unit["path"], 100000, repo="mini_python")
        near, _ = service.similar(hit.unit_id, k=3)
        assert hit.unit_id not in [h.unit_id for h in near]
        assert (near[0].repo, near[0].symbol.qualified_name) == ("fork_python", hit.symbol.qualified_name)
        assert near[0].score == pytest.approx(1.0, abs=1e-5)
        only_go, _ = service.similar(code=unit["code"], k=3, repos=("mini_go",))
        assert only_go and {h.repo for h in only_go} == {"mini_go"}
        st = service.handle_request({"op": "status"})
        assert st["units_per_repository"] == {n: len(_local_units(r)) for n, r in org["roots"].items()}
        assert st["repository_roots"] == {n: str(r.resolve()) for n, r in org["roots"].items()}
        refused = service.handle_request({"op": "reindex"})
        assert "not supported on the backend" in refused["error"] and refused["type"] == "UsageError"
    finally:
        service.close()


def test_mcp_server_serves_a_backend(org, real_embedder, tmp_path):
    import sys

    from mcp import StdioServerParameters
    from mcp.shared.exceptions import MCPError

    from tests.test_mcp import Session, structured

    backend = org["backend"]
    remote = Searcher(MilvusStore(backend), org["settings"], embedder=real_embedder)
    try:
        expected = remote.search("parse a cookie header", k=4)
        want = [(h.repo, h.symbol.path, h.symbol.qualified_name) for h in expected]
    finally:
        remote.close()
    exe = Path(sys.executable).parent / "codesearch"
    cmd = [str(exe), "mcp"] if exe.exists() else [sys.executable, "-m", "codesearch.cli", "mcp"]
    import os

    params = StdioServerParameters(command=cmd[0], args=[*cmd[1:], "--backend", backend], cwd=str(tmp_path),
                                   env={**os.environ, "CODESEARCH_AUTO_DAEMON": "0"})
    mcp = Session(params)
    try:
        tools = {t.name: t for t in mcp.run(mcp.session.list_tools()).tools}
        assert set(tools) == {"search_code", "get_code", "find_similar", "index_status"}
        out = structured(mcp.call("search_code", {"query": "parse a cookie header", "k": 4, "code_lines": 3}),
                         tools["search_code"])
        got = [(r["repo"], r["path"], r["qualified_name"]) for r in out["results"]]
        assert got == want  # the same ranking as the Searcher over the store in process
        np.testing.assert_allclose([r["score"] for r in out["results"]], [h.score for h in expected], atol=1e-4)
        top = out["results"][0]
        assert top["root"] == backend and top["code"] and out["indexes"][0]["state"] == "backend"
        inline = structured(mcp.call("search_code", {"query": "parse a cookie header repo:fork_python", "k": 3}),
                            tools["search_code"])["results"]
        listed = structured(mcp.call("search_code", {"query": "parse a cookie header", "k": 3,
                                                     "repos": ["fork_python"]}), tools["search_code"])["results"]
        assert [r["id"] for r in inline] == [r["id"] for r in listed] and {r["repo"] for r in inline} == {"fork_python"}
        unit = structured(mcp.call("get_code", {"id": top["id"]}), tools["get_code"])["unit"]
        assert unit["repo"] == top["repo"] and unit["qualified_name"] == top["qualified_name"]
        by_path = structured(mcp.call("get_code", {"path": top["path"], "line": top["start_line"],
                                                   "repo": "mini_go" if top["repo"] == "mini_go" else "fork_python"}),
                             tools["get_code"])["unit"]
        assert by_path["qualified_name"] == top["qualified_name"]
        with pytest.raises(MCPError) as err:  # the repository and its fork both hold this path
            mcp.call("get_code", {"path": top["path"], "line": top["start_line"]})
        assert err.value.code == -32602 and "several repositories" in str(err.value)
        near = structured(mcp.call("find_similar", {"id": top["id"], "k": 2}), tools["find_similar"])["results"]
        assert near[0]["qualified_name"] == top["qualified_name"] and near[0]["repo"] != top["repo"]
        (st,) = structured(mcp.call("index_status", {}), tools["index_status"])["indexes"]
        assert st["repositories"] == {n: len(_local_units(r)) for n, r in org["roots"].items()}
        assert st["units"] == sum(st["repositories"].values()) and st["languages"].keys() == {"python", "go"}
        with pytest.raises(MCPError) as err:
            mcp.call("reindex", {})
        assert err.value.code == -32602 and "not supported on the backend" in str(err.value)
    finally:
        mcp.close()


def test_lsp_server_searches_a_backend(org, tmp_path, monkeypatch):
    from lsprotocol import types

    from codesearch.lsp import CMD_REINDEX, CMD_STATUS
    from tests.test_lsp import Session

    folder = tmp_path / "workspace"
    folder.mkdir()
    monkeypatch.setenv("CODESEARCH_BACKEND", org["backend"])  # the `backend` setting
    lsp = Session(folder)
    try:
        lsp.run(lsp.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri=folder.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=folder.as_uri(), name="workspace")])))
        lsp.notify(lsp.client.initialized, types.InitializedParams())
        hits = lsp.search(query="parse a cookie header", k=3)
        assert {h["repo"] for h in hits[:2]} == {"mini_python", "fork_python"}
        for h in hits:
            root = org["roots"][h["repo"]].resolve()
            assert h["uri"] == (root / h["path"]).as_uri() and h["root"] == org["backend"]
            assert h["snippet"] and h["range"]["start"]["line"] >= 0
        go = lsp.search(query="parse a cookie header repo:mini_go", k=2)
        assert go and {h["repo"] for h in go} == {"mini_go"}
        symbols = lsp.run(lsp.client.workspace_symbol_async(types.WorkspaceSymbolParams(query="parse a cookie header")))
        assert symbols[0].name == hits[0]["name"] and symbols[0].location.uri == hits[0]["uri"]
        status = lsp.command(CMD_STATUS)
        assert status["state"] == "ready" and status["backend"] == org["backend"]
        assert status["repositories"] == {n: len(_local_units(r)) for n, r in org["roots"].items()}
        from pygls.exceptions import JsonRpcException

        with pytest.raises(JsonRpcException) as err:
            lsp.command(CMD_REINDEX)
        assert "not supported on the backend" in str(err.value)
        assert not (folder / ".codesearch").exists()  # the folder is not indexed: the backend serves it
    finally:
        lsp.close()


def test_lsp_option_backend():
    from codesearch.lsp_params import parse_options

    opts, problems = parse_options({"backend": "org.db"})
    assert opts.backend == "org.db" and problems == []
    assert opts.settings_for(REPOS / "mini_go").backend == "org.db"
    kept, problems = parse_options({"backend": 3}, opts)
    assert kept.backend == "org.db" and "backend" in problems[0]


def test_a_backend_of_the_first_release_with_unsuffixed_names_is_still_read(ray_cluster, tmp_path):
    from codesearch.milvus_store import TEXTS, UNITS

    repo = tmp_path / "go"
    shutil.copytree(REPOS / "mini_go", repo)
    backend = str(tmp_path / "first.db")
    repos = read_repositories([str(repo)])
    first = index_repositories(repos, backend, Settings())
    store = MilvusStore(backend)
    try:
        # The first release named its collections without the identity suffix.
        units, texts = store.units, store.texts
        assert units != UNITS and units.startswith(UNITS + "_")
        store.client.release_collection(units)
        store.client.release_collection(texts)
        store.client.rename_collection(units, UNITS)
        store.client.rename_collection(texts, TEXTS)
        assert sorted(store.client.list_collections()) == sorted([UNITS, TEXTS])
    finally:
        store.close()
    store = MilvusStore(backend)
    try:
        assert store.units == UNITS and store.texts == TEXTS and store.count_units() == first.units
        hits = Searcher(store, Settings()).search("a cache whose entries expire", mode="hybrid", k=3)
        assert hits and all(h.repo == "go" for h in hits)
    finally:
        store.close()
    again = index_repositories(repos, backend, Settings())
    assert again.embedded == 0 and again.units_removed == 0
