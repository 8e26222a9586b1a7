"""The ``garrison`` command group."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from garrison.cli.main import COMMANDS, LazyGroup, cli


def test_help_lists_every_command_without_importing_them() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from garrison.cli.main import cli; "
        "out = CliRunner().invoke(cli, ['--help']).output; "
        "print(out); print('fastapi' in sys.modules, 'garrison.server' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in COMMANDS:
        assert f"  {name} " in result.stdout
    assert result.stdout.strip().endswith("False False")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_loads(name: str) -> None:
    group = cli
    assert isinstance(group, LazyGroup)
    command = group.get_command(click.Context(group), name)
    assert isinstance(command, click.Command)
    assert command.name == name
