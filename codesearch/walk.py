"""File discovery: which files of a repository get indexed, and in which language.

Rules: nested ``.gitignore`` files and ``.codesearchignore`` (same syntax) apply to their directory
and below; ``Settings.ignore`` patterns apply from the root; VCS, dependency and build directories are
skipped; symbolic links are never followed (like ripgrep's default), so the walk cannot leave the
repository or loop.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from parsers import language_for_path

log = logging.getLogger(__name__)

#: Directory names never descended into.
SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", ".codesearch", "node_modules", "vendor", "bower_components",
    "__pycache__", ".venv", "venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    "build", "dist", "target", "out", ".gradle", ".idea", ".next", ".nuxt", "coverage", "site-packages",
    ".eggs",
})
IGNORE_FILES = (".gitignore", ".codesearchignore")


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A candidate source file.

    Attributes:
        path: Path relative to the root, forward slashes.
        language: Registry language name.
        size: Size in bytes at discovery time.
        mtime_ns: Modification time at discovery time.
    """

    path: str
    language: str
    size: int
    mtime_ns: int


class Ignorer:
    """Answers whether a path is ignored, from the ignore files found so far on the walk."""

    def __init__(self, root: Path, extra: tuple[str, ...] = ()) -> None:
        self.root = root
        self._extra = list(extra)
        self._specs: dict[str, pathspec.PathSpec] = {}
        self._loaded: set[str] = set()

    def load_dir(self, rel_dir: str) -> None:
        """Read the ignore files of directory ``rel_dir`` (relative, "" for the root), once."""
        if rel_dir in self._loaded:
            return
        self._loaded.add(rel_dir)
        lines: list[str] = list(self._extra) if rel_dir == "" else []
        for name in IGNORE_FILES:
            p = self.root / rel_dir / name
            try:
                lines += p.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
        if lines:
            self._specs[rel_dir] = pathspec.GitIgnoreSpec.from_lines(lines)

    def ignored(self, rel_path: str, is_dir: bool) -> bool:
        """Whether ``rel_path`` is ignored by any ignore file in its ancestors."""
        parts = rel_path.split("/")
        for depth in range(len(parts)):
            base = "/".join(parts[:depth])
            spec = self._specs.get(base)
            if spec is None:
                continue
            sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
            if spec.match_file(sub):
                return True
        return False


def walk(root: Path, extra_ignore: tuple[str, ...] = ()) -> Iterator[FileEntry]:
    """Yield the indexable source files below ``root``, in sorted order per directory.

    Args:
        root: Repository root (resolved).
        extra_ignore: Extra gitignore-style patterns, relative to the root.

    Yields:
        FileEntry for each regular file of a known language that is not ignored.
    """
    ign = Ignorer(root, extra_ignore)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        ign.load_dir(rel_dir)
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s: %s", rel_dir or ".", exc)
            continue
        subdirs = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name in SKIP_DIRS or ign.ignored(rel, True):
                    continue
                subdirs.append(rel)
            elif stat.S_ISREG(st.st_mode):
                lang = language_for_path(entry.name)
                if lang is None or ign.ignored(rel, False):
                    continue
                yield FileEntry(rel, lang, st.st_size, st.st_mtime_ns)
        stack.extend(reversed(subdirs))


def entry_for(root: Path, rel: str, ign: Ignorer, must_exist: bool = True) -> FileEntry | None:
    """The FileEntry of one repository-relative path, or None if it is gone, ignored or not source.

    Applies the same rules as :func:`walk` (skipped directories, ignore files of every ancestor,
    no symbolic links anywhere on the path). With ``must_exist`` False, a path that does not exist
    yet (an editor buffer never saved, perhaps in a directory not created yet) gets an entry of size
    0 when the walk would index it once written.
    """
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    for depth in range(len(parts)):
        base = "/".join(parts[:depth])
        ign.load_dir(base)
        if depth and (parts[depth - 1] in SKIP_DIRS or ign.ignored(base, True)):
            return None
        try:
            st = os.lstat(root / base) if base else None
        except FileNotFoundError:
            if must_exist:
                return None
            st = None
        except OSError:
            return None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            return None
    lang = language_for_path(parts[-1])
    if lang is None or ign.ignored(rel, False):
        return None
    try:
        st = os.lstat(root / rel)
    except FileNotFoundError:
        return None if must_exist else FileEntry(rel, lang, 0, 0)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return FileEntry(rel, lang, st.st_size, st.st_mtime_ns)
