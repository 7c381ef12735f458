"""Helpers shared by the benchmark scripts: running the CLI with measurements, and small utilities."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: Where benchmarks write (``CODESEARCH_BENCH_OUT`` moves it, e.g. to keep the 1,500-unit copies of
#: bench/paraphrase.py beside the 3,000-unit ones of bench/quality.py).
OUT = Path(os.environ.get("CODESEARCH_BENCH_OUT") or BENCH / "out")


DOCS = ROOT / "docs" / "benchmarks.md"


def replace_section(text: str, name: str, body: str) -> str:
    """Put ``body`` between the ``name`` markers of ``text`` (appending the section if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip() + "\n\n" + block + "\n"


def write_doc_section(name: str, body: str, doc: Path = DOCS) -> None:
    """Replace the ``name`` section of docs/benchmarks.md with ``body``."""
    old = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n"
    doc.write_text(replace_section(old, name, body), encoding="utf-8")


def log(msg: str) -> None:
    """Progress goes to stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def codesearch_cmd() -> list[str]:
    """The command that runs the codesearch CLI of this checkout (the venv's entry point if present)."""
    exe = Path(sys.executable).parent / "codesearch"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("codesearch")
    if found:
        return [found]
    return [sys.executable, "-m", "codesearch.cli"]


@dataclass
class Measured:
    """What a measured child process did.

    Attributes:
        returncode: Exit status.
        stdout: Its standard output, decoded.
        seconds: Wall-clock time from start to exit.
        max_rss_mb: Peak resident set size of the child (MiB), from ``wait4``'s rusage.
        cpu_seconds: User + system CPU time of the child.
    """

    returncode: int
    stdout: str
    seconds: float
    max_rss_mb: float
    cpu_seconds: float


def run_measured(
    cmd: list[str],
    *,
    stdin_text: str | None = None,
    env: dict[str, str] | None = None,
    quiet: bool = False,
    cwd: Path | None = None,
) -> Measured:
    """Run ``cmd`` to completion and measure its wall time and peak RSS.

    Standard error passes through to ours (the CLI's progress stays visible) unless ``quiet``.

    Args:
        cmd: Command line.
        stdin_text: Text fed to the child's standard input (none if None).
        env: Extra environment variables.
        quiet: Discard the child's standard error.
        cwd: Working directory.

    Returns:
        The measurements and the captured standard output.
    """
    # A benchmark's own queries start no background daemon unless it asks for one (env overrides).
    full_env = {**os.environ, "CODESEARCH_AUTO_DAEMON": "0", **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as inp:
        if stdin_text is not None:
            inp.write(stdin_text.encode())
            inp.seek(0)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdin=inp if stdin_text is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.DEVNULL if quiet else None,
            env=full_env,
            cwd=cwd,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", errors="replace")
    return Measured(proc.returncode, text, seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that parses as a JSON object (or the whole text as one object)."""
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except ValueError:
        pass
    for line in reversed(text.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def cli_help(*sub: str) -> str:
    """The ``--help`` text of a CLI subcommand ("" if the CLI does not run)."""
    try:
        res = subprocess.run([*codesearch_cmd(), *sub, "--help"], capture_output=True, text=True,
                             timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return res.stdout if res.returncode == 0 else ""


def query_modes() -> list[str]:
    """The ranking modes ``codesearch query --mode`` accepts, from its help ([] if it has no --mode)."""
    text = cli_help("query")
    if "--mode" not in text:
        return []
    m = re.search(r"--mode\s+\[?([a-z|]+)\]?", text)
    if m and "|" in m.group(1):
        return m.group(1).split("|")
    return [mode for mode in ("semantic", "lexical", "hybrid") if mode in text]


def du_bytes(path: Path) -> int:
    """Total size of the regular files under ``path`` (what ``du --apparent-size`` reports)."""
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for fn in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, fn)).st_size
            except OSError:
                pass
    return total


def machine() -> dict[str, Any]:
    """A description of this machine for the benchmark reports."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str:
    """The short HEAD commit, with ``+dirty`` when the code under test has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "codesearch", "parsers"], cwd=ROOT,
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""
    return head + ("+dirty" if dirty else "")


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
