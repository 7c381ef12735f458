"""End-to-end tests of ``codesearch mcp``: the real server as a subprocess, driven by the MCP SDK's own client.

The server auto-starts the repository's watch daemon (the real packaged model), as it does for users.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from codesearch import client
from codesearch.cli import main

REPOS = Path(__file__).parent / "fixtures" / "repos"
pytestmark = pytest.mark.slow


def server_params(cwd: Path, **env: str) -> StdioServerParameters:
    exe = Path(sys.executable).parent / "codesearch"
    cmd = [str(exe), "mcp"] if exe.exists() else [sys.executable, "-m", "codesearch.cli", "mcp"]
    return StdioServerParameters(command=cmd[0], args=cmd[1:], cwd=str(cwd),
                                 env={**os.environ, "CODESEARCH_AUTO_DAEMON": "1", **env})


class Session:
    """One MCP client session on its own event loop thread, called synchronously from the tests."""

    def __init__(self, params: StdioServerParameters) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._ready: asyncio.Future[ClientSession] | None = None
        self._stop = asyncio.Event()
        self._task = asyncio.run_coroutine_threadsafe(self._main(params), self.loop)
        self.session = self._wait_ready()

    async def _main(self, params: StdioServerParameters) -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            self._session = session
            await asyncio.wait_for(self._stop.wait(), None)

    def _wait_ready(self) -> ClientSession:
        import time

        deadline = time.monotonic() + 60
        while not hasattr(self, "_session"):
            if self._task.done():
                self._task.result()
            assert time.monotonic() < deadline, "the MCP server did not initialize"
            time.sleep(0.05)
        return self._session

    def run(self, coro: Any, timeout: float = 180) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, name: str, args: dict[str, Any]) -> Any:
        return self.run(self.session.call_tool(name, args))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        try:
            self._task.result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("mcp") / "repo"
    shutil.copytree(REPOS / "mini_python", root)
    assert main(["index", str(root)]) == 0
    yield root
    client.stop_daemon(root / ".codesearch")


@pytest.fixture(scope="module")
def mcp(repo: Path) -> Iterator[Session]:
    s = Session(server_params(repo))
    yield s
    s.close()


@pytest.fixture(scope="module")
def tools(mcp: Session) -> dict[str, Any]:
    return {t.name: t for t in mcp.run(mcp.session.list_tools()).tools}


def structured(result: Any, tool: Any) -> dict[str, Any]:
    """The call's structured content, validated against the tool's declared output schema."""
    assert not result.is_error, result.content
    data = result.structured_content
    jsonschema.validate(data, tool.output_schema)
    assert json.loads(result.content[0].text) == data  # the text block carries the same JSON
    return data


def test_tools_have_titles_and_valid_schemas(tools):
    assert set(tools) == {"search_code", "get_code", "find_similar", "index_status", "reindex"}
    for tool in tools.values():
        assert tool.title and tool.description and len(tool.description) > 40
        for schema in (tool.input_schema, tool.output_schema):
            jsonschema.Draft202012Validator.check_schema(schema)
            assert schema["type"] == "object"
        # No nullable unions and one required input at most: schemas every client accepts.
        assert "anyOf" not in json.dumps(tool.input_schema)
        assert len(tool.input_schema.get("required", [])) <= 1
        for name, prop in tool.input_schema["properties"].items():
            assert prop.get("description") and prop.get("title"), (tool.name, name)


def test_search_with_freshness_code_budget_and_filters(mcp, tools, repo):
    out = structured(mcp.call("search_code", {"query": "retry a failing call with exponential backoff", "k": 3,
                                              "code_lines": 4}), tools["search_code"])
    top = out["results"][0]
    assert (top["path"], top["qualified_name"]) == ("minipy/httputil.py", "retry_with_backoff")
    lines = (repo / top["path"]).read_text().splitlines()
    assert top["code"] == "\n".join(lines[top["start_line"] - 1:top["start_line"] + 3])
    assert top["code_truncated"] and len(out["results"]) == 3
    (fresh,) = out["indexes"]
    assert fresh["root"] == str(repo) and fresh["generation"] >= 1 and fresh["updated_at"] > 0
    # The daemon this server just started may still run its start-up pass: the answer says so.
    assert fresh["pending"] == 0 or fresh["state"] == "indexing"

    classes = structured(mcp.call("search_code", {"query": "cache", "kinds": ["class"], "code_lines": 0}),
                         tools["search_code"])["results"]
    assert classes and all(r["kind"] == "class" and r["role"] == "implementation" and "code" not in r for r in classes)
    inline = structured(mcp.call("search_code", {"query": "cache kind:class path:minipy/"}), tools["search_code"])
    assert [r["id"] for r in inline["results"]] == [r["id"] for r in classes]
    none = structured(mcp.call("search_code", {"query": "cache", "languages": ["go"]}), tools["search_code"])
    assert none["results"] == []


def test_get_code_by_id_and_by_path_line(mcp, tools, repo):
    hit = structured(mcp.call("search_code", {"query": "least recently used cache", "k": 1}),
                     tools["search_code"])["results"][0]
    by_id = structured(mcp.call("get_code", {"id": hit["id"]}), tools["get_code"])["unit"]
    lines = (repo / hit["path"]).read_text().splitlines()
    assert by_id["code"] == "\n".join(lines[hit["start_line"] - 1:hit["end_line"]])
    assert not by_id["truncated"]
    inner = structured(mcp.call("get_code", {"path": hit["path"], "line": hit["start_line"] + 3}),
                       tools["get_code"])["unit"]
    assert inner["start_line"] >= hit["start_line"] and inner["end_line"] <= hit["end_line"]
    absolute = structured(mcp.call("get_code", {"path": str(repo / hit["path"]), "line": hit["start_line"]}),
                          tools["get_code"])["unit"]
    assert absolute["qualified_name"] == hit["qualified_name"]
    cut = structured(mcp.call("get_code", {"id": hit["id"], "max_bytes": 100}), tools["get_code"])["unit"]
    assert cut["truncated"] and len(cut["code"].encode()) <= 100
    missing = mcp.call("get_code", {"path": hit["path"], "line": 100000})
    assert missing.is_error and "spans line" in missing.content[0].text


def test_find_similar_by_unit_and_by_snippet(mcp, tools, repo):
    hit = structured(mcp.call("search_code", {"query": "retry with exponential backoff", "k": 1}),
                     tools["search_code"])["results"][0]
    near = structured(mcp.call("find_similar", {"path": hit["path"], "line": hit["start_line"], "k": 3}),
                      tools["find_similar"])["results"]
    assert len(near) == 3 and hit["id"] not in [r["id"] for r in near]
    assert near == sorted(near, key=lambda r: -r["score"])
    code = structured(mcp.call("get_code", {"id": hit["id"]}), tools["get_code"])["unit"]["code"]
    same = structured(mcp.call("find_similar", {"code": code, "k": 1}), tools["find_similar"])["results"]
    assert same[0]["id"] == hit["id"] and same[0]["score"] > 0.9


def test_status_then_reindex_after_an_edit(mcp, tools, repo):
    st = structured(mcp.call("index_status", {}), tools["index_status"])["indexes"][0]
    assert st["units"] > 10 and st["languages"] == {"python": st["units"]} and st["model"]
    assert st["files"].get("indexed", 0) >= 3
    (repo / "minipy" / "geo.py").write_text(
        'def haversine_km(lat1, lon1, lat2, lon2):\n    """Great-circle distance between two points on Earth."""\n'
        "    import math\n    return 6371 * math.acos(math.sin(lat1) * math.sin(lat2))\n")
    done = structured(mcp.call("reindex", {"paths": ["minipy/geo.py"]}), tools["reindex"])
    assert done["indexes"][0]["pending"] == 0
    found = structured(mcp.call("search_code", {"query": "distance between two coordinates on the globe", "k": 1}),
                       tools["search_code"])
    assert found["results"][0]["qualified_name"] == "haversine_km"
    assert found["indexes"][0]["generation"] > st["generation"]


def test_paths_outside_the_root_and_bad_arguments_are_refused(mcp, repo, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.py").write_text("def secret():\n    pass\n")
    (repo / "escape").symlink_to(outside)
    try:
        for args in ({"path": "../../etc/passwd", "line": 1}, {"path": "/etc/passwd", "line": 1},
                     {"path": "escape/secret.py", "line": 1}):
            with pytest.raises(MCPError) as err:
                mcp.call("get_code", args)
            assert err.value.code == -32602 and "outside the served roots" in str(err.value)
        with pytest.raises(MCPError):
            mcp.call("reindex", {"paths": ["../"]})
    finally:
        (repo / "escape").unlink()
    for tool, args in [("search_code", {"query": "x", "k": "ten"}), ("search_code", {}),
                       ("search_code", {"query": "x", "languages": ["cobol"]}),
                       ("search_code", {"query": "x", "bogus": 1}), ("get_code", {"line": 3}),
                       ("find_similar", {"id": 1, "code": "x"}), ("no_such_tool", {})]:
        with pytest.raises(MCPError) as err:
            mcp.call(tool, args)
        assert err.value.code == -32602, (tool, args)
    ok = mcp.call("search_code", {"query": "parse", "k": 1})  # still serving
    assert not ok.is_error


def test_the_mcp_server_started_a_daemon_of_this_build(mcp, repo):
    mcp.call("index_status", {})
    info = client.probe(repo / ".codesearch")
    assert info is not None and info["version"] == client.build_id()
    assert info["settings"]["daemon_idle_seconds"] == 1800


def test_docs_show_every_tool_schema_as_served(tools):
    import re

    doc = (Path(__file__).parent.parent / "docs" / "mcp.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", doc, flags=re.S)]
    for name, tool in tools.items():
        assert f"### `{name}`: {tool.title}" in doc
        assert tool.input_schema in blocks, f"regenerate docs/mcp.md (bench/mcp_doc.py): {name} input"
        assert tool.output_schema in blocks, f"regenerate docs/mcp.md (bench/mcp_doc.py): {name} output"
