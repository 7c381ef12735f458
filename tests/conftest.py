"""Shared fixtures: the real packaged encoder (loaded once), fakes, and small repositories."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Queries in tests do not leave background daemons behind; the auto-start tests turn it on themselves.
os.environ["CODESEARCH_AUTO_DAEMON"] = "0"

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden ranking files")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether to rewrite golden files instead of comparing against them."""
    return bool(request.config.getoption("--update-golden"))
REPOS = FIXTURES / "repos"


@pytest.fixture(scope="session")
def shipped_embedder():
    """What users get: the shipped model on the default runtime, loaded once per session."""
    from codesearch.config import Settings
    from codesearch.embed import load_embedder

    defaults = Settings()
    return load_embedder(None, max_length=defaults.max_length, batch_size=defaults.batch_size,
                         runtime=defaults.runtime)


@pytest.fixture(scope="session")
def real_embedder():
    """The shipped code-search model on torch (fp32, the reference the int8 runtime is checked against)."""
    from codesearch.config import Settings
    from codesearch.embed import TransformerEmbedder

    defaults = Settings()
    return TransformerEmbedder(max_length=defaults.max_length, batch_size=defaults.batch_size)


@pytest.fixture(scope="session")
def base_embedder():
    """The packaged all-MiniLM-L6-v2 (the model the shipped one was trained from), default settings."""
    from codesearch.config import Settings
    from codesearch.embed import TransformerEmbedder

    defaults = Settings()
    return TransformerEmbedder("base", max_length=defaults.max_length, batch_size=defaults.batch_size)


@pytest.fixture
def hash_embedder():
    """A fast deterministic fake for index-logic tests (never for quality)."""
    from codesearch.embed import HashEmbedder

    return HashEmbedder(dim=32)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[dict[str, str | bytes]], Path]:
    """Write {relative path: content} into a fresh directory and return it."""

    def make(files: dict[str, str | bytes], name: str = "repo") -> Path:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        for rel, content in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content, encoding="utf-8")
        return root

    return make


@pytest.fixture
def copy_fixture_repo(tmp_path: Path) -> Callable[[str], Path]:
    """Copy tests/fixtures/repos/NAME into a temporary directory."""

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(REPOS / name, dst)
        return dst

    return copy
