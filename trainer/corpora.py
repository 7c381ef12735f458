"""The training corpora: reuse ``bench/corpora.py`` (installer and manifest) and hold out the benchmark.

``bench/corpora.py`` installs documented code for all six languages from the registries these machines
reach (the interpreter's standard library, Debian apt, npm) into ``bench/corpora/<lang>/<source>/`` and
records name, registry, version and origin of each source in ``bench/corpora/manifest.json``. The trainer
does not duplicate it: ``install`` calls it, ``sources`` reads its manifest.

Training-only sources. The benchmark hold-out takes about 3,000 units per language from those corpora,
which is most of the JavaScript one, so the trainer adds sources of its own that the benchmark never
uses (``EXTRA_NPM``, ``EXTRA_APT_GO``, ``EXTRA_APT_PHP``, ``EXTRA_APT_RUBY``, ``EXTRA_PYTHON``: more
npm packages, Go modules, PHP, Ruby and Python libraries from the same
registries), installed with the same copying code into ``trainer/runs/corpora/`` with their own
manifest (registry, package, version, files).

The repository-level quality benchmark (``bench/quality.py``) builds its test repositories from seeded
directories of the same corpora. ``benchmark_holdout`` recomputes that selection with the benchmark's
own code (and adds any ``bench/out/quality/<lang>/selection.json`` already on disk), so that mining can
put those packages in the test split and no trained-on function appears in the benchmark.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

from .data import CorpusSource, package_group

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH = REPO_ROOT / "bench"
LANGUAGES = ("python", "go", "java", "javascript", "php", "ruby")
#: Where the training-only sources go (git-ignored).
EXTRA_ROOT = Path(__file__).resolve().parent / "runs" / "corpora"
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
GOCODE = "/usr/share/gocode/src"
PHP_ROOT = "/usr/share/php"
RUBY_GEMS = "/usr/share/rubygems-integration/all/gems"

#: npm packages (pinned) with JSDoc-documented sources; none is in bench/corpora.py.
EXTRA_NPM: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # name: (version, include, exclude)
    "mongoose": ("9.12.1", ("lib",), ()),
    "sequelize": ("6.37.8", ("lib",), ()),
    "luxon": ("3.7.2", ("src",), ()),
    "rxjs": ("7.8.2", ("dist/cjs",), ()),
    "graphql": ("17.1.0", (".",), ("*.mjs",)),
    "ws": ("8.23.0", ("lib",), ()),
    "jszip": ("3.10.2", ("lib",), ()),
    "knex": ("3.3.0", ("lib",), ()),
    "eslint": ("10.15.0", ("lib",), ()),
    "date-fns": ("4.4.0", (".",), ("*.cjs", "/locale/*", "/fp/*", "/docs/*")),
    "cheerio": ("1.2.0", ("dist/commonjs",), ()),
    "yargs": ("18.2.0", ("lib", "index.mjs"), ()),
    "handlebars": ("4.7.10", ("lib",), ()),
}
#: Debian packages of Go modules, PHP and Ruby libraries (sources installed under /usr/share).
EXTRA_APT_GO = {
    "cobra": ("golang-github-spf13-cobra-dev", "github.com/spf13/cobra"),
    "x-net": ("golang-golang-x-net-dev", "golang.org/x/net"),
    "x-text": ("golang-golang-x-text-dev", "golang.org/x/text"),
    "logrus": ("golang-github-sirupsen-logrus-dev", "github.com/sirupsen/logrus"),
    "yaml-v3": ("golang-gopkg-yaml.v3-dev", "gopkg.in/yaml.v3"),
    "prometheus-client": ("golang-github-prometheus-client-golang-dev", "github.com/prometheus/client_golang"),
    "gorilla-mux": ("golang-github-gorilla-mux-dev", "github.com/gorilla/mux"),
    "go-cmp": ("golang-github-google-go-cmp-dev", "github.com/google/go-cmp"),
}
EXTRA_APT_PHP = {
    "symfony-yaml": ("php-symfony-yaml", "Symfony/Component/Yaml"),
    "symfony-finder": ("php-symfony-finder", "Symfony/Component/Finder"),
    "symfony-process": ("php-symfony-process", "Symfony/Component/Process"),
    "symfony-routing": ("php-symfony-routing", "Symfony/Component/Routing"),
    "symfony-validator": ("php-symfony-validator", "Symfony/Component/Validator"),
    "symfony-serializer": ("php-symfony-serializer", "Symfony/Component/Serializer"),
    "symfony-dependency-injection": ("php-symfony-dependency-injection", "Symfony/Component/DependencyInjection"),
    "symfony-cache": ("php-symfony-cache", "Symfony/Component/Cache"),
    "fast-route": ("php-nikic-fast-route", "FastRoute"),
}
EXTRA_APT_RUBY = {  # name: (package, root, include)
    "sequel": ("ruby-sequel", "/usr/lib/ruby/vendor_ruby", ("sequel", "sequel.rb")),
    "activerecord": ("ruby-activerecord", f"{RUBY_GEMS}/activerecord-[0-9]*", ("lib",)),
    "actionpack": ("ruby-actionpack", f"{RUBY_GEMS}/actionpack-[0-9]*", ("lib",)),
    "activemodel": ("ruby-activemodel", f"{RUBY_GEMS}/activemodel-[0-9]*", ("lib",)),
    "faraday": ("ruby-faraday", f"{RUBY_GEMS}/faraday-[0-9]*", ("lib",)),
    "rouge": ("ruby-rouge", f"{RUBY_GEMS}/rouge-[0-9]*", ("lib",)),
    "mustermann": ("ruby-mustermann", f"{RUBY_GEMS}/mustermann-[0-9]*", ("lib",)),
    "sinatra": ("ruby-sinatra", f"{RUBY_GEMS}/sinatra-[0-9]*", ("lib",)),
}
#: Python distributions already in the project's environment (dependencies of torch, transformers,
#: sentence-transformers and the dev tools), read from site-packages: (distribution, module directory).
EXTRA_PYTHON = {
    "networkx": ("networkx", "networkx"), "sympy": ("sympy", "sympy"), "jinja2": ("jinja2", "jinja2"),
    "click": ("click", "click"), "scipy": ("scipy", "scipy"), "sklearn": ("scikit-learn", "sklearn"),
    "fsspec": ("fsspec", "fsspec"), "huggingface-hub": ("huggingface_hub", "huggingface_hub"),
    "hypothesis": ("hypothesis", "hypothesis"), "attrs": ("attrs", "attr"), "cattrs": ("cattrs", "cattrs"),
}

#: The quality benchmark's defaults (``bench/quality.py --max-units 3000 --seed 0``).
BENCH_MAX_UNITS = 3000
BENCH_SEED = 0


def bench_module(name: str) -> ModuleType:
    """Import ``bench/<name>.py`` of this checkout (the bench scripts import each other by bare name)."""
    if not (BENCH / f"{name}.py").is_file():
        raise FileNotFoundError(f"bench/{name}.py not found: the trainer runs from a checkout of the project")
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def install(only: tuple[str, ...] = (), force: bool = False) -> dict[str, Any]:
    """Install the corpora with ``bench/corpora.py`` (idempotent: unchanged sources are left alone).

    Args:
        only: Languages to install (empty: all six).
        force: Re-copy sources that are up to date.

    Returns:
        The corpora manifest (``bench/corpora/manifest.json``).
    """
    corpora = bench_module("corpora")
    corpora.install(tuple(only), force)
    return corpora_manifest()


def install_all(only: tuple[str, ...] = (), force: bool = False, extra: bool = True) -> dict[str, Any]:
    """The benchmark corpora (``bench/corpora.py``) and, unless ``extra`` is False, the training-only ones."""
    manifest = {"bench": install(only, force)}
    if extra:
        manifest["extra"] = install_extra(only, force)
    return manifest


def extra_sources_spec() -> list[tuple[Any, str]]:
    """The training-only sources as ``bench/corpora.py`` ``Source`` records, with their version getter key."""
    corpora = bench_module("corpora")
    Source = corpora.Source
    out: list[tuple[Any, str]] = []
    for name, (_, include, exclude) in EXTRA_NPM.items():
        out.append((Source("javascript", name, "npm", name, str(EXTRA_ROOT / "javascript" / "node_modules" / name),
                           include, exclude), "npm"))
    for name, (package, path) in EXTRA_APT_GO.items():
        out.append((Source("go", name, "apt", package, f"{GOCODE}/{path}", (".",),
                           ("*/internal/*", "*/vendor/*", "*/testdata/*")), "apt"))
    for name, (package, path) in EXTRA_APT_PHP.items():
        out.append((Source("php", name, "apt", package, PHP_ROOT, (path,), ("*/Tests/*",)), "apt"))
    for name, (package, root, include) in EXTRA_APT_RUBY.items():
        out.append((Source("ruby", name, "apt", package, root, include), "apt"))
    for name, (dist, module) in EXTRA_PYTHON.items():
        out.append((Source("python", name, "pypi", dist, str(SITE_PACKAGES / module), (".",),
                           ("*/tests/*", "*/testing/*", "*/_vendor/*", "*/externals/*")), "pypi"))
    return out


def _extra_version(src: Any, registry: str) -> str | None:
    corpora = bench_module("corpora")
    if registry == "apt":
        return corpora.dpkg_version(src.package)
    if registry == "pypi":
        try:
            return importlib.metadata.version(src.package)
        except importlib.metadata.PackageNotFoundError:
            return None
    pj = Path(src.root) / "package.json"
    try:
        return str(json.loads(pj.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def _ensure_npm_extra() -> None:
    ensure_npm_folder(EXTRA_ROOT / "javascript", {name: version for name, (version, _, _) in EXTRA_NPM.items()},
                      "codesearch-trainer-corpus")


def ensure_npm_folder(folder: Path, want: dict[str, str], project: str, extra_args: tuple[str, ...] = ()) -> None:
    """``npm install`` the pinned packages ``want`` into ``folder`` unless they are all there already."""
    have = {}
    for name in want:
        try:
            have[name] = json.loads((folder / "node_modules" / name / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            pass
    if have == want:
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".npmrc").write_text("omit-lockfile-registry-resolved=true\n")
    (folder / "package.json").write_text(json.dumps(
        {"name": project, "private": True, "dependencies": want}, indent=2) + "\n")
    log.info("npm: installing %d packages into %s", len(want), folder)
    subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--save-exact", *extra_args],
                   cwd=folder, check=True)


def install_extra(only: tuple[str, ...] = (), force: bool = False) -> dict[str, Any]:
    """Install and copy the training-only sources into ``trainer/runs/corpora`` (idempotent).

    A source whose package cannot be installed is logged and left out (and absent from the manifest).

    Args:
        only: Languages (empty: all).
        force: Re-copy sources that are up to date.

    Returns:
        The extra corpora manifest.
    """
    corpora = bench_module("corpora")
    chosen = [(s, r) for s, r in extra_sources_spec() if not only or s.language in only]
    apt = tuple(sorted({s.package for s, r in chosen if r == "apt"}))
    if apt:
        try:
            corpora.ensure_apt(apt)
        except subprocess.CalledProcessError as exc:
            log.warning("apt install failed (%s): installing what exists", exc)
    if any(s.language == "javascript" for s, _ in chosen):
        _ensure_npm_extra()
    manifest_path = EXTRA_ROOT / "manifest.json"
    old = {f"{e['language']}/{e['source']}": e for e in _read_manifest(manifest_path)}
    entries = dict(old)
    for src, registry in chosen:
        key = f"{src.language}/{src.name}"
        version = _extra_version(src, registry)
        if version is None:
            log.warning("%s: package %s is not installed; skipped", key, src.package)
            entries.pop(key, None)
            continue
        fp = src.fingerprint(version)
        dest = EXTRA_ROOT / src.language / src.name
        if not force and key in old and old[key]["fingerprint"] == fp and dest.is_dir():
            continue
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            files, size = corpora.copy_source(src, dest)
        except FileNotFoundError as exc:
            log.warning("%s: %s; skipped", key, exc)
            entries.pop(key, None)
            continue
        entries[key] = {"language": src.language, "source": src.name, "registry": registry,
                        "package": src.package, "version": version, "origin": src.root,
                        "path": dest.relative_to(EXTRA_ROOT).as_posix(), "files": files, "bytes": size,
                        "fingerprint": fp, "include": list(src.include), "spec": asdict(src)}
        log.info("%s: %d files (%s %s)", key, files, src.package, version)
    EXTRA_ROOT.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps({"sources": [entries[k] for k in sorted(entries)]}, indent=2) + "\n")
    return {"sources": [entries[k] for k in sorted(entries)]}


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("sources", []))


def extra_manifest() -> dict[str, Any]:
    """``trainer/runs/corpora/manifest.json`` (empty sources if nothing is installed)."""
    return {"sources": _read_manifest(EXTRA_ROOT / "manifest.json")}


def corpora_manifest() -> dict[str, Any]:
    """``bench/corpora/manifest.json`` (empty sources if nothing is installed)."""
    path = BENCH / "corpora" / "manifest.json"
    if not path.is_file():
        return {"sources": []}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def sources(languages: tuple[str, ...] = LANGUAGES, extra: bool = True, more: bool = True) -> list[CorpusSource]:
    """The installed corpus sources of the given languages: the benchmark corpora, then the extra ones.

    An extra source with the name of a benchmark source is renamed ``<name>-extra`` (never merged).
    ``more=False`` leaves out the sources of ``trainer/more_sources.py`` (manifest entries marked ``more``).
    """
    out = []
    for e in corpora_manifest().get("sources", []):
        if e["language"] in languages:
            out.append(CorpusSource(language=e["language"], source=e["source"],
                                    root=BENCH / "corpora" / e["path"], registry=e["registry"],
                                    package=e["package"], version=e["version"]))
    taken = {(s.language, s.source) for s in out}
    for e in extra_manifest()["sources"] if extra else []:
        if e["language"] in languages and (more or not e.get("more")):
            name = e["source"] if (e["language"], e["source"]) not in taken else e["source"] + "-extra"
            out.append(CorpusSource(language=e["language"], source=name, root=EXTRA_ROOT / e["path"],
                                    registry=e["registry"], package=e["package"], version=e["version"]))
    return sorted(out, key=lambda s: (s.language, s.source))


def benchmark_holdout(languages: tuple[str, ...] = LANGUAGES, max_units: int = BENCH_MAX_UNITS,
                      seed: int = BENCH_SEED) -> tuple[set[str], dict[str, Any]]:
    """The package groups the repository benchmark draws from.

    Args:
        languages: Languages to compute.
        max_units: The benchmark's ``--max-units``.
        seed: The benchmark's ``--seed``.

    Returns:
        (package groups as ``data.package_group`` names them, a record for the data manifest).
    """
    quality = bench_module("quality")
    groups: set[str] = set()
    record: dict[str, Any] = {"max_units": max_units, "seed": seed, "languages": {}}
    for lang in languages:
        files: set[str] = set()
        try:
            chosen = quality.select_files(lang, quality.corpus_files(lang), quality.Extractor(lang), max_units, seed)
            files.update(c.rel for c in chosen)
        except SystemExit as exc:  # no corpus of that language
            log.warning("benchmark hold-out for %s: %s", lang, exc)
        on_disk = BENCH / "out" / "quality" / lang / "selection.json"
        extra = 0
        if on_disk.is_file():
            sel = json.loads(on_disk.read_text(encoding="utf-8"))
            before = len(files)
            files.update(sel.get("files", []))
            extra = len(files) - before
        lang_groups = set()
        for rel in files:
            source, _, path = rel.partition("/")
            lang_groups.add(package_group(lang, source, path))
        groups |= lang_groups
        digest = hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:16]
        record["languages"][lang] = {"files": len(files), "groups": len(lang_groups),
                                     "from_selection_json": extra, "files_sha256": digest}
    return groups, record


def benchmark_files(lang: str) -> set[str]:
    """``<source>/<path>`` of the files in the benchmark repository prepared on disk (empty if none)."""
    path = BENCH / "out" / "quality" / lang / "selection.json"
    if not path.is_file():
        return set()
    return set(json.loads(path.read_text(encoding="utf-8")).get("files", []))
