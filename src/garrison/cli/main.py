"""The ``garrison`` entry point: one command group per module, imported only when it is used.

``garrison scan`` should start as fast as the engine allows; importing the server (FastAPI, SQLAlchemy) and
the agent (HTTP, cryptography) for it would double its start-up time.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click
from pydantic import ValidationError

from garrison import __version__
from garrison.configfile import MissingConfigFile

#: Command name → (module, attribute, one-line help shown by ``garrison --help``).
COMMANDS = {
    "scan": ("garrison.cli.scan", "scan", "Scan files and directories (recursively) for malware."),
    "db": ("garrison.cli.db", "db", "Inspect and validate signature databases (ClamAV formats and YARA)."),
    "server": ("garrison.cli.server", "server", "The central management server."),
    "agent": ("garrison.cli.agent", "agent", "The endpoint agent."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{attribute} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing the commands must not import them all, so the short help comes from COMMANDS.
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="garrison")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
def cli(verbose: int) -> None:
    """Garrison: anti-malware scanning and central management for government agencies."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)


#: The environment prefix of each settings class, to name a wrong setting the way a person set it.
PREFIXES = {"ServerSettings": "GARRISON_", "AgentSettings": "GARRISON_AGENT_", "CliSettings": "GARRISON_"}


def settings_problem(error: ValidationError) -> str:
    """A wrong setting in words: which variable (or config file key), what was given, what is expected."""
    prefix = PREFIXES.get(error.title, "GARRISON_")
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"])
        lines.append(
            f"{prefix}{name.upper()} (or {name} in the config file): {problem['msg']}, got {problem['input']!r}"
        )
    return "invalid setting: " + "; ".join(lines)


def main() -> None:
    try:
        cli()
    except ValidationError as exc:
        if exc.title not in PREFIXES:
            raise
        click.echo(f"garrison: {settings_problem(exc)}", err=True)
        sys.exit(78)  # EX_CONFIG: systemd units do not restart on it
    except MissingConfigFile as exc:
        click.echo(f"garrison: {exc}", err=True)
        sys.exit(78)
