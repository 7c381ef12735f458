"""End-to-end tests of ``codesearch lsp``: the real server as a subprocess, driven over stdio.

One server (the ``lsp`` fixture) runs for the module on a fresh copy of tests/fixtures/lsp_repo
with the real packaged model: it builds the index on ``initialize`` (with work-done progress), then
the tests search, edit buffers, save, reconfigure and send garbage to it. Protocol edge cases that
need no index (requests before ``initialize``, after ``shutdown``, exit codes, malformed bytes) use
a bare server without a workspace, spoken to with raw JSON-RPC frames.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

from codesearch.lsp import (
    CMD_REINDEX,
    CMD_SEARCH,
    CMD_STATUS,
    COMMANDS,
    SEARCH_METHOD,
    STATUS_NOTIFICATION,
    SearchRequest,
    ServerOptions,
    command_request,
    parse_options,
    snippet,
)

FIXTURE = Path(__file__).parent / "fixtures" / "lsp_repo"
DOCS = Path(__file__).parent.parent / "docs" / "lsp.md"
TIMEOUT = 120.0


def server_command() -> list[str]:
    """The ``codesearch lsp`` command of this checkout."""
    exe = Path(sys.executable).parent / "codesearch"
    return [str(exe), "lsp"] if exe.exists() else [sys.executable, "-m", "codesearch.cli", "lsp"]


def plain(obj: Any) -> Any:
    """pygls hands results of custom requests over as namedtuples; turn them into dicts and lists."""
    if hasattr(obj, "_asdict"):
        return {k: plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


class Session:
    """A pygls LanguageClient talking to a real ``codesearch lsp``, on an event loop in its own thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.progress: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.logs: list[str] = []
        self.client: LanguageClient = self.run(self._start())

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = TIMEOUT) -> Any:
        """Run a coroutine on the session's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> LanguageClient:
        client = LanguageClient("codesearch-tests", "1")

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create(params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @client.feature(types.PROGRESS)
        def progress(params: types.ProgressParams) -> None:
            self.progress.append(plain(params.value) if not isinstance(params.value, dict) else params.value)

        @client.feature(STATUS_NOTIFICATION)
        def status(params: Any) -> None:
            self.statuses.append(plain(params))

        @client.feature(types.WINDOW_LOG_MESSAGE)
        def log_message(params: types.LogMessageParams) -> None:
            self.logs.append(params.message)

        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        cmd = server_command()
        await client.start_io(cmd[0], *cmd[1:], cwd=str(self.root), env=env)
        return client

    def request(self, method: str, params: Any, msg_id: str | None = None) -> Any:
        """Send a request and wait for its plain-JSON result."""
        async def send() -> Any:
            return await self.client.protocol.send_request_async(method, params, msg_id=msg_id)

        return plain(self.run(send()))

    def search(self, **params: Any) -> list[dict[str, Any]]:
        """``codesearch/search`` -> its results."""
        return self.request(SEARCH_METHOD, params)["results"]

    def command(self, name: str, *args: Any) -> Any:
        """``workspace/executeCommand`` -> its result."""
        result = self.run(self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(args))))
        return plain(result)

    def notify(self, fn: Callable[[Any], None], params: Any) -> None:
        """Send a notification from the loop thread."""
        self.loop.call_soon_threadsafe(fn, params)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until ``predicate()`` holds (for notifications, which have no reply to wait on)."""
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError("timed out waiting for the server")
            time.sleep(0.05)

    def close(self) -> int | None:
        """shutdown + exit; returns the server's exit code."""
        async def stop() -> int | None:
            await self.client.shutdown_async(None)
            self.client.exit(None)
            await asyncio.wait_for(self.client.stop(), 20)
            return self.client._server.returncode if self.client._server else None

        try:
            return self.run(stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


@pytest.fixture(scope="module")
def lsp(tmp_path_factory: pytest.TempPathFactory):
    """A server on a fresh (unindexed) copy of the fixture repo, initialised; yields the Session."""
    root = tmp_path_factory.mktemp("lsp") / "repo"
    shutil.copytree(FIXTURE, root)
    session = Session(root)
    caps = types.ClientCapabilities(window=types.WindowClientCapabilities(work_done_progress=True))
    session.init_result = session.run(session.client.initialize_async(types.InitializeParams(
        capabilities=caps, root_uri=root.as_uri(), initialization_options={"k": 5, "debounceMs": 150},
        workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="repo")])))
    session.notify(session.client.initialized, types.InitializedParams())
    yield session
    session.exit_code = session.close()


def test_initialize_builds_the_index_with_progress_and_cancel_works(lsp):
    caps = lsp.init_result.capabilities
    assert set(caps.execute_command_provider.commands) == set(COMMANDS)
    assert caps.workspace_symbol_provider
    # Searches wait for the first build; cancelling one answers RequestCancelled at once.
    async def search_then_cancel() -> Any:
        fut = lsp.client.protocol.send_request(SEARCH_METHOD, {"query": "parse a port number"}, msg_id="slow-1")
        lsp.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="slow-1"))
        return fut

    with pytest.raises(JsonRpcException) as err:
        lsp.run(search_then_cancel()).result(30)
    assert err.value.code == -32800
    hits = lsp.search(query="retry a call with exponential backoff", k=3)
    assert hits[0]["name"] == "RetryWithBackoff"
    assert hits[0]["uri"] == (lsp.root / "net/retry.go").as_uri()
    assert hits[0]["range"] == {"start": {"line": 9, "character": 0}, "end": {"line": 19, "character": 1}}
    assert hits[0]["kind"] == "function" and hits[0]["language"] == "go" and hits[0]["role"] == "implementation"
    assert hits[0]["snippet"].startswith("func RetryWithBackoff(attempts int")
    assert hits[0]["score"] > hits[1]["score"]
    kinds = [p["kind"] for p in lsp.progress]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds
    assert any(s["state"] == "indexing" for s in lsp.statuses)
    lsp.wait_for(lambda: lsp.statuses and lsp.statuses[-1]["state"] == "ready")
    assert lsp.statuses[-1]["units"] == 11
    assert (lsp.root / ".codesearch").is_dir()


def test_search_filters_ranges_and_defaults(lsp):
    hits = lsp.search(query="add an item to the shopping cart", language="python", path="shop/*")
    assert len(hits) == 5  # k=5 from initializationOptions
    assert all(h["language"] == "python" and h["path"].startswith("shop/") for h in hits)
    top = hits[0]
    assert top["qualifiedName"] == "Cart.add_item"
    # A method: the range starts at its indentation; the snippet is dedented.
    assert top["range"]["start"] == {"line": 11, "character": 4}
    assert top["snippet"].splitlines()[1].startswith('    """Add a quantity')
    go = lsp.search(query="lang:go convert text to a number", k=1)
    assert [h["name"] for h in go] == ["ParsePort"]
    assert [h["name"] for h in lsp.search(query="escape html", kind="class")] == ["Cart"]


def test_execute_command_search_equals_the_request(lsp):
    params = {"query": "turn a title into a url slug", "k": 3}
    by_request = lsp.search(**params)
    by_command = lsp.command(CMD_SEARCH, params)["results"]
    assert by_command == by_request
    assert by_request[0]["name"] == "slugify"
    assert lsp.command(CMD_SEARCH, "turn a title into a url slug", 3)["results"] == by_request


def test_status_and_reindex_commands(lsp):
    status = lsp.command(CMD_STATUS)
    assert status["state"] == "ready" and status["units"] == 11
    (root,) = status["roots"]
    assert root["root"] == lsp.root.as_uri() and root["languages"] == {"go": 2, "javascript": 2, "python": 7}
    assert root["freshness"] == "watcher"  # the watch daemon runs inside the server
    report = lsp.command(CMD_REINDEX)["roots"][0]
    assert report["files"] == 4 and report["embedded"] == 0 and report["files_changed"] == 0


def test_workspace_symbol_is_semantic(lsp):
    symbols = lsp.run(lsp.client.workspace_symbol_async(types.WorkspaceSymbolParams(query="value added tax rate")))
    assert symbols[0].name == "vat_for_country"
    assert symbols[0].kind == types.SymbolKind.Function
    assert symbols[0].location.uri == (lsp.root / "shop/tax.py").as_uri()
    assert lsp.run(lsp.client.workspace_symbol_async(types.WorkspaceSymbolParams(query=""))) == []
    assert lsp.run(lsp.client.workspace_symbol_async(types.WorkspaceSymbolParams(query="lang:klingon x"))) == []


COUPONS = '''

def drop_expired_coupons(coupons, today):
    """Remove every coupon whose expiry date lies before today."""
    return [c for c in coupons if c.expires >= today]
'''


def test_unsaved_edits_are_searchable_without_touching_disk(lsp):
    path = lsp.root / "shop/cart.py"
    uri = path.as_uri()
    disk = path.read_text()
    query = {"query": "discard coupons that have expired", "k": 3}
    assert lsp.search(**query)[0]["name"] != "drop_expired_coupons"
    lsp.notify(lsp.client.text_document_did_open, types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=disk)))
    # Incremental edit: append a function at the end of the buffer.
    end = len(disk.splitlines())
    lsp.notify(lsp.client.text_document_did_change, types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=end, character=0), end=types.Position(line=end, character=0)),
            text=COUPONS)]))
    hits = lsp.search(**query)
    assert hits[0]["name"] == "drop_expired_coupons"
    assert hits[0]["uri"] == uri and hits[0]["range"]["start"] == {"line": end + 2, "character": 0}
    assert path.read_text() == disk
    status = lsp.command(CMD_STATUS)
    assert status["units"] == 11 and status["roots"][0]["unsavedFiles"] == ["shop/cart.py"]
    # Remove apply_discount from the buffer: its indexed version must not be found any more.
    without = disk.replace(disk[disk.index("def apply_discount"):], "") + COUPONS
    lsp.notify(lsp.client.text_document_did_change, types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=without)]))
    names = [h["qualifiedName"] for h in lsp.search(query="reduce a price by a percentage", path="shop/", k=10)]
    assert "apply_discount" not in names and "Cart.total_cents" in names
    # Closing the buffer discards the unsaved text.
    lsp.notify(lsp.client.text_document_did_close, types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    assert lsp.search(query="reduce a price by a percentage", k=1)[0]["name"] == "apply_discount"
    assert lsp.command(CMD_STATUS)["roots"][0]["unsavedFiles"] == []


def test_a_buffer_for_a_file_not_on_disk_yet_is_searchable(lsp):
    path = lsp.root / "fresh" / "geo.py"  # `:e fresh/geo.py` in Neovim: neither file nor directory exists
    uri = path.as_uri()
    lsp.notify(lsp.client.text_document_did_open, types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text="")))
    lsp.notify(lsp.client.text_document_did_change, types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=(
            "def haversine_km(lat1, lon1, lat2, lon2):\n"
            '    """Great-circle distance between two points on Earth, in kilometres."""\n'
            "    return 6371 * (lat1 - lat2)\n"))]))
    hits = lsp.search(query="distance between two coordinates on the globe", k=1)
    assert hits[0]["name"] == "haversine_km" and hits[0]["uri"] == uri
    assert not path.exists()
    assert lsp.command(CMD_STATUS)["roots"][0]["unsavedFiles"] == ["fresh/geo.py"]
    lsp.notify(lsp.client.text_document_did_close, types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    assert lsp.command(CMD_STATUS)["roots"][0]["unsavedFiles"] == []


def test_save_updates_the_index(lsp):
    path = lsp.root / "web/format.js"
    uri = path.as_uri()
    text = path.read_text() + ("\n/** Count the words of a sentence. */\n"
                               "function wordCount(s) {\n  return s.split(/\\s+/).length;\n}\n")
    lsp.notify(lsp.client.text_document_did_open, types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="javascript", version=1, text=text)))
    assert lsp.search(query="how many words are in a sentence", k=1)[0]["name"] == "wordCount"
    path.write_text(text)
    lsp.notify(lsp.client.text_document_did_save, types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))

    def indexed() -> bool:
        s = lsp.command(CMD_STATUS)
        return s["units"] == 12 and s["roots"][0]["unsavedFiles"] == []

    lsp.wait_for(indexed)
    assert lsp.search(query="how many words are in a sentence", k=1)[0]["name"] == "wordCount"
    lsp.notify(lsp.client.text_document_did_close, types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))


def test_files_changed_on_disk_are_picked_up_by_the_watcher(lsp):
    (lsp.root / "net/dns.go").write_text(
        "package net\n\n// LookupMX returns the mail exchanger records of a domain, by preference.\n"
        "func LookupMX(domain string) ([]string, error) {\n\treturn nil, nil\n}\n")
    lsp.wait_for(lambda: lsp.search(query="mail server records of a domain", k=1)[0]["name"] == "LookupMX")
    (lsp.root / "net/dns.go").unlink()
    lsp.wait_for(lambda: lsp.search(query="mail server records of a domain", k=1)[0]["name"] != "LookupMX")


def test_configuration_changes_apply(lsp):
    lsp.notify(lsp.client.workspace_did_change_configuration, types.DidChangeConfigurationParams(
        settings={"codesearch": {"k": 2, "mode": "semantic"}}))
    lsp.wait_for(lambda: len(lsp.search(query="round a number")) == 2)
    assert lsp.search(query="round a number")[0]["score"] < 1.0  # a cosine, not a fused score
    lsp.notify(lsp.client.workspace_did_change_configuration, types.DidChangeConfigurationParams(
        settings={"codesearch": {"k": 5, "mode": "hybrid", "nonsense": 1, "threads": "many"}}))
    lsp.wait_for(lambda: len(lsp.search(query="round a number")) == 5)
    lsp.wait_for(lambda: any("'threads' must be an integer" in m for m in lsp.logs))


def test_bad_requests_get_errors_and_the_server_lives_on(lsp):
    def error_of(method: str, params: Any) -> int:
        with pytest.raises(JsonRpcException) as err:
            lsp.request(method, params)
        return err.value.code

    assert error_of(SEARCH_METHOD, {"k": 3}) == -32602
    assert error_of(SEARCH_METHOD, {"query": "x", "k": "many"}) == -32602
    assert error_of(SEARCH_METHOD, {"query": "x", "k": 0}) == -32602
    assert error_of(SEARCH_METHOD, [1, 2]) == -32602
    assert error_of(SEARCH_METHOD, {"query": "x lang:klingon"}) == -32602
    assert error_of(SEARCH_METHOD, {"query": "x", "root": "file:///elsewhere"}) == -32602
    assert error_of("codesearch/nonsense", {}) == -32601
    # Garbage on the wire (the client drops the id-less error answers).
    stdin = lsp.client._server.stdin
    for body in (b"{not json", b'{"jsonrpc": "2.0", "id": 99, "method": "x", "params": {', b"[1, 2]", b"\xff\xfe"):
        lsp.loop.call_soon_threadsafe(stdin.write, b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert lsp.search(query="escape html special characters", k=1)[0]["name"] == "escapeHtml"


def test_shutdown_and_exit_are_clean(lsp):
    # Runs last in this module: the fixture's teardown has not run yet, so check what it will do.
    assert lsp.client._server.returncode is None
    assert lsp.close() == 0
    lsp.close = lambda: 0  # already closed


# --------------------------------------------------------------------------------------------------
# A bare server, raw JSON-RPC frames


class Raw:
    """``codesearch lsp`` with no workspace, spoken to in raw frames."""

    def __init__(self, cwd: Path) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        self.proc = subprocess.Popen(server_command(), cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                if line in (b"\r\n", b"\n"):
                    break
            assert length is not None
            self.messages.put(json.loads(out.read(length)))

    def send_bytes(self, body: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.send_bytes(json.dumps(message).encode())

    def answer(self, msg_id: Any = "any", timeout: float = 30.0) -> dict[str, Any]:
        """The next response (with this id, unless "any"), skipping notifications."""
        end = time.monotonic() + timeout
        while True:
            msg = self.messages.get(timeout=max(0.01, end - time.monotonic()))
            if "method" in msg:
                continue
            if msg_id == "any" or msg.get("id") == msg_id:
                return msg

    def call(self, msg_id: Any, method: str, params: Any = None) -> dict[str, Any]:
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return self.answer(msg_id)


@pytest.fixture
def raw(tmp_path: Path):
    server = Raw(tmp_path)
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


def test_protocol_errors_before_initialize_and_after_shutdown(raw):
    assert raw.call(1, SEARCH_METHOD, {"query": "x"})["error"]["code"] == -32002
    init = raw.call(2, "initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    assert init["result"]["serverInfo"]["name"] == "codesearch"
    raw.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    raw.send_bytes(b"{oops")
    assert raw.answer()["error"]["code"] == -32700
    raw.send_bytes(b'{"id": 3, "method": "codesearch/search"}')
    assert raw.answer(3)["error"]["code"] == -32600
    assert raw.call(4, SEARCH_METHOD, {"query": 42})["error"]["code"] == -32602
    assert raw.call(5, SEARCH_METHOD, {"query": "no folder open"})["error"]["code"] == -32803
    assert raw.call(6, "workspace/executeCommand", {"command": CMD_STATUS})["result"]["roots"] == []
    assert raw.call("a", "workspace/symbol", {"querry": "x"})["error"]["code"] == -32602
    assert raw.call("b", "workspace/symbol", None)["error"]["code"] == -32602
    assert raw.call("c", "workspace/executeCommand", {"command": "codesearch.nope"})["error"]["code"] == -32602
    assert raw.call("d", "codesearch/unknown", {})["error"]["code"] == -32601
    raw.send({"jsonrpc": "2.0", "id": {"bad": "id"}, "method": SEARCH_METHOD, "params": {"query": "x"}})
    assert raw.answer(None)["error"]["code"] == -32600
    assert raw.call(7, "shutdown")["result"] is None
    assert raw.call(8, "workspace/executeCommand", {"command": CMD_STATUS})["error"]["code"] == -32600
    raw.send({"jsonrpc": "2.0", "method": "exit"})
    assert raw.proc.wait(10) == 0


def test_exit_without_shutdown_is_code_1(raw):
    raw.call(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    raw.send({"jsonrpc": "2.0", "method": "exit"})
    assert raw.proc.wait(10) == 1


def test_closing_stdin_ends_the_server(raw):
    raw.call(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    assert raw.proc.stdin is not None
    raw.proc.stdin.close()
    assert raw.proc.wait(10) is not None


# --------------------------------------------------------------------------------------------------
# Options and request validation (pure functions)


def test_parse_options_maps_camel_case_and_reports_bad_values():
    opts, problems = parse_options({"modelPath": "/m", "indexDir": "idx", "k": 7, "ignorePatterns": ["*.gen.go"],
                                    "debounceMs": 50, "watch": False, "unknownKey": 1})
    assert opts == ServerOptions(model="/m", index_dir="idx", k=7, ignore=("*.gen.go",), debounce_ms=50, watch=False)
    assert problems == []
    nested, _ = parse_options({"codesearch": {"mode": "lexical"}}, opts)
    assert nested.mode == "lexical" and nested.k == 7
    bad, problems = parse_options({"k": 0, "mode": "fuzzy", "ignore": [1], "watch": "yes"}, opts)
    assert bad == opts and len(problems) == 4
    assert parse_options("nonsense")[1] == ["options must be an object, not str"]


def test_options_become_settings(tmp_path):
    (tmp_path / ".codesearch.toml").write_text('k = 3\nmode = "semantic"\n')
    settings = parse_options({"indexDir": "elsewhere", "k": 9, "debounceMs": 5000})[0].settings_for(tmp_path)
    assert settings.k == 9 and settings.mode == "semantic"
    assert settings.index_dir == str(tmp_path / "elsewhere")
    assert settings.debounce_ms == 5000 and settings.debounce_max_ms >= 5000


def test_search_request_validation():
    req = SearchRequest.from_json({"query": "q", "k": 4, "language": "go", "paths": ["a/", "b/*"], "kind": ["method"]})
    assert req == SearchRequest("q", 4, ("go",), ("a/", "b/*"), ("method",))
    assert command_request(["q", 2]) == SearchRequest("q", 2)
    bad_params = ({}, {"query": " "}, {"query": "q", "k": True}, {"query": "q", "language": 3},
                  {"query": "q", "mode": "x"})
    for bad in bad_params:
        with pytest.raises(JsonRpcException):
            SearchRequest.from_json(bad)


def test_snippet_dedents_relative_to_the_definition():
    assert snippet("def f(self):\n        return 1", "    ") == "def f(self):\n    return 1"
    assert snippet("func F() {\n\treturn\n}", "") == "func F() {\n\treturn\n}"
    assert len(snippet("x\n" * 50).splitlines()) == 6


@pytest.mark.parametrize("name", [SEARCH_METHOD, STATUS_NOTIFICATION, *COMMANDS, "workspace/symbol", "$/progress",
                                  "modelPath", "indexDir", "ignorePatterns", "debounceMs", "watch", "k", "mode"])
def test_protocol_is_documented(name):
    assert f"`{name}`" in DOCS.read_text()


# --------------------------------------------------------------------------------------------------
# A `codesearch watch` daemon already serves the repository


def test_a_running_watch_daemon_keeps_the_index_fresh(tmp_path, shipped_embedder):
    from codesearch.config import load_settings
    from codesearch.daemon import Daemon

    root = tmp_path / "repo"
    shutil.copytree(FIXTURE, root)
    daemon = Daemon(root, load_settings(root), embedder=shipped_embedder)
    daemon.start()
    session = None
    try:
        deadline = time.monotonic() + 60
        while not (daemon.status()["state"] == "idle" and daemon.status()["units"] == 11):
            assert time.monotonic() < deadline, daemon.status()
            time.sleep(0.05)
        session = Session(root)
        session.run(session.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri=root.as_uri())))
        session.notify(session.client.initialized, types.InitializedParams())
        assert session.search(query="escape html special characters", k=1)[0]["name"] == "escapeHtml"
        status = session.command(CMD_STATUS)["roots"][0]
        assert status["freshness"] == "daemon"
        # A save goes to the daemon, which re-indexes the file at once.
        path = root / "shop/tax.py"
        path.write_text(path.read_text() + '\n\ndef duty_free_limit():\n    """Customs allowance for travellers."""\n'
                        "    return 430\n")
        session.notify(session.client.text_document_did_save, types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri())))
        session.wait_for(lambda: session.command(CMD_STATUS)["units"] == 12)
        assert session.search(query="customs allowance for travellers", k=1)[0]["name"] == "duty_free_limit"
        report = session.command(CMD_REINDEX)["roots"][0]
        assert report["root"] == root.as_uri() and report["units"] == 12
        assert session.close() == 0
        session = None
        assert daemon.status()["state"] in ("idle", "indexing")  # the daemon outlives the editor
    finally:
        if session is not None:
            session.close()
        daemon.close()
