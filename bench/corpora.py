"""Install real, documented source code for the six languages as benchmark corpora.

Usage::

    python bench/corpora.py install [--only LANG ...] [--force]
    python bench/corpora.py list
    python bench/corpora.py stats     # extract everything, count units per language

Every corpus comes from a registry this machine reaches (the interpreter's own standard library, Debian
apt, npm) and is copied, filtered to source files of its language, to ``bench/corpora/<lang>/<source>/``
(symbolic links would be skipped by the indexer's walk, so the files are real copies). The run writes
``bench/corpora/manifest.json``: one entry per source with language, package, registry, version, origin,
path and file count. Re-running is quick: a source whose specification, version and copy are unchanged is
left alone.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CORPORA = BENCH / "corpora"
MANIFEST = CORPORA / "manifest.json"

#: Source extensions per language (the same as ``parsers.registry``; repeated here so that installing
#: corpora needs nothing but the standard library).
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "go": (".go",),
    "java": (".java",),
    "javascript": (".js", ".mjs", ".cjs", ".jsx"),
    "php": (".php",),
    "python": (".py",),
    "ruby": (".rb",),
}

#: Excluded everywhere: tests, test data and minified bundles are not documented library code.
COMMON_EXCLUDE = (
    "*/test/*", "*/tests/*", "*/Tests/*", "*/testdata/*", "*_test.go", "*.min.js", "*/__pycache__/*",
)

PY_STDLIB = Path(sysconfig.get_paths()["stdlib"])
GO_SRC = "/usr/share/go-1.19/src"
JDK_SRC_ZIP = "/usr/lib/jvm/openjdk-17/lib/src.zip"
PHP_ROOT = "/usr/share/php"
RUBY_STDLIB = "/usr/lib/ruby/3.1.0"
RUBY_GEMS = "/usr/share/rubygems-integration/all/gems"

#: npm packages for the JavaScript corpus, pinned (JSDoc-rich or line-comment documented).
NPM_PACKAGES: dict[str, str] = {
    "lodash": "4.18.1",
    "ramda": "0.32.0",
    "async": "3.2.6",
    "express": "5.3.0",
    "axios": "1.21.1",
    "commander": "14.0.3",
    "node-forge": "1.4.3",
    "q": "2.0.3",
    "jquery": "4.0.0",
    "underscore": "1.13.8",
}


@dataclass(frozen=True)
class Source:
    """One corpus source: where its files come from and which of them to copy.

    Attributes:
        language: Language of the files.
        name: Directory name under ``bench/corpora/<language>/``.
        registry: ``python`` (the running interpreter), ``apt`` or ``npm``.
        package: Package that provides the files in that registry.
        root: Directory holding the files (may contain a glob, resolved to one directory), or for
            ``archive`` sources the path of the zip file.
        include: Paths under ``root`` to copy (directories recursively, or single files).
        exclude: ``fnmatch`` patterns, matched against ``/`` + the path relative to ``root``.
        archive: Whether ``root`` is a zip file whose members are read directly.
    """

    language: str
    name: str
    registry: str
    package: str
    root: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    archive: bool = False

    def fingerprint(self, version: str) -> str:
        """A hash of the specification and package version, to detect stale copies."""
        blob = json.dumps([asdict(self), version, COMMON_EXCLUDE, EXTENSIONS[self.language]], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


PY_MODULES = (
    # packages
    "asyncio", "collections", "concurrent", "email", "html", "http", "importlib", "json", "logging",
    "multiprocessing", "sqlite3", "tomllib", "unittest", "urllib", "wsgiref", "xml", "xmlrpc",
    # single-module libraries
    "argparse.py", "ast.py", "base64.py", "bisect.py", "calendar.py", "configparser.py", "contextlib.py",
    "copy.py", "csv.py", "dataclasses.py", "datetime.py", "difflib.py", "enum.py", "filecmp.py",
    "fnmatch.py", "fractions.py", "ftplib.py", "functools.py", "getopt.py", "gettext.py", "glob.py",
    "gzip.py", "hashlib.py", "heapq.py", "hmac.py", "imaplib.py", "inspect.py", "ipaddress.py",
    "locale.py", "mailbox.py", "mimetypes.py", "netrc.py", "operator.py", "optparse.py", "pathlib.py",
    "pickle.py", "pkgutil.py", "plistlib.py", "poplib.py", "pprint.py", "queue.py", "random.py",
    "sched.py", "secrets.py", "selectors.py", "shlex.py", "shutil.py", "smtplib.py", "socket.py",
    "socketserver.py", "ssl.py", "statistics.py", "string.py", "subprocess.py", "tarfile.py",
    "tempfile.py", "textwrap.py", "threading.py", "tokenize.py", "traceback.py", "typing.py", "uuid.py",
    "weakref.py", "zipfile.py", "zipimport.py", "_pydecimal.py",
)

GO_PACKAGES = (
    "archive", "bufio", "bytes", "compress", "container", "context", "crypto", "database", "encoding",
    "errors", "flag", "fmt", "go", "hash", "html", "image", "io", "log", "math", "mime", "net", "os",
    "path", "regexp", "sort", "strconv", "strings", "sync", "text", "time", "unicode",
)

JAVA_PACKAGES = (
    "java.base/java/io", "java.base/java/lang", "java.base/java/math", "java.base/java/net",
    "java.base/java/nio", "java.base/java/text", "java.base/java/time", "java.base/java/util",
    "java.logging/java/util/logging", "java.net.http/java/net/http", "java.sql/java/sql",
)

RUBY_STDLIB_PARTS = (
    "benchmark.rb", "cgi", "cgi.rb", "csv", "csv.rb", "delegate.rb", "digest", "digest.rb", "drb",
    "drb.rb", "erb", "erb.rb", "fileutils.rb", "find.rb", "forwardable", "forwardable.rb", "getoptlong.rb",
    "ipaddr.rb", "irb", "irb.rb", "json", "json.rb", "logger", "logger.rb", "monitor.rb", "net",
    "observer.rb", "open-uri.rb", "open3.rb", "optparse", "optparse.rb", "ostruct.rb", "pathname.rb",
    "pp.rb", "prettyprint.rb", "pstore.rb", "psych", "psych.rb", "rdoc", "rdoc.rb", "reline", "reline.rb",
    "resolv.rb", "rinda", "rubygems", "rubygems.rb", "securerandom.rb", "set", "set.rb", "shellwords.rb",
    "singleton.rb", "tempfile.rb", "time.rb", "timeout.rb", "tmpdir.rb", "tsort.rb", "un.rb", "uri",
    "uri.rb", "weakref.rb", "yaml", "yaml.rb",
)


def _gem(name: str, package: str) -> Source:
    return Source("ruby", name, "apt", package, f"{RUBY_GEMS}/{name}-[0-9]*", ("lib",))


def _php(name: str, package: str, *parts: str, exclude: tuple[str, ...] = ()) -> Source:
    return Source("php", name, "apt", package, PHP_ROOT, parts, exclude)


def _npm(name: str, include: tuple[str, ...], exclude: tuple[str, ...] = ()) -> Source:
    return Source("javascript", name, "npm", name, f"{CORPORA}/javascript/node_modules/{name}", include,
                  exclude)


SOURCES: tuple[Source, ...] = (
    Source("python", "stdlib", "python", "python", str(PY_STDLIB), PY_MODULES,
           ("*/idlelib/*", "*/lib2to3/*")),
    Source("go", "stdlib", "apt", "golang-src", GO_SRC, GO_PACKAGES, ("*/internal/*", "*/vendor/*")),
    Source("java", "jdk", "apt", "openjdk-17-source", JDK_SRC_ZIP, JAVA_PACKAGES, (), archive=True),
    _php("symfony-console", "php-symfony-console", "Symfony/Component/Console"),
    _php("symfony-http-foundation", "php-symfony-http-foundation", "Symfony/Component/HttpFoundation"),
    _php("symfony-string", "php-symfony-string", "Symfony/Component/String"),
    _php("guzzle", "php-guzzlehttp-guzzle", "GuzzleHttp", exclude=("/GuzzleHttp/Psr7/*",
                                                                    "/GuzzleHttp/Promise/*")),
    _php("guzzle-psr7", "php-guzzlehttp-psr7", "GuzzleHttp/Psr7"),
    _php("guzzle-promises", "php-guzzlehttp-promises", "GuzzleHttp/Promise"),
    _php("commonmark", "php-league-commonmark", "League/CommonMark"),
    _php("flysystem", "php-league-flysystem", "League/Flysystem"),
    _php("monolog", "php-monolog", "Monolog", exclude=("/Monolog/Test/*",)),
    _php("doctrine-dbal", "php-doctrine-dbal", "Doctrine/DBAL"),
    _php("twig", "php-twig", "Twig", exclude=("/Twig/Test/*",)),
    _php("php-parser", "php-parser", "PhpParser"),
    _php("phpunit", "phpunit", "PHPUnit"),
    Source("ruby", "stdlib", "apt", "libruby3.1", RUBY_STDLIB, RUBY_STDLIB_PARTS),
    _gem("rack", "ruby-rack"),
    _gem("thor", "ruby-thor"),
    _gem("i18n", "ruby-i18n"),
    _gem("addressable", "ruby-addressable"),
    _gem("kramdown", "ruby-kramdown"),
    _gem("concurrent-ruby", "ruby-concurrent"),
    _gem("tzinfo", "ruby-tzinfo"),
    _gem("activesupport", "ruby-activesupport"),
    _gem("rake", "rake"),
    _gem("webrick", "ruby-webrick"),
    _npm("lodash", (".",), ("/lodash.js", "/core.js", "/fp.js", "/fp/*")),
    _npm("ramda", ("src",)),
    _npm("async", (".",), ("/dist/*",)),
    _npm("express", ("index.js", "lib")),
    _npm("axios", ("index.js", "lib")),
    _npm("commander", ("index.js", "lib")),
    _npm("node-forge", ("lib",)),
    _npm("q", ("q.js",)),
    _npm("jquery", ("src",)),
    _npm("underscore", ("modules",)),
)

#: Debian packages the apt sources need (some sources come from dependencies of these).
APT_PACKAGES = (
    "golang-src", "openjdk-17-source", "ruby", "php-symfony-console", "php-symfony-http-foundation",
    "php-guzzlehttp-guzzle", "php-league-commonmark", "php-league-flysystem", "php-monolog",
    "php-doctrine-dbal", "php-twig", "phpunit", "ruby-rack", "ruby-thor", "ruby-i18n", "ruby-addressable",
    "ruby-kramdown", "ruby-concurrent", "ruby-tzinfo", "ruby-activesupport", "ruby-webrick", "rake",
    "php-symfony-string", "php-guzzlehttp-psr7", "php-guzzlehttp-promises", "php-parser",
)


@dataclass
class Entry:
    """A manifest entry: one installed source."""

    language: str
    source: str
    registry: str
    package: str
    version: str
    origin: str
    path: str
    files: int
    bytes: int
    fingerprint: str
    include: list[str] = field(default_factory=list)


def log(msg: str) -> None:
    """Progress goes to stderr."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- registries

def dpkg_version(package: str) -> str | None:
    """The installed version of a Debian package, or None."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}\t${Version}", package],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0 or "install ok installed" not in out.stdout:
        return None
    return out.stdout.split("\t", 1)[1].strip()


def ensure_apt(packages: tuple[str, ...]) -> None:
    """Install the missing Debian packages (runs ``apt-get update`` first, once)."""
    missing = [p for p in packages if dpkg_version(p) is None]
    if not missing:
        return
    log(f"apt: installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def npm_version(name: str) -> str | None:
    """The version of an npm package installed in the JavaScript corpus folder, or None."""
    pj = CORPORA / "javascript" / "node_modules" / name / "package.json"
    try:
        return str(json.loads(pj.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_npm() -> None:
    """``npm install`` the pinned packages into ``bench/corpora/javascript/node_modules``."""
    if all(npm_version(n) == v for n, v in NPM_PACKAGES.items()):
        return
    folder = CORPORA / "javascript"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".npmrc").write_text("omit-lockfile-registry-resolved=true\n")
    (folder / "package.json").write_text(json.dumps(
        {"name": "codesearch-bench-corpus", "private": True, "dependencies": NPM_PACKAGES}, indent=2) + "\n")
    log(f"npm: installing {len(NPM_PACKAGES)} packages")
    subprocess.run(
        ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--save-exact"],
        cwd=folder, check=True,
    )


def source_version(src: Source) -> str:
    """The version of the package that provides ``src``."""
    if src.registry == "python":
        return ".".join(str(x) for x in sys.version_info[:3])
    if src.registry == "npm":
        return npm_version(src.package) or "missing"
    return dpkg_version(src.package) or "missing"


# -------------------------------------------------------------------------------------------------- copying

def _wanted(src: Source, rel: str) -> bool:
    """Whether the file at ``rel`` (relative to the source root) belongs to the corpus."""
    if not rel.endswith(EXTENSIONS[src.language]):
        return False
    probe = "/" + rel
    return not any(fnmatch.fnmatch(probe, pat) for pat in COMMON_EXCLUDE + src.exclude)


def _resolve_root(src: Source) -> Path:
    matches = sorted(glob.glob(src.root))
    if len(matches) != 1:
        raise FileNotFoundError(f"{src.language}/{src.name}: root {src.root!r} matched {matches}")
    return Path(matches[0])


def _iter_dir_files(root: Path, include: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
    for part in include:
        base = (root / part) if part != "." else root
        if base.is_file():
            yield os.path.normpath(part), base
            continue
        if not base.is_dir():
            raise FileNotFoundError(f"missing {base}")
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "node_modules")
            for fn in sorted(filenames):
                full = Path(dirpath) / fn
                if full.is_symlink() or not full.is_file():
                    continue
                yield full.relative_to(root).as_posix(), full


def copy_source(src: Source, dest: Path) -> tuple[int, int]:
    """Copy the wanted files of ``src`` into ``dest`` (which must not exist).

    Returns:
        (number of files, number of bytes) copied.
    """
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files = size = 0
    if src.archive:
        with zipfile.ZipFile(src.root) as zf:
            prefixes = tuple(p.rstrip("/") + "/" for p in src.include)
            for info in zf.infolist():
                if info.is_dir() or not info.filename.startswith(prefixes):
                    continue
                if not _wanted(src, info.filename):
                    continue
                out = tmp / info.filename
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(zf.read(info))
                files += 1
                size += info.file_size
    else:
        root = _resolve_root(src)
        for rel, full in _iter_dir_files(root, src.include):
            if not _wanted(src, rel):
                continue
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(full, out)
            files += 1
            size += full.stat().st_size
    tmp.rename(dest)
    return files, size


def load_manifest() -> dict[str, Entry]:
    """The manifest as ``{"<language>/<source>": Entry}`` (empty if not installed)."""
    try:
        raw = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}
    return {f"{e['language']}/{e['source']}": Entry(**e) for e in raw.get("sources", [])}


def write_manifest(entries: dict[str, Entry]) -> None:
    """Write ``bench/corpora/manifest.json`` sorted by language and source."""
    rows = [asdict(entries[k]) for k in sorted(entries)]
    MANIFEST.write_text(json.dumps({"sources": rows}, indent=2) + "\n")


def install(only: tuple[str, ...] = (), force: bool = False) -> dict[str, Entry]:
    """Install every source (or those of the languages in ``only``) and update the manifest.

    Args:
        only: Languages to install; empty means all.
        force: Re-copy even sources whose copy is up to date.

    Returns:
        The manifest entries after installation.
    """
    chosen = [s for s in SOURCES if not only or s.language in only]
    if any(s.registry == "apt" for s in chosen):
        ensure_apt(APT_PACKAGES)
    if any(s.registry == "npm" for s in chosen):
        ensure_npm()
    entries = load_manifest()
    for src in chosen:
        key = f"{src.language}/{src.name}"
        version = source_version(src)
        fp = src.fingerprint(version)
        dest = CORPORA / src.language / src.name
        old = entries.get(key)
        if not force and old is not None and old.fingerprint == fp and dest.is_dir():
            continue
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        files, size = copy_source(src, dest)
        origin = src.root if src.archive else str(_resolve_root(src))
        entries[key] = Entry(src.language, src.name, src.registry, src.package, version, origin,
                             dest.relative_to(CORPORA).as_posix(), files, size, fp, list(src.include))
        log(f"{key}: {files} files, {size / 1e6:.1f} MB ({src.package} {version})")
        write_manifest(entries)
    write_manifest(entries)
    return entries


def print_table(entries: dict[str, Entry]) -> None:
    """Markdown table of the installed sources, with per-language totals."""
    print("| language | source | package | version | files | MB |")
    print("|---|---|---|---|---:|---:|")
    totals: dict[str, list[int]] = {}
    for key in sorted(entries):
        e = entries[key]
        print(f"| {e.language} | {e.source} | {e.package} ({e.registry}) | {e.version} | {e.files} "
              f"| {e.bytes / 1e6:.1f} |")
        t = totals.setdefault(e.language, [0, 0])
        t[0] += e.files
        t[1] += e.bytes
    for lang, (files, size) in sorted(totals.items()):
        print(f"| **{lang}** | all | | | **{files}** | **{size / 1e6:.1f}** |")


def corpus_sources(language: str) -> list[Entry]:
    """The installed sources of one language, from the manifest."""
    return [e for e in load_manifest().values() if e.language == language]


def unit_stats(entries: dict[str, Entry]) -> dict[str, dict[str, int]]:
    """Extract every installed file with ``parsers`` and count units per source.

    Returns:
        ``{"<language>/<source>": {"files", "units", "documented", "documented_functions"}}`` where
        documented functions are functions and methods with a non-empty docstring summary.
    """
    from parsers import extract, language_for_path

    out: dict[str, dict[str, int]] = {}
    for key in sorted(entries):
        e = entries[key]
        row = {"files": 0, "units": 0, "documented": 0, "documented_functions": 0, "unparsable": 0}
        for dirpath, _, filenames in os.walk(CORPORA / e.path):
            for fn in filenames:
                if language_for_path(fn) != e.language:
                    continue
                row["files"] += 1
                try:
                    syms = extract((Path(dirpath) / fn).read_bytes(), e.language, fn)
                except Exception:  # counted, not fatal
                    row["unparsable"] += 1
                    continue
                row["units"] += len(syms)
                row["documented"] += sum(1 for s in syms if s.docstring.strip())
                row["documented_functions"] += sum(
                    1 for s in syms if s.summary.strip() and s.kind in ("function", "method"))
        out[key] = row
        log(f"{key}: {row}")
    return out


def print_stats(stats: dict[str, dict[str, int]]) -> None:
    """Markdown table of unit counts per language."""
    totals: dict[str, dict[str, int]] = {}
    for key, row in stats.items():
        t = totals.setdefault(key.split("/", 1)[0], dict.fromkeys(row, 0))
        for k, v in row.items():
            t[k] += v
    print("| language | files | units | documented units | documented functions/methods |")
    print("|---|---:|---:|---:|---:|")
    for lang, t in sorted(totals.items()):
        print(f"| {lang} | {t['files']} | {t['units']} | {t['documented']} | {t['documented_functions']} |")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_inst = sub.add_parser("install", help="install and copy the corpora, write the manifest")
    p_inst.add_argument("--only", nargs="*", default=[], choices=sorted(EXTENSIONS),
                        help="languages to install (default: all)")
    p_inst.add_argument("--force", action="store_true", help="re-copy sources that are up to date")
    sub.add_parser("list", help="print the installed corpora as a markdown table")
    sub.add_parser("stats", help="extract every file and count units per language (needs parsers)")
    args = ap.parse_args(argv)
    if args.cmd == "install":
        print_table(install(tuple(args.only), args.force))
        return 0
    entries = load_manifest()
    if not entries:
        log("no corpora installed: run `python bench/corpora.py install`")
        return 1
    if args.cmd == "list":
        print_table(entries)
    else:
        stats = unit_stats(entries)
        (CORPORA / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        print_stats(stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
