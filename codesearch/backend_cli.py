"""``codesearch index --backend URI REPO...`` and ``codesearch query --backend URI TEXT``.

The command-line side of the multi-repository backend (docs/scale.md), kept out of cli.py; the
``scale`` extra (Ray, pymilvus, Milvus Lite) is imported only here and in the modules it calls.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from .config import Settings
from .errors import UsageError


def _require_extra() -> None:
    try:
        import pymilvus  # noqa: F401
        import ray  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--backend needs the scale extra (pip install 'codesearch[scale]'): {exc}") from None


def _progress(enabled: bool) -> Any:
    """A one-line progress display on stderr (``codesearch index`` style), or None."""
    if not enabled:
        return None

    def show(phase: str, done: int, total: int) -> None:
        what = {"scan": "scanning", "parse": "parsing", "embed": "embedding", "write": "writing"}[phase]
        line = f"{what}: {done}/{total}" if total else f"{what}: {done}"
        click.echo(f"\r\033[K{line}", nl=False, err=True)

    return show


def index_backend(paths: Sequence[str], backend: str, settings: Settings, workers: int, address: str | None,
                  as_json: bool) -> None:
    """Run the batch job over ``paths`` (directories, ``NAME=PATH`` or manifest files) into ``backend``."""
    _require_extra()
    from .batch import index_repositories, read_repositories

    repos = read_repositories(paths)
    show = sys.stderr.isatty() and not as_json
    report = index_repositories(repos, backend, settings, workers=workers, address=address,
                                progress=_progress(show))
    if show:
        click.echo("\r\033[K", nl=False, err=True)
    if as_json:
        click.echo(json.dumps(report.as_json(), sort_keys=True))
        return
    skipped = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(report.skipped.items()))
    click.echo(f"indexed {report.repositories} repositories, {report.files} files, {report.units} units into "
               f"{backend} in {report.seconds:.1f}s ({report.embedded} texts embedded"
               + (f" at {report.tokens_per_second:.0f} tokens/s" if report.embedded else "")
               + f"; {report.units_added} units added, {report.units_removed} removed)"
               + (f"; not indexed: {skipped}" if skipped else ""))


def remove_backend(backend: str, names: Sequence[str], as_json: bool) -> None:
    """Delete repositories from ``backend`` (``codesearch index --backend URI --remove NAME``)."""
    _require_extra()
    from .batch import remove_repositories

    out = remove_repositories(names, backend)
    if as_json:
        click.echo(json.dumps(out, sort_keys=True))
        return
    click.echo(f"removed {out['repositories_removed']} repositories from {backend} ({out['units_removed']} units, "
               f"{out['texts_removed']} cached vectors)")


def status_backend(backend: str, settings: Settings, as_json: bool) -> None:
    """Counts and identity of ``backend``."""
    _require_extra()
    from .backend_service import open_store

    store = open_store(backend, settings)
    try:
        info = store.status()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    click.echo(f"backend: {info['backend']}\nmodel:   {info['model']} ({info['doc_text_format']})\n"
               f"units:   {info['units']} in {info['repositories']} repositories\n"
               f"vectors: {info['vectors']} cached texts"
               + (f"\nindexes: {'; '.join(info['indexes'])}" if len(info["indexes"]) > 1 else ""))


def query_backend(backend: str, text: str | None, settings: Settings, k: int | None, mode: str | None,
                  langs: Sequence[str], paths: Sequence[str], kinds: Sequence[str], as_json: bool,
                  explain: bool, suffix: str = "") -> None:
    """Search ``backend`` (one query, or one per stdin line as JSON lines); hits carry ``repo``.

    ``suffix`` is appended to every query (the ``--role``/``--exclude-role`` filters as query syntax).
    """
    _require_extra()
    from .backend_service import open_store
    from .client import hit_record
    from .search import Searcher

    searcher = Searcher(open_store(backend, settings), settings)
    try:
        def rows(q: str) -> list[dict[str, Any]]:
            hits = searcher.search(f"{q} {suffix}".strip(), k=k, mode=mode, languages=langs, paths=paths,
                                   kinds=kinds)
            return [hit_record(h, explain) for h in hits]

        if text is None:
            for line in sys.stdin:
                q = line.strip()
                if not q:
                    continue
                try:
                    click.echo(json.dumps({"query": q, "results": rows(q)}))
                except UsageError as exc:
                    click.echo(json.dumps({"query": q, "error": str(exc), "results": []}))
            return
        found = rows(text)
        if as_json:
            for row in found:
                click.echo(json.dumps(row))
            return
        if not found:
            click.echo("no results", err=True)
        for row in found:
            click.echo(f"{row['repo']}/{row['path']}:{row['start_line']}-{row['end_line']}  "
                       f"{row['qualified_name']}  {row['score']:.3f}")
    finally:
        searcher.close()
