"""Lazy command loading: the table of command modules must name every command the CLI has."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main

from mailer.cli import COMMAND_MODULES, app, load_commands


def test_every_registered_command_is_in_the_table() -> None:
    load_commands()  # no known command: everything registers
    group = typer.main.get_command(app)
    assert set(group.commands) == set(COMMAND_MODULES)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_render_starts_without_the_sending_and_database_stacks() -> None:
    code = (
        "import sys; from mailer.cli import load_commands; load_commands(['render', 'x.md']); "
        "print(sorted(m for m in ('celery', 'boto3', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from mailer.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    for command in COMMAND_MODULES:
        assert command in result.stdout
