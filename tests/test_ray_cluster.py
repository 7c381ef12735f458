"""The batch job against a Ray cluster address: a real head node started with `ray start --head`.

The head runs in its own temp directory with token authentication, as a deployed cluster does; the
CLI joins it with ``--ray-address`` in a fresh process, so nothing of a local Ray is reused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("pymilvus")

REPOS = Path(__file__).parent / "fixtures" / "repos"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "codesearch"), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    """A Ray head node on a free port (token auth); yields (address, env with the token)."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths live under it
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), HF_HUB_OFFLINE="1",
               CODESEARCH_AUTO_DAEMON="0", RAY_USAGE_STATS_ENABLED="0")
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"ray head did not start (exit {head.poll()})")
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        os.killpg(head.pid, 15)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, 9)
        shutil.rmtree(temp, ignore_errors=True)


def test_the_job_runs_on_a_cluster_address(cluster, tmp_path):
    address, env = cluster
    repo = tmp_path / "mini_go"
    shutil.copytree(REPOS / "mini_go", repo)
    backend = str(tmp_path / "org.db")
    done = _cli(["index", "--backend", backend, "--ray-address", address, "--json", str(repo)], env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["repositories"] == 1 and report["units"] > 0
    assert report["embedded"] == report["units"]  # a new backend: every text encoded, on the cluster's actors
    found = _cli(["query", "--backend", backend, "--json", "parse a duration string"], env)
    assert found.returncode == 0, found.stderr[-2000:]
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert hits and all(h["repo"] == "mini_go" for h in hits)


def test_a_cluster_without_the_token_is_refused_in_one_line(cluster, tmp_path):
    address, env = cluster
    env = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    repo = tmp_path / "mini_go"
    shutil.copytree(REPOS / "mini_go", repo)
    done = _cli(["index", "--backend", str(tmp_path / "x.db"), "--ray-address", address, str(repo)], env)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "cannot join the Ray cluster" in last and "Traceback" not in done.stderr


def test_an_address_nothing_listens_on_fails_fast(tmp_path):
    repo = tmp_path / "mini_go"
    shutil.copytree(REPOS / "mini_go", repo)
    env = dict(os.environ, HF_HUB_OFFLINE="1", CODESEARCH_AUTO_DAEMON="0")
    started = time.monotonic()
    done = _cli(["index", "--backend", str(tmp_path / "x.db"), "--ray-address", f"127.0.0.1:{_free_port()}",
                 str(repo)], env, timeout=60)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1
    assert "cannot reach the Ray cluster at 127.0.0.1:" in done.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "x.db").exists()  # nothing written
