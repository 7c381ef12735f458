"""The ``codesearch`` command line: index, query, status.

Every error the user can act on is one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .config import SEARCH_MODES, Settings, load_settings
from .errors import CodesearchError, IndexLocked, IndexMissing, UsageError

if TYPE_CHECKING:
    from .types import Hit

log = logging.getLogger("codesearch")
MODEL_HELP = ('Encoder model directory, or "base" for the packaged all-MiniLM-L6-v2 '
              '(default: the code-search model shipped with codesearch).')


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="codesearch: %(message)s")


class _Progress:
    """A one-line progress display on a terminal's stderr; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.perf_counter()
        self.phase = ""
        self.phase_started = self.started
        self.last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if phase != self.phase:
            self.phase, self.phase_started = phase, now
        if now - self.last < 0.2 and done != total:
            return
        self.last = now
        elapsed = now - self.phase_started
        rate = done / elapsed if elapsed > 0.5 else 0.0
        if phase == "scan":
            line = f"scanning: {done} files"
        elif phase == "parse":
            line = f"parsing: {done}/{total} files"
        else:
            if rate > 0:
                eta = (total - done) / rate
                line = (f"embedding: {done}/{total} units  {rate:.1f} units/s  "
                        f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")
            else:
                line = f"embedding: {done}/{total} units"
        click.echo(f"\r\033[K{line}", nl=False, err=True)

    def close(self) -> None:
        if self.enabled and self.phase:
            click.echo("\r\033[K", nl=False, err=True)


def _settings(repo: Path | None, **overrides: Any) -> Settings:
    return load_settings(repo).replace(**overrides)


def _resolve_repo(repo: str | None, index_dir: str | None) -> Path:
    from .client import find_repo  # search.find_repo's rule without numpy/faiss: keeps daemon queries fast

    if repo is not None:
        path = Path(repo).expanduser()
        if not path.is_dir():
            raise UsageError(f"not a directory: {repo}")
        return path.resolve()
    if index_dir is not None:
        return Path.cwd().resolve()
    found = find_repo(Path.cwd())
    if found is None:
        raise IndexMissing("no index in this directory or its parents; run `codesearch index PATH` first, "
                           "or pass --repo")
    return found


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="codesearch")
def cli() -> None:
    """Semantic code search: index a repository, then ask for functions in plain language."""


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--index-dir", help="Where to keep the index (default: PATH/.codesearch).")
@click.option("--model", help=MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done.")
@click.option("--backend", help="Index the repositories (PATH, NAME=PATH or a manifest file) into this backend: "
              "a Milvus Lite file (org.db) or http://host:port (docs/scale.md).")
@click.option("--workers", type=click.IntRange(min=1), default=1, help="With --backend: encoder workers (Ray actors).")
@click.option("--ray-address", help="With --backend: a Ray cluster to run on (default: a local Ray).")
@click.option("--remove", "remove", multiple=True, metavar="NAME",
              help="With --backend: delete this repository from the backend (repeatable; no PATH).")
def index(paths: tuple[str, ...], index_dir: str | None, model: str | None, as_json: bool, verbose: bool,
          backend: str | None, workers: int, ray_address: str | None, remove: tuple[str, ...]) -> None:
    """Index (or update the index of) the repository at PATH (default: the current directory).

    With --backend URI (or the `backend` setting), index several repositories into a shared backend.
    """
    from .indexer import index_repository

    _setup_logging(verbose)
    backend = backend or load_settings(None).backend
    if remove and not backend:
        raise UsageError("--remove takes a repository out of a backend: give --backend URI")
    if backend and remove:
        if paths:
            raise UsageError("give either repositories to index or --remove NAME, not both")
        from .backend_cli import remove_backend

        remove_backend(backend, remove, as_json)
        return
    if backend:
        from .backend_cli import index_backend

        index_backend(paths or (".",), backend, _settings(None, model=model), workers, ray_address, as_json)
        return
    if len(paths) > 1:
        raise UsageError("give one PATH (several repositories are indexed into a backend: --backend URI)")
    path = paths[0] if paths else "."
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(f"not a directory: {path}")
    settings = _settings(root, index_dir=index_dir, model=model)
    handed = _index_via_daemon(root, settings, model)
    if handed is not None:
        report = handed
    else:
        progress = _Progress(sys.stderr.isatty() and not as_json)
        try:
            report = index_repository(root, settings, progress=progress)
        finally:
            progress.close()
    if as_json:
        data = dict(vars(report), units_per_second=round(report.units_per_second, 2))
        click.echo(json.dumps(data, sort_keys=True))
        return
    if report.rebuild_reason:
        click.echo(f"rebuilt the index: {report.rebuild_reason}", err=True)
    skipped = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(report.skipped.items()))
    click.echo(
        f"indexed {report.files} files, {report.units} units in {report.seconds:.1f}s "
        f"({report.files_changed} files changed, {report.files_deleted} deleted; "
        f"{report.embedded} units embedded"
        + (f" at {report.units_per_second:.1f}/s" if report.embedded else "") + ")"
        + (f"; not indexed: {skipped}" if skipped else ""))


def _index_via_daemon(root: Path, settings: Settings, model: str | None) -> Any:
    """If a watch daemon holds the index, let it run the update (it is the only writer); its report."""
    import dataclasses

    from .client import index_dir_for, reindex_via_daemon
    from .indexer import IndexReport

    handed = reindex_via_daemon(index_dir_for(root.resolve(), settings.index_dir), model)
    if handed is None:
        return None
    pid, data = handed
    click.echo(f"codesearch: the watch daemon (pid {pid}) holds this index; it ran the update", err=True)
    return IndexReport(**{f.name: data[f.name] for f in dataclasses.fields(IndexReport) if f.name in data})


def _hit_json(hit: Hit, explain: bool) -> dict[str, Any]:
    from .client import hit_record

    return hit_record(hit, explain)


def _print_human(rows: list[dict[str, Any]], root: Path, explain: bool) -> None:
    """Print result records (``_hit_json(hit, explain=True)``) for a terminal."""
    if not rows:
        click.echo("no results", err=True)
        return
    cwd = Path.cwd()
    for row in rows:
        full = root / row["path"]
        shown = str(full.relative_to(cwd)) if full.is_relative_to(cwd) else str(full)
        loc = click.style(f"{shown}:{row['start_line']}-{row['end_line']}", fg="magenta")
        name = click.style(row["qualified_name"], fg="green", bold=True)
        line = f"{loc}  {name}  {row['score']:.3f}"
        if row.get("role", "implementation") != "implementation":
            line += "  " + click.style(f"[{row['role']}]", fg="yellow")
        if explain:
            ex = row["explain"]
            sem, lex = ex["semantic_score"], ex["lexical_score"]
            line += (f"  [semantic #{ex['semantic_rank'] or '-'} {'' if sem is None else f'{sem:.3f}'}, "
                     f"lexical #{ex['lexical_rank'] or '-'} {'' if lex is None else f'{lex:.2f}'}]")
        click.echo(line)
        snippet = row["summary"] or row["signature"]
        if snippet:
            click.echo("    " + click.style(snippet[:160], dim=True))


def _shown(row: dict[str, Any], explain: bool) -> dict[str, Any]:
    return row if explain else {k: v for k, v in row.items() if k != "explain"}


@cli.command()
@click.argument("text", required=False)
@click.option("-k", "k", type=click.IntRange(1, 1000), help="Number of results (default 10).")
@click.option("--lang", "langs", multiple=True, help="Only this language (repeatable); also `lang:go` in TEXT.")
@click.option("--path", "paths", multiple=True, help="Only paths with this prefix or glob (repeatable).")
@click.option("--kind", "kinds", multiple=True, help="Only this kind: function, method, constructor, class.")
@click.option("--role", "roles", multiple=True,
              help="Only this role: implementation, test, benchmark, example, generated (repeatable); "
                   "also `role:test`.")
@click.option("--exclude-role", "not_roles", multiple=True,
              help="Leave out this role (repeatable), e.g. --exclude-role test; also `-role:test`.")
@click.option("--mode", type=click.Choice(SEARCH_MODES), help="Ranking: hybrid (default), semantic or lexical.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines output.")
@click.option("--explain", is_flag=True, help="Show each side's rank and score.")
@click.option("--repo", help="Repository root (default: nearest directory with an index).")
@click.option("--index-dir", help="Index directory (default: REPO/.codesearch).")
@click.option("--model", help="Encoder model directory (must be the one the index was built with).")
@click.option("--backend", help="Search this backend (org.db or http://host:port) instead of a local index; "
              "hits carry `repo`, and `repo:NAME` in TEXT filters by repository.")
def query(text: str | None, k: int | None, langs: tuple[str, ...], paths: tuple[str, ...],
          kinds: tuple[str, ...], roles: tuple[str, ...], not_roles: tuple[str, ...], mode: str | None,
          as_json: bool, explain: bool, repo: str | None, index_dir: str | None, model: str | None,
          backend: str | None) -> None:
    """Search for TEXT; with no TEXT, read one query per line from stdin (JSON lines out).

    Implementation code ranks before tests, benchmarks, examples and generated code unless the query
    asks for them ("test for ...") or a role filter is given (setting `role_prior`).

    A running `codesearch watch` daemon for the index answers the query (warm model, same results);
    without one, the search runs in this process and starts a daemon in the background for the next
    query (setting `auto_daemon`; it exits after `daemon_idle_seconds` without work).
    """
    from .client import QueryRunner, ensure_daemon, index_dir_for

    _setup_logging(False)
    role_filters = " ".join([*(f"role:{r}" for r in roles), *(f"-role:{r}" for r in not_roles)])
    backend = backend or load_settings(None).backend
    if backend:
        from .backend_cli import query_backend

        query_backend(backend, text, _settings(None, model=model), k, mode, langs, paths, kinds, as_json, explain,
                      role_filters)
        return
    root = _resolve_repo(repo, index_dir)
    settings = _settings(root, index_dir=index_dir, model=model)
    idir = index_dir_for(root, settings.index_dir)
    runner = QueryRunner(idir, settings, use_daemon=model is None)
    try:
        if text is not None:
            rows = runner.search(f"{text} {role_filters}".strip(), k=k, mode=mode, languages=langs, paths=paths,
                                 kinds=kinds)
            if as_json:
                for row in rows:
                    click.echo(json.dumps(_shown(row, explain)))
            else:
                _print_human(rows, root, explain)
        else:
            _batch(runner, k, mode, langs, paths, kinds, explain, role_filters)
    finally:
        runner.close()
    if settings.auto_daemon and model is None:
        # After the answer: a daemon loading beside this query would slow it down on two cores.
        sys.stdout.flush()
        ensure_daemon(root, idir, settings.daemon_idle_seconds)


def _batch(runner: Any, k: int | None, mode: str | None, langs: tuple[str, ...], paths: tuple[str, ...],
           kinds: tuple[str, ...], explain: bool, role_filters: str = "") -> None:
    """Batch mode of ``codesearch query``: one query per stdin line, one JSON line per query."""
    if sys.stdin.isatty():
        click.echo("reading queries from stdin, one per line (Ctrl-D to end)", err=True)
    for line in sys.stdin:
        q = line.strip()
        if not q:
            continue
        try:
            rows = runner.search(f"{q} {role_filters}".strip(), k=k, mode=mode, languages=langs, paths=paths,
                                 kinds=kinds)
            click.echo(json.dumps({"query": q, "results": [_shown(r, explain) for r in rows]}))
        except UsageError as exc:
            click.echo(json.dumps({"query": q, "error": str(exc), "results": []}))
        sys.stdout.flush()


@cli.command()
@click.option("--repo", help="Repository root (default: nearest directory with an index).")
@click.option("--index-dir", help="Index directory (default: REPO/.codesearch).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--backend", help="Show this backend (org.db or http://host:port) instead of a local index.")
def status(repo: str | None, index_dir: str | None, as_json: bool, backend: str | None) -> None:
    """Show what is indexed: files, units per language, model, and files that were not indexed."""
    from .client import probe
    from .index import IndexReader, find_index_dir

    backend = backend or load_settings(None).backend
    if backend:
        from .backend_cli import status_backend

        status_backend(backend, _settings(None), as_json)
        return

    root = _resolve_repo(repo, index_dir)
    settings = _settings(root, index_dir=index_dir)
    daemon = probe(find_index_dir(root, settings.index_dir))
    try:
        reader = IndexReader(find_index_dir(root, settings.index_dir))
    except IndexMissing:
        if daemon is None:
            raise
        click.echo(json.dumps({"repo": str(root), "daemon": daemon}, sort_keys=True) if as_json
                   else f"repo:    {root}\nindex:   not built yet\n{_daemon_line(daemon)}")
        return
    try:
        info = reader.status()
    finally:
        reader.close()
    info["repo"] = str(root)
    info["daemon"] = daemon
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    files = info["files"]
    click.echo(f"repo:    {root}")
    click.echo(f"index:   {info['index_dir']} (generation {info['generation']}, "
               f"{info['index_bytes'] / 1e6:.1f} MB, updated "
               f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['updated_at']))})")
    click.echo(f"model:   {info['model']} ({info['doc_text_format']})")
    click.echo(f"files:   {sum(files.values())} ({', '.join(f'{n} {s}' for s, n in sorted(files.items()))})")
    langs = ", ".join(f"{lang} {n}" for lang, n in sorted(info["languages"].items()))
    click.echo(f"units:   {info['units']}" + (f" ({langs})" if langs else ""))
    if info.get("roles"):
        click.echo("roles:   " + ", ".join(f"{role} {n}" for role, n in sorted(info["roles"].items())))
    for f in info["not_indexed"]:
        click.echo(f"  not indexed: {f['path']}: {f['status'].replace('_', ' ')}"
                   + (f" ({f['error']})" if f["error"] else ""))
    click.echo(_daemon_line(daemon))


def _daemon_line(d: dict[str, Any] | None) -> str:
    """One line about the watch daemon (``codesearch status``)."""
    if d is None:
        return "daemon:  not running (`codesearch watch` keeps the index fresh)"
    line = f"daemon:  pid {d['pid']}, {d['state']}, queue {d['queue']}"
    cur = d.get("current")
    if cur and cur.get("total"):
        line += f" ({cur.get('phase')} {cur.get('done')}/{cur.get('total')})"
    last = d.get("last_update")
    if last:
        when = time.strftime("%H:%M:%S", time.localtime(last["at"]))
        what = "full pass" if last.get("full") else f"{last['files_changed']} changed, {last['files_deleted']} deleted"
        line += f"; last update {when}: {what}, {last['embedded']} units embedded in {last['seconds']:.2f}s"
    if d.get("overflows"):
        line += f"; event queue overflowed {d['overflows']}x ({d.get('full_passes', 0)} whole-tree passes)"
    if d.get("rss_mb"):
        line += f"; {d['rss_mb']:.0f} MB"
    if d.get("last_error"):
        line += f"\n  last error: {d['last_error']}"
    return line


def _setup_watch_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="codesearch: %(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("codesearch").setLevel(logging.INFO if verbose else logging.WARNING)


@cli.command()
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=str))
@click.option("--index-dir", help="Where the index lives (default: PATH/.codesearch).")
@click.option("--model", help=MODEL_HELP)
@click.option("--detach", is_flag=True, help="Run in the background (log: INDEX_DIR/daemon.log).")
@click.option("--stop", is_flag=True, help="Stop the daemon watching PATH.")
@click.option("--status", "show_status", is_flag=True, help="Show the daemon watching PATH (exit 1: none runs).")
@click.option("--json", "as_json", is_flag=True, help="With --status: print JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Log each update: what was re-indexed and how long it took.")
@click.option("--idle-seconds", type=click.IntRange(min=0), default=0,
              help="Exit after this long without a request or a change (default 0: never).")
def watch(path: str, index_dir: str | None, model: str | None, detach: bool, stop: bool, show_status: bool,
          as_json: bool, verbose: bool, idle_seconds: int) -> None:
    """Keep the index of PATH fresh while files change, and answer queries from a warm process.

    Runs in the foreground until Ctrl-C, SIGTERM or `codesearch watch --stop`; --detach runs it in
    the background. It first brings the index up to date (a full incremental pass), then re-indexes
    each saved file within about a second. `codesearch query` uses it when it runs; `codesearch index`
    hands its run to it.
    """
    from . import client

    if stop or show_status:
        root = _resolve_repo(None if path == "." else path, index_dir)
        settings = _settings(root, index_dir=index_dir)
        idir = client.index_dir_for(root, settings.index_dir)
        if stop:
            pid = client.stop_daemon(idir)
            click.echo(f"stopped the watch daemon (pid {pid})" if pid is not None
                       else f"no watch daemon is running for {root}", err=True)
            return
        info = client.probe(idir)
        if info is None:
            raise CodesearchError(f"no watch daemon is running for {root}")
        if as_json:
            click.echo(json.dumps(info, sort_keys=True))
            return
        click.echo(f"repo:    {root}\n" + _daemon_line(info))
        for f in info.get("not_indexed", []):
            click.echo(f"  not indexed: {f['path']}: {f['status'].replace('_', ' ')}"
                       + (f" ({f['error']})" if f["error"] else ""))
        return
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(f"not a directory: {path}")
    root = root.resolve()
    settings = _settings(root, index_dir=index_dir, model=model)
    if detach:
        _detach(root, client.index_dir_for(root, settings.index_dir), model, verbose, idle_seconds)
        return
    from .daemon import Daemon

    _setup_watch_logging(verbose)
    daemon = Daemon(root, settings, idle_seconds=idle_seconds)
    daemon.on_ready = lambda: click.echo(
        f"codesearch: watching {root} (pid {os.getpid()}); Ctrl-C stops", err=True)
    if daemon.run() != 0:
        raise CodesearchError(f"the watch daemon stopped after an error: {daemon.fatal}")


def _detach(root: Path, idir: Path, model: str | None, verbose: bool, idle_seconds: int) -> None:
    """Start ``codesearch watch`` in its own session and wait until it answers on its socket."""
    from . import client

    running = client.probe(idir)
    if running is not None:
        raise IndexLocked(f"a codesearch watch daemon (pid {running['pid']}) already keeps {root} up to date")
    pid = client.spawn_daemon(root, idir, model, verbose, idle_seconds)
    client.wait_for_daemon(idir, pid)
    click.echo(f"codesearch: watching {root} in the background (pid {pid}, log {idir / client.LOG_NAME})", err=True)


@cli.command()
@click.option("--log-file", type=click.Path(dir_okay=False), help="Also append the server's log to this file.")
@click.option("--debug", is_flag=True, help="Log every message (pygls' own log included).")
def lsp(log_file: str | None, debug: bool) -> None:
    """Run the language server on stdin/stdout (editors start it; see docs/lsp.md)."""
    from .lsp import serve

    serve(log_file=log_file, verbose=debug)


@cli.command()
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=str),
              help="Serve this directory (default: the client's MCP roots, else the current directory).")
@click.option("--backend", help="Serve this backend (org.db or http://host:port) instead of a local index "
              "(default: the `backend` setting; docs/scale.md).")
def mcp(root: str | None, backend: str | None) -> None:
    """Run the Model Context Protocol server on stdin/stdout (agents start it; see docs/mcp.md)."""
    from .mcp_server import serve

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="codesearch-mcp: %(message)s")
    if backend:
        from .backend_cli import _require_extra

        _require_extra()
    serve(Path(root) if root else None, backend)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning known errors into one line and an exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = sys.argv[1:] if argv is None else argv
    if not args:
        args = ["--help"]
    try:
        cli.main(args=args, prog_name="codesearch", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("codesearch: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"codesearch: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except CodesearchError as exc:
        click.echo(f"codesearch: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("\ncodesearch: interrupted; the previous index is intact, run again to finish", err=True)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
