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
from typing import Any

import click

from .config import SEARCH_MODES, Settings, load_settings
from .errors import CodesearchError, IndexMissing, UsageError
from .types import Hit

log = logging.getLogger("codesearch")


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
        rate = done / max(now - self.phase_started, 1e-6)
        if phase == "scan":
            line = f"scanning: {done} files"
        elif phase == "parse":
            line = f"parsing: {done}/{total} files"
        else:
            eta = (total - done) / rate if rate > 0 else 0
            line = f"embedding: {done}/{total} units  {rate:.1f} units/s  ETA {int(eta // 60)}m{int(eta % 60):02d}s"
        click.echo(f"\r\033[K{line}", nl=False, err=True)

    def close(self) -> None:
        if self.enabled and self.phase:
            click.echo("\r\033[K", nl=False, err=True)


def _settings(repo: Path | None, **overrides: Any) -> Settings:
    return load_settings(repo).replace(**overrides)


def _resolve_repo(repo: str | None, index_dir: str | None) -> Path:
    from .search import find_repo

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
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=str))
@click.option("--index-dir", help="Where to keep the index (default: PATH/.codesearch).")
@click.option("--model", help="Encoder model directory (default: the packaged all-MiniLM-L6-v2).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done.")
def index(path: str, index_dir: str | None, model: str | None, as_json: bool, verbose: bool) -> None:
    """Index (or update the index of) the repository at PATH."""
    from .indexer import index_repository

    _setup_logging(verbose)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(f"not a directory: {path}")
    settings = _settings(root, index_dir=index_dir, model=model)
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


def _hit_json(hit: Hit, explain: bool) -> dict[str, Any]:
    s = hit.symbol
    out: dict[str, Any] = {
        "path": s.path, "start_line": s.start_line, "end_line": s.end_line, "name": s.name,
        "qualified_name": s.qualified_name, "kind": s.kind, "language": s.language,
        "score": round(hit.score, 6), "signature": s.signature, "summary": s.summary,
    }
    if explain:
        out["explain"] = {"semantic_rank": hit.semantic_rank, "semantic_score": hit.semantic_score,
                          "lexical_rank": hit.lexical_rank, "lexical_score": hit.lexical_score}
    return out


def _print_human(hits: list[Hit], root: Path, explain: bool) -> None:
    if not hits:
        click.echo("no results", err=True)
        return
    cwd = Path.cwd()
    for hit in hits:
        s = hit.symbol
        full = root / s.path
        shown = str(full.relative_to(cwd)) if full.is_relative_to(cwd) else str(full)
        loc = click.style(f"{shown}:{s.start_line}-{s.end_line}", fg="magenta")
        name = click.style(s.qualified_name, fg="green", bold=True)
        line = f"{loc}  {name}  {hit.score:.3f}"
        if explain:
            line += (f"  [semantic #{hit.semantic_rank or '-'} "
                     f"{'' if hit.semantic_score is None else f'{hit.semantic_score:.3f}'}, "
                     f"lexical #{hit.lexical_rank or '-'} "
                     f"{'' if hit.lexical_score is None else f'{hit.lexical_score:.2f}'}]")
        click.echo(line)
        snippet = s.summary or s.signature
        if snippet:
            click.echo("    " + click.style(snippet[:160], dim=True))


@cli.command()
@click.argument("text", required=False)
@click.option("-k", "k", type=click.IntRange(1, 1000), help="Number of results (default 10).")
@click.option("--lang", "langs", multiple=True, help="Only this language (repeatable); also `lang:go` in TEXT.")
@click.option("--path", "paths", multiple=True, help="Only paths with this prefix or glob (repeatable).")
@click.option("--kind", "kinds", multiple=True, help="Only this kind: function, method, constructor, class.")
@click.option("--mode", type=click.Choice(SEARCH_MODES), help="Ranking: hybrid (default), semantic or lexical.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines output.")
@click.option("--explain", is_flag=True, help="Show each side's rank and score.")
@click.option("--repo", help="Repository root (default: nearest directory with an index).")
@click.option("--index-dir", help="Index directory (default: REPO/.codesearch).")
@click.option("--model", help="Encoder model directory (must be the one the index was built with).")
def query(text: str | None, k: int | None, langs: tuple[str, ...], paths: tuple[str, ...],
          kinds: tuple[str, ...], mode: str | None, as_json: bool, explain: bool, repo: str | None,
          index_dir: str | None, model: str | None) -> None:
    """Search for TEXT; with no TEXT, read one query per line from stdin (JSON lines out)."""
    from .index import IndexReader, find_index_dir
    from .search import Searcher

    _setup_logging(False)
    root = _resolve_repo(repo, index_dir)
    settings = _settings(root, index_dir=index_dir, model=model)
    searcher = Searcher(IndexReader(find_index_dir(root, settings.index_dir)), settings)
    try:
        if text is not None:
            hits = searcher.search(text, k=k, mode=mode, languages=langs, paths=paths, kinds=kinds)
            if as_json:
                for hit in hits:
                    click.echo(json.dumps(_hit_json(hit, explain)))
            else:
                _print_human(hits, root, explain)
            return
        if sys.stdin.isatty():
            click.echo("reading queries from stdin, one per line (Ctrl-D to end)", err=True)
        for line in sys.stdin:
            q = line.strip()
            if not q:
                continue
            try:
                hits = searcher.search(q, k=k, mode=mode, languages=langs, paths=paths, kinds=kinds)
                click.echo(json.dumps({"query": q, "results": [_hit_json(h, explain) for h in hits]}))
            except UsageError as exc:
                click.echo(json.dumps({"query": q, "error": str(exc), "results": []}))
            sys.stdout.flush()
    finally:
        searcher.close()


@cli.command()
@click.option("--repo", help="Repository root (default: nearest directory with an index).")
@click.option("--index-dir", help="Index directory (default: REPO/.codesearch).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(repo: str | None, index_dir: str | None, as_json: bool) -> None:
    """Show what is indexed: files, units per language, model, and files that were not indexed."""
    from .index import IndexReader, find_index_dir

    root = _resolve_repo(repo, index_dir)
    settings = _settings(root, index_dir=index_dir)
    reader = IndexReader(find_index_dir(root, settings.index_dir))
    try:
        info = reader.status()
    finally:
        reader.close()
    info["repo"] = str(root)
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
    for f in info["not_indexed"]:
        click.echo(f"  not indexed: {f['path']}: {f['status'].replace('_', ' ')}"
                   + (f" ({f['error']})" if f["error"] else ""))


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
