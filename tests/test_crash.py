"""kill -9 at random moments of an index run: the previous index stays usable, the next run finishes."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from codesearch.config import Settings
from codesearch.embed import HashEmbedder
from codesearch.index import DB_NAME, connect
from codesearch.indexer import index_repository
from tests.indexutil import index_snapshot

SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from codesearch.config import Settings
    from codesearch.embed import HashEmbedder
    from codesearch.indexer import index_repository

    class SlowEmbedder(HashEmbedder):
        def encode(self, texts, kind="document"):
            time.sleep(0.15)
            return super().encode(texts, kind)

    print("start", flush=True)
    index_repository(Path(sys.argv[1]), Settings(), embedder=SlowEmbedder(dim=16))
    print("done", flush=True)
""")


def write_version(root: Path, version: int) -> None:
    for f in range(30):
        lines = []
        for i in range(40):
            lines.append(f"def fn_{f}_{i}_{version if (i + f) % 3 else 0}(x):\n"
                         f"    \"\"\"Doc {f} {i} v{version if i % 2 else 0}.\"\"\"\n    return x + {i}\n")
        (root / f"m{f}.py").write_text("\n".join(lines))


def vector_count(db: Path) -> int:
    conn = connect(db, readonly=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
    finally:
        conn.close()


def fresh_snapshot(tmp: Path, version: int) -> dict:
    root = tmp / f"fresh{version}"
    root.mkdir()
    write_version(root, version)
    index_repository(root, Settings(), embedder=HashEmbedder(dim=16))
    return index_snapshot(root / ".codesearch")


@pytest.mark.slow
def test_kill_during_index_keeps_previous_and_resumes(tmp_path):
    v1, v2 = fresh_snapshot(tmp_path, 1), fresh_snapshot(tmp_path, 2)
    root = tmp_path / "repo"
    root.mkdir()
    write_version(root, 1)
    index_repository(root, Settings(), embedder=HashEmbedder(dim=16))
    write_version(root, 2)
    rng = random.Random(7)
    script = tmp_path / "run_index.py"
    script.write_text(SCRIPT)
    db = root / ".codesearch" / DB_NAME
    cached_before = vector_count(db)
    seen_partial = False
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
        if attempt < 4:
            time.sleep(rng.uniform(0.05, 0.9))
        else:  # the last kill lands once some new vectors are committed, so resuming can be checked
            deadline = time.monotonic() + 60
            while vector_count(db) == cached_before and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
        proc.kill()
        proc.wait()
        # The index on disk is exactly the old or the new state, never a mix.
        snap = index_snapshot(root / ".codesearch", cached_extra=True)
        assert snap in (v1, v2)
        seen_partial |= snap == v1
    assert seen_partial, "every kill came too late to test anything"
    emb = HashEmbedder(dim=16)
    rep = index_repository(root, Settings(), embedder=emb)
    assert index_snapshot(root / ".codesearch") == v2
    # Vectors embedded before the kills were kept: the final run embedded less than a full v2 diff.
    full = tmp_path / "count"
    shutil.copytree(tmp_path / "fresh1", full, ignore=shutil.ignore_patterns())
    write_version(full, 2)
    rep_full = index_repository(full, Settings(), embedder=HashEmbedder(dim=16))
    assert rep.embedded < rep_full.embedded
