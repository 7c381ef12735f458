"""The VS Code extension (editor_plugins/vscode): it type-checks, lints, and its Node tests pass.

The VS Code application cannot be downloaded here, so the extension's logic (settings, the search
picker, the status bar text) is tested in plain Node, and its requests run against the real
``codesearch lsp`` through vscode-jsonrpc, the JSON-RPC client vscode-languageclient is built on.
``npm ci`` runs only when package-lock.json changed since the last install.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "editor_plugins" / "vscode"
FIXTURE = Path(__file__).parent / "fixtures" / "lsp_repo"
NPM = shutil.which("npm")
NODE = shutil.which("node")


def _node_major() -> int:
    if NODE is None:
        return 0
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout
    m = re.match(r"v(\d+)", out.strip())
    return int(m.group(1)) if m else 0


pytestmark = [
    pytest.mark.skipif(NPM is None or NODE is None, reason="npm/node are not on PATH (the VS Code extension "
                                                           "is built and tested with Node >= 18)"),
    pytest.mark.skipif(0 < _node_major() < 18, reason="Node >= 18 is needed (node:test, AbortController)"),
]


def run(cmd: list[str], timeout: float = 300, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=EXT, capture_output=True, text=True, timeout=timeout, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def built() -> Path:
    """node_modules installed (from the lock file; skipped when up to date) and the extension compiled."""
    assert NPM is not None
    lock = hashlib.sha256((EXT / "package-lock.json").read_bytes()).hexdigest()
    stamp = EXT / "node_modules" / ".codesearch-lock-sha256"
    if not stamp.is_file() or stamp.read_text() != lock:
        run([NPM, "ci", "--no-audit", "--no-fund", "--prefer-offline"], timeout=600)
        stamp.write_text(lock)
    run([NPM, "run", "build"])
    return EXT


def test_lint(built):
    run([NPM, "run", "lint"])


def test_node_tests_including_the_real_server(built, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURE, repo)
    exe = Path(sys.executable).parent / "codesearch"
    assert exe.exists(), "the codesearch entry point is not installed in this environment"
    env = dict(os.environ, CODESEARCH_SERVER=str(exe), CODESEARCH_TEST_REPO=str(repo))
    assert NODE is not None
    out = run([NODE, "--test", "out/test/"], env=env)
    counts = dict(re.findall(r"^# (pass|fail|skipped|cancelled) (\d+)$", out, re.M))
    assert counts.get("fail") == "0" and counts.get("skipped") == "0" and counts.get("cancelled") == "0", out[-3000:]
    assert int(counts["pass"]) >= 13


def test_manifest_contributes_what_the_readme_promises():
    import json

    manifest = json.loads((EXT / "package.json").read_text())
    commands = {c["command"]: c["title"] for c in manifest["contributes"]["commands"]}
    assert commands["codesearch.searchCode"] == "Search code"
    settings = manifest["contributes"]["configuration"]["properties"]
    readme = (ROOT / "README.md").read_text()
    for key in settings:
        assert f"`{key}`" in readme, f"{key} is not documented in the README"
    assert (EXT / ".npmrc").read_text().strip() == "omit-lockfile-registry-resolved=true"
