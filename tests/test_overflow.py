"""After the kernel's inotify queue overflows (events lost), the daemon re-checks the whole tree by itself.

The overflow is real: the daemon's inotify instance is created while ``fs.inotify.max_queued_events``
is lowered to 16, then a burst of file creations overflows it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from codesearch import client
from codesearch.config import Settings
from codesearch.daemon import Daemon
from codesearch.embed import HashEmbedder

SYSCTL = Path("/proc/sys/fs/inotify/max_queued_events")


def _writable() -> bool:
    try:
        SYSCTL.write_text(SYSCTL.read_text())
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _writable(), reason="needs root to lower fs.inotify.max_queued_events")
def test_queue_overflow_triggers_a_full_pass(tmp_path: Path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "seed.py").write_text("def seed():\n    pass\n")
    old = SYSCTL.read_text()
    SYSCTL.write_text("16\n")
    try:
        daemon = Daemon(root, Settings(debounce_ms=50, debounce_max_ms=500), embedder=HashEmbedder(dim=32))
        daemon.start()  # its inotify instance gets the small queue
    finally:
        SYSCTL.write_text(old)
    try:
        idir = daemon.index_dir
        deadline = time.monotonic() + 30
        while (client.probe(idir) or {}).get("state") != "idle":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = client.probe(idir)["full_passes"]  # the start-up pass
        for i in range(400):  # far more events than 16, faster than the observer drains them
            (root / f"f{i}.py").write_text(f"def func_{i}():\n    pass\n")
        deadline = time.monotonic() + 60
        while True:
            st = client.probe(idir) or {}
            if st.get("units") == 401 and st.get("state") == "idle" and st.get("queue") == 0:
                break
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        assert st["overflows"] >= 1
        # the repair was a full incremental pass (later events may still bring incremental updates after it)
        assert st["full_passes"] > before
    finally:
        daemon.close()
