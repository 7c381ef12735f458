"""The README documents every setting, command, command option and language."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest

from codesearch.cli import cli
from codesearch.config import Settings
from parsers import languages

README = (Path(__file__).parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Settings)])
def test_setting_documented(name):
    assert f"`{name}`" in README


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_command_documented(command):
    assert f"codesearch {command}" in README


@pytest.mark.parametrize("command,option", [
    (c, o) for c, cmd in sorted(cli.commands.items()) for p in cmd.params if isinstance(p, click.Option)
    for o in p.opts if o.startswith("--")
])
def test_option_documented(command, option):
    assert option in README, f"{command} {option} is not in the README"


@pytest.mark.parametrize("lang", languages())
def test_language_documented(lang):
    assert lang in README.lower()
