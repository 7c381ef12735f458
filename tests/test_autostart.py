"""The daemon that starts itself: ``codesearch query`` with no daemon leaves one running, which exits when
idle; a daemon of another build is replaced; ``auto_daemon = false`` starts none. Real processes, real model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from codesearch import client
from codesearch.cli import main

REPOS = Path(__file__).parent / "fixtures" / "repos"
pytestmark = pytest.mark.slow


def wait_for(cond: Callable[[], bool], timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "repo"
    shutil.copytree(REPOS / "mini_go", root)
    # A top-level package named like a standard-library module must not shadow it in the daemon.
    (root / "logging").mkdir()
    (root / "logging" / "__init__.py").write_text(
        "raise SystemExit('the repository shadowed the standard library')\n\n\ndef log_line(x):\n    return x\n")
    assert main(["index", str(root)]) == 0
    yield root
    client.stop_daemon(root / ".codesearch")


def query(root: Path, text: str, **env: str) -> list[dict]:
    exe = Path(sys.executable).parent / "codesearch"
    res = subprocess.run([str(exe), "query", text, "--json", "-k", "2"], cwd=root, capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_query_starts_a_daemon_that_answers_the_next_query_and_exits_when_idle(repo: Path):
    idir = repo / ".codesearch"
    assert client.probe(idir) is None
    first = query(repo, "retry with backoff", CODESEARCH_AUTO_DAEMON="1", CODESEARCH_DAEMON_IDLE_SECONDS="4")
    assert first  # answered in this process while the daemon loads
    wait_for(lambda: (client.probe(idir) or {}).get("state") == "idle", what="the auto-started daemon")
    info = client.probe(idir)
    assert info["version"] == client.build_id() and info["settings"]["daemon_idle_seconds"] == 4
    second = query(repo, "retry with backoff", CODESEARCH_AUTO_DAEMON="1")
    assert [r["id"] for r in second] == [r["id"] for r in first]  # the same index, the same ranking
    status = client.probe(idir)
    assert status["pid"] == info["pid"]  # the same daemon: the second query did not start another
    wait_for(lambda: client.probe(idir) is None, timeout=60, what="the idle daemon to exit")
    assert not (idir / client.PID_NAME).exists() and client.writer_lock_free(idir)


def test_auto_daemon_off_starts_none(repo: Path):
    assert query(repo, "retry with backoff", CODESEARCH_AUTO_DAEMON="0")
    time.sleep(1.0)
    assert client.probe(repo / ".codesearch") is None and not (repo / ".codesearch" / client.PID_NAME).exists()
    (repo / ".codesearch.toml").write_text("auto_daemon = false\n")
    env = {k: v for k, v in os.environ.items() if k != "CODESEARCH_AUTO_DAEMON"}
    exe = Path(sys.executable).parent / "codesearch"
    res = subprocess.run([str(exe), "query", "retry", "--json"], cwd=repo, env=env, capture_output=True, timeout=120)
    assert res.returncode == 0
    time.sleep(1.0)
    assert client.probe(repo / ".codesearch") is None


OLD_DAEMON = textwrap.dedent("""
    import sys
    from pathlib import Path
    import codesearch.client as c
    c._BUILD_ID = "0.0.1+an-older-build"
    from codesearch.config import load_settings
    from codesearch.daemon import Daemon
    root = Path(sys.argv[1])
    sys.exit(Daemon(root, load_settings(root)).run())
""")


def test_a_daemon_of_another_build_is_replaced(repo: Path, tmp_path: Path):
    idir = repo / ".codesearch"
    log = open(tmp_path / "old.log", "wb")
    old = subprocess.Popen([sys.executable, "-c", OLD_DAEMON, str(repo)], stderr=log)
    try:
        wait_for(lambda: (client.probe(idir) or {}).get("state") == "idle", what="the old daemon")
        assert client.probe(idir)["version"] == "0.0.1+an-older-build"
        assert query(repo, "retry with backoff", CODESEARCH_AUTO_DAEMON="1")
        assert old.wait(60) == 0  # asked to stop
        wait_for(lambda: (client.probe(idir) or {}).get("version") == client.build_id(), what="the new daemon")
        assert client.probe(idir)["pid"] != old.pid
    finally:
        if old.poll() is None:
            old.kill()
        log.close()
