"""Render the generated parts of docs/mcp.md: every tool's schemas, and a real example exchange.

Usage::

    .venv/bin/python bench/mcp_doc.py --write

The example is a live session: ``codesearch mcp`` over stdio, driven by the MCP SDK's client, on a copy of
``tests/fixtures/repos/mini_python`` indexed with the shipped model. tests/test_mcp.py checks that the
schemas in docs/mcp.md are the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOC = ROOT / "docs" / "mcp.md"
SCHEMA_MARKERS = ("<!-- schemas:start -->", "<!-- schemas:end -->")
EXAMPLE_MARKERS = ("<!-- example:start -->", "<!-- example:end -->")


def schemas_section() -> str:
    """One heading per tool with its title, description, input and output schema."""
    from codesearch.mcp_server import TOOLS

    out = []
    for name, spec in TOOLS.items():
        out += [f"### `{name}`: {spec['title']}", "", spec["description"], "",
                f"Read-only: {'yes' if spec['read_only'] else 'no'}.", "", "Input schema:", "", "```json",
                json.dumps(spec["input"], indent=2), "```", "", "Output schema (`structuredContent`):", "",
                "```json", json.dumps(spec["output"], indent=2), "```", ""]
    return "\n".join(out)


async def _exchange(repo: Path) -> str:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    exe = Path(sys.executable).parent / "codesearch"
    params = StdioServerParameters(command=str(exe), args=["mcp"], cwd=str(repo),
                                   env={**os.environ, "CODESEARCH_AUTO_DAEMON": "1"})
    calls = [("search_code", {"query": "retry a failing call with exponential backoff", "k": 2, "code_lines": 3}),
             ("get_code", {"path": "minipy/textutil.py", "line": 10}),
             ("get_code", {"path": "../secrets.txt", "line": 1})]
    lines = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("index_status", {})
        for name, args in calls:
            lines += ["", f"`tools/call` `{name}` with arguments:", "", "```json", json.dumps(args), "```", ""]
            try:
                res = await session.call_tool(name, args)
            except Exception as exc:  # the refused path: a JSON-RPC error
                lines += ["JSON-RPC error:", "", "```json",
                          json.dumps({"code": exc.error.code, "message": exc.error.message}, indent=2), "```"]
                continue
            data = res.structured_content
            for idx in data.get("indexes", []):
                idx["root"], idx["updated_at"] = "/home/me/src/demo", 1764670000.0
            for row in data.get("results", []) + ([data["unit"]] if "unit" in data else []):
                row["root"] = "/home/me/src/demo"
            lines += ["`structuredContent` of the result (the text content carries the same JSON):", "", "```json",
                      json.dumps(data, indent=2), "```"]
    return "\n".join(lines).strip() + "\n"


def example_section() -> str:
    """A live exchange on the mini_python fixture (roots and times replaced by stable values)."""
    from codesearch import client
    from codesearch.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "demo"
        shutil.copytree(ROOT / "tests" / "fixtures" / "repos" / "mini_python", repo)
        assert main(["index", str(repo)]) == 0
        try:
            return asyncio.run(_exchange(repo))
        finally:
            client.stop_daemon(repo / ".codesearch")


def replace(text: str, markers: tuple[str, str], body: str) -> str:
    start, end = markers
    return text[:text.index(start) + len(start)] + "\n" + body + text[text.index(end):]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update docs/mcp.md in place")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    text = replace(DOC.read_text(), SCHEMA_MARKERS, schemas_section())
    text = replace(text, EXAMPLE_MARKERS, example_section())
    if args.write:
        DOC.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
