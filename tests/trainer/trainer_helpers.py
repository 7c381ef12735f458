"""Helpers shared by the trainer tests (a plain module: conftest.py is not importable by name)."""

from __future__ import annotations

from pathlib import Path

REPOS = Path(__file__).resolve().parent.parent / "fixtures" / "repos"
LANGS = ("python", "go", "java", "javascript", "php", "ruby")


def fixture_sources():
    """One corpus source per mini repo."""
    from trainer.data import CorpusSource

    return [CorpusSource(lang, f"mini_{lang}", REPOS / f"mini_{lang}", "fixture", f"mini_{lang}", "0")
            for lang in LANGS]
