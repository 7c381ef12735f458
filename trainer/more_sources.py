"""More training corpora (issue 14, item 2): hundreds of packages per language from the registries here.

``trainer/corpora.py`` names its training-only sources one by one. This module adds sources by the
hundred, listed in ``trainer/more_sources.json`` (pinned: Debian package names, whose versions the
Debian snapshot fixes and the manifest records; npm and PyPI names with versions). They are copied into
``trainer/runs/corpora/<language>/<name>/`` and recorded in the same manifest as the other training-only
sources, so ``corpora.sources()`` and ``mine`` read them like any other source.

Kinds of sources:

* ``deb``: a Debian package's own files (``dpkg -L``) of the language, under its base directory
  (``/usr/share/gocode/src`` for Go, ``/usr/share/php`` for PHP, ``/usr/share/rubygems-integration`` or
  ``/usr/lib/ruby/vendor_ruby`` for Ruby), copied relative to their common directory. Packages are
  installed in chunks; a chunk apt refuses is halved until the packages it refuses are alone, and those
  are logged and left out.
* ``npm``: pinned packages installed with ``npm install --ignore-scripts`` into one folder; each
  package's own ``.js`` files except bundles (``dist/``, ``umd/``, ``*.min.js``, nested ``node_modules``).
* ``pypi``: pinned wheels fetched with ``pip download --no-deps --only-binary`` (nothing is built or
  imported) and unpacked; their ``.py`` files except vendored copies.
* ``rest``: the parts of the standard libraries (Go, Java, Python, Ruby) that ``bench/corpora.py`` does
  not take for the benchmark.

Nothing here can leak benchmark code into training: a file under any benchmark source's directory is
never copied, benchmark package names are refused by :func:`check_lists`, and ``data.dedupe`` keeps the
test-split copy of any duplicate cluster, so a vendored copy of benchmark code is dropped.

``python -m trainer.more_sources select`` rewrites the Debian lists by the rule in :func:`select_debian`
(the lists are committed; the rule documents how they were chosen).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import corpora as C

log = logging.getLogger(__name__)

LISTS = Path(__file__).resolve().parent / "more_sources.json"
#: Where each language's Debian packages put their sources.
DEB_BASES = {
    "go": ("/usr/share/gocode/src",),
    "php": ("/usr/share/php",),
    "ruby": ("/usr/share/rubygems-integration/all/gems", "/usr/lib/ruby/vendor_ruby"),
}
#: Excluded everywhere (matched against ``/`` + the path relative to the copied root).
EXCLUDE = ("*/vendor/*", "*/testdata/*", "*/node_modules/*", "*/_vendor/*", "*/vendored/*",
           "*/fixtures/*", "*/examples/*", "*/example/*")
NPM_EXCLUDE = ("/dist/*", "*/umd/*", "*.min.js", "*.bundle.js", "/bundle/*", "/build/*")
APT_CHUNK = 150
#: The selection rule's bounds on a Debian package's Installed-Size (KiB): small packages hold a few
#: functions, the largest are generated API clients (cloud SDKs, protobuf bindings).
MIN_KIB, MAX_KIB = 40, 10_000


@dataclass
class MoreSource:
    """One source of this module: where its files come from once its package is installed."""

    language: str
    name: str
    registry: str  # apt | npm | pypi
    package: str
    version: str = ""
    kind: str = "deb"  # deb | npm | pypi | rest
    #: For ``rest`` sources: a bench Source-like spec (root, include, exclude, archive).
    spec: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- the lists

def load_lists(path: Path = LISTS) -> dict[str, Any]:
    """The committed lists (``{"deb": {lang: [package]}, "npm": {name: version}, "pypi": {dist: version}}``)."""
    return dict(json.loads(path.read_text(encoding="utf-8")))


def benchmark_packages() -> set[str]:
    """Package names the benchmark corpora and the older training-only tables use (never listed here)."""
    corpora = C.bench_module("corpora")
    names = {s.package for s in corpora.SOURCES} | set(corpora.APT_PACKAGES)
    names |= {p for p, _ in C.EXTRA_APT_GO.values()} | {p for p, _ in C.EXTRA_APT_PHP.values()}
    names |= {p for p, _, _ in C.EXTRA_APT_RUBY.values()} | set(C.EXTRA_NPM)
    names |= {d for d, _ in C.EXTRA_PYTHON.values()}
    return names


def check_lists(lists: dict[str, Any]) -> list[str]:
    """Problems with the lists: a benchmark or older source listed again, or a name listed twice."""
    taken = benchmark_packages()
    bench_npm = {s.package for s in C.bench_module("corpora").SOURCES if s.registry == "npm"}
    problems = []
    seen: set[tuple[str, str]] = set()
    names = [("deb", p) for pkgs in lists.get("deb", {}).values() for p in pkgs]
    names += [("npm", n) for n in lists.get("npm", {})] + [("pypi", n) for n in lists.get("pypi", {})]
    for registry, name in names:
        if name in taken:
            problems.append(f"{name}: already a benchmark or training source")
        if registry == "npm" and any(name.startswith((b + ".", b + "-")) for b in bench_npm):
            problems.append(f"{name}: a variant of the benchmark's npm package")
        if (registry, name) in seen:
            problems.append(f"{name}: listed twice")
        seen.add((registry, name))
    return problems


def select_debian(language: str) -> list[str]:
    """The rule behind the Debian lists: source packages of the language, sized ``MIN_KIB..MAX_KIB``.

    Go: ``golang-*-dev``; PHP: ``php-*`` and Ruby: ``ruby-*`` of architecture ``all`` (pure source,
    no compiled extension); packages the benchmark or the older tables use are left out.
    """
    prefix = {"go": "golang-", "php": "php-", "ruby": "ruby-"}[language]
    names = subprocess.run(["apt-cache", "pkgnames", prefix], capture_output=True, text=True,
                           check=True).stdout.split()
    if language == "go":
        names = [n for n in names if n.endswith("-dev")]
    show = subprocess.run(["apt-cache", "show", "--no-all-versions", *sorted(names)], capture_output=True,
                          text=True, check=False).stdout
    taken = benchmark_packages()
    out = []
    for block in show.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " ")
        name = fields.get("Package")
        if not name or name in taken:
            continue
        if language != "go" and fields.get("Architecture") != "all":
            continue
        if "transitional" in fields.get("Description", "").lower():
            continue
        kib = int(fields.get("Installed-Size", "0") or 0)
        if MIN_KIB <= kib <= MAX_KIB:
            out.append(name)
    return sorted(set(out))


# ---------------------------------------------------------------------------------------- the sources

def rest_sources() -> list[MoreSource]:
    """The standard libraries' parts that the benchmark corpora leave out (Go, Java, Python, Ruby)."""
    corpora = C.bench_module("corpora")
    out = []
    jdk = Path(corpora.JDK_SRC_ZIP)
    if jdk.is_file():
        with zipfile.ZipFile(jdk) as zf:
            modules = sorted({n.split("/", 1)[0] for n in zf.namelist() if "/" in n})
        out.append(MoreSource("java", "jdk-rest", "apt", "openjdk-17-source", kind="rest", spec={
            "root": str(jdk), "archive": True, "include": modules,
            "exclude": [f"/{p}/*" for p in corpora.JAVA_PACKAGES]}))
    go_src = Path(corpora.GO_SRC)
    if go_src.is_dir():
        parts = sorted(p.name for p in go_src.iterdir() if p.is_dir() and p.name not in corpora.GO_PACKAGES
                       and p.name not in ("internal", "vendor", "testdata"))
        out.append(MoreSource("go", "stdlib-rest", "apt", "golang-src", kind="rest", spec={
            "root": str(go_src), "include": parts, "exclude": ["*/internal/*"]}))
    py = Path(corpora.PY_STDLIB)
    taken = set(corpora.PY_MODULES)
    parts = sorted(p.name for p in py.iterdir() if p.name not in taken and not p.name.startswith("_")
                   and (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file()))
                   and p.name not in ("idlelib", "lib2to3", "test", "tkinter", "turtledemo", "ensurepip",
                                      "site-packages"))
    out.append(MoreSource("python", "stdlib-rest", "python", "python", kind="rest", spec={
        "root": str(py), "include": parts, "exclude": []}))
    rb = Path(corpora.RUBY_STDLIB)
    if rb.is_dir():
        taken = set(corpora.RUBY_STDLIB_PARTS)
        parts = sorted(p.name for p in rb.iterdir() if p.name not in taken
                       and (p.suffix == ".rb" or p.is_dir()) and p.name != "x86_64-linux-gnu")
        out.append(MoreSource("ruby", "stdlib-rest", "apt", "libruby3.1", kind="rest", spec={
            "root": str(rb), "include": parts, "exclude": []}))
    return out


def all_sources(lists: dict[str, Any] | None = None) -> list[MoreSource]:
    """Every source of this module, from the committed lists and the standard libraries."""
    lists = load_lists() if lists is None else lists
    out = []
    for lang, packages in sorted(lists.get("deb", {}).items()):
        for pkg in packages:
            out.append(MoreSource(lang, "deb-" + pkg, "apt", pkg))
    for name, version in sorted(lists.get("npm", {}).items()):
        out.append(MoreSource("javascript", "npm-" + name.replace("/", "__").lstrip("@"), "npm", name,
                              version, kind="npm"))
    for dist, version in sorted(lists.get("pypi", {}).items()):
        out.append(MoreSource("python", "pypi-" + dist, "pypi", dist, version, kind="pypi"))
    return out


# ------------------------------------------------------------------------------------------- installing

def _apt_install(packages: list[str]) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                          env=env, capture_output=True, text=True, check=False)
    return done.returncode == 0


def installed_debian() -> dict[str, str]:
    """{package: version} of every installed Debian package (one ``dpkg-query`` call for thousands)."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Status}\t${Version}\n"],
                         capture_output=True, text=True, check=False).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, _, rest = line.partition("\t")
        status, _, version = rest.partition("\t")
        if "install ok installed" in status:
            found[name] = version.strip()
    return found


def ensure_apt_many(packages: list[str], chunk: int = APT_CHUNK) -> list[str]:
    """Install the missing packages in chunks; a refused chunk is halved and retried. Returns the failures."""
    have = installed_debian()
    missing = [p for p in packages if p not in have]
    if not missing:
        return []
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    failed: list[str] = []

    def install(part: list[str]) -> None:  # a refused set is halved until the refused packages are alone
        if _apt_install(part):
            return
        if len(part) == 1:
            failed.append(part[0])
            return
        install(part[:len(part) // 2])
        install(part[len(part) // 2:])

    for i in range(0, len(missing), chunk):
        part = missing[i:i + chunk]
        log.info("apt: installing %d packages (%d/%d)", len(part), min(i + chunk, len(missing)), len(missing))
        install(part)
    if failed:
        log.warning("apt refused %d packages: %s", len(failed), " ".join(failed))
    return failed


def _npm_folder() -> Path:
    return C.EXTRA_ROOT / "javascript-more"


def ensure_npm(packages: dict[str, str]) -> None:
    """``npm install`` the pinned packages into ``trainer/runs/corpora/javascript-more`` (if not there)."""
    C.ensure_npm_folder(_npm_folder(), packages, "codesearch-trainer-more", ("--legacy-peer-deps",))


def _wheel_dir() -> Path:
    return C.EXTRA_ROOT / "python-wheels"


def ensure_wheels(packages: dict[str, str]) -> dict[str, Path]:
    """Fetch each pinned wheel (no dependencies, nothing built) and unpack it. Returns dist -> directory."""
    wheels = _wheel_dir()
    out = {}
    for dist, version in sorted(packages.items()):
        dest = wheels / "unpacked" / f"{dist}-{version}"
        if not dest.is_dir():
            dl = wheels / "download" / f"{dist}-{version}"
            dl.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                   "--only-binary=:all:", "-d", str(dl), f"{dist}=={version}"],
                                  capture_output=True, text=True, check=False)
            got = sorted(dl.glob("*.whl"))
            if done.returncode != 0 or not got:
                log.warning("pypi: %s==%s: no wheel (%s); skipped", dist, version,
                            (done.stderr.strip().splitlines() or ["?"])[-1])
                continue
            tmp = dest.with_name(dest.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            with zipfile.ZipFile(got[0]) as zf:
                for info in zf.infolist():
                    if info.filename.endswith(".py") and ".dist-info/" not in info.filename:
                        zf.extract(info, tmp)
            tmp.mkdir(parents=True, exist_ok=True)
            tmp.rename(dest)
        out[dist] = dest
    return out


# -------------------------------------------------------------------------------------------- copying

def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    probe = "/" + rel
    return any(fnmatch.fnmatch(probe, pat) for pat in patterns)


def bench_roots() -> list[Path]:
    """The directories the benchmark corpora copy from (a file under one of them is never taken)."""
    corpora = C.bench_module("corpora")
    out = []
    for src in corpora.SOURCES:
        if src.archive:
            continue
        try:
            root = corpora._resolve_root(src)
        except FileNotFoundError:
            continue
        out.extend(((root / p) if p != "." else root).resolve() for p in src.include)
    return out


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def deb_files(package: str, language: str) -> list[Path]:
    """The package's own source files of the language under the language's Debian base directories."""
    listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False).stdout
    bases = DEB_BASES[language]
    exts = C.bench_module("corpora").EXTENSIONS[language]
    out = []
    for line in listed.splitlines():
        if line.endswith(exts) and line.startswith(bases):
            p = Path(line)
            if p.is_file() and not p.is_symlink():
                out.append(p)
    return sorted(out)


def _copy_files(files: list[tuple[str, Path]], dest: Path) -> tuple[int, int]:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = size = 0
    for rel, full in files:
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(full, out)
        n += 1
        size += full.stat().st_size
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return n, size


def source_files(src: MoreSource, forbidden: list[Path], wheel_dirs: dict[str, Path]) -> tuple[Path, list]:
    """(origin directory, [(path relative to it, file)]) for one source; empty when nothing is there."""
    corpora = C.bench_module("corpora")
    exts = corpora.EXTENSIONS[src.language]
    common = tuple(corpora.COMMON_EXCLUDE) + EXCLUDE
    if src.kind == "deb":
        files = [f for f in deb_files(src.package, src.language) if not _under(f.resolve(), forbidden)]
        if not files:
            return Path("/"), []
        root = Path(os.path.commonpath([str(f.parent) for f in files]))
        rels = [(f.relative_to(root).as_posix(), f) for f in files]
        return root, [(r, f) for r, f in rels if not _excluded(r, common)]
    if src.kind in ("npm", "pypi"):
        if src.kind == "npm":
            root = _npm_folder() / "node_modules" / src.package
            patterns = NPM_EXCLUDE
        else:
            if src.package not in wheel_dirs:
                return Path("/"), []
            root = wheel_dirs[src.package]
            patterns = ("*/_distutils/*", "*/_pytest/_py/*")
        if not root.is_dir():
            return root, []
        return root, [(rel, full) for rel, full in corpora._iter_dir_files(root, (".",))
                      if rel.endswith(exts) and not _excluded(rel, common + patterns)
                      and not _under(full.resolve(), forbidden)]
    raise ValueError(f"{src.kind} sources are copied by bench/corpora.py")


def _version(src: MoreSource, debian: dict[str, str]) -> str | None:
    if src.kind in ("npm", "pypi"):
        return src.version
    if src.registry == "python":
        return sys.version.split()[0]
    return debian.get(src.package)


def install_more(only: tuple[str, ...] = (), force: bool = False, lists: dict[str, Any] | None = None,
                 rest: bool = True) -> dict[str, Any]:
    """Install and copy this module's sources into ``trainer/runs/corpora`` (idempotent).

    Args:
        only: Languages (empty: all).
        force: Copy again sources that are up to date.
        lists: The lists (default: ``trainer/more_sources.json``).
        rest: Also copy the standard libraries' remaining parts.

    Returns:
        ``{"sources": [...], "failed": [...]}``: the manifest entries written, and what was left out.
    """
    lists = load_lists() if lists is None else lists
    problems = check_lists(lists)
    if problems:
        raise ValueError("; ".join(problems))
    corpora = C.bench_module("corpora")
    chosen = [s for s in all_sources(lists) if not only or s.language in only]
    if rest:
        chosen += [s for s in rest_sources() if not only or s.language in only]
    failed = ensure_apt_many(sorted({s.package for s in chosen if s.kind == "deb"}))
    npm = {s.package: s.version for s in chosen if s.kind == "npm"}
    if npm:
        ensure_npm(npm)
    wheel_dirs = ensure_wheels({s.package: s.version for s in chosen if s.kind == "pypi"})
    forbidden = bench_roots()
    debian = installed_debian()
    manifest_path = C.EXTRA_ROOT / "manifest.json"
    entries = {f"{e['language']}/{e['source']}": e for e in C._read_manifest(manifest_path)}
    written, skipped = [], list(failed)
    for src in chosen:
        key = f"{src.language}/{src.name}"
        version = _version(src, debian)
        if version is None:
            entries.pop(key, None)
            skipped.append(src.package)
            continue
        dest = C.EXTRA_ROOT / src.language / src.name
        spec = {"kind": src.kind, "package": src.package, "version": version, **src.spec}
        fp = C.hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        if not force and key in entries and entries[key].get("fingerprint") == fp and dest.is_dir():
            written.append(entries[key])
            continue
        if src.kind == "rest":
            bsrc = corpora.Source(src.language, src.name, src.registry, src.package, src.spec["root"],
                                  tuple(src.spec["include"]), tuple(src.spec["exclude"]) + EXCLUDE,
                                  archive=bool(src.spec.get("archive")))
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            n, size = corpora.copy_source(bsrc, dest)
            origin = src.spec["root"]
        else:
            root, files = source_files(src, forbidden, wheel_dirs)
            if not files:
                entries.pop(key, None)
                skipped.append(src.package)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            n, size = _copy_files(files, dest)
            origin = str(root)
        entries[key] = {"language": src.language, "source": src.name, "registry": src.registry,
                        "package": src.package, "version": version, "origin": origin,
                        "path": dest.relative_to(C.EXTRA_ROOT).as_posix(), "files": n, "bytes": size,
                        "fingerprint": fp, "more": True}
        written.append(entries[key])
        log.info("%s: %d files (%s %s)", key, n, src.package, version)
    C.EXTRA_ROOT.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps({"sources": [entries[k] for k in sorted(entries)]}, indent=2) + "\n")
    return {"sources": written, "failed": sorted(set(skipped))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.more_sources", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("select", help="rewrite the Debian lists of trainer/more_sources.json by the rule")
    inst = sub.add_parser("install", help="install and copy the sources")
    inst.add_argument("--only", nargs="*", default=[])
    inst.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cmd == "select":
        lists = load_lists() if LISTS.is_file() else {"deb": {}, "npm": {}, "pypi": {}}
        lists["deb"] = {lang: select_debian(lang) for lang in ("go", "php", "ruby")}
        LISTS.write_text(json.dumps(lists, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(json.dumps({lang: len(v) for lang, v in lists["deb"].items()}))
        return 0
    got = install_more(tuple(args.only), args.force)
    print(json.dumps({"sources": len(got["sources"]), "files": sum(e["files"] for e in got["sources"]),
                      "failed": got["failed"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
