"""The ``garrison`` entry point: one command group per module."""

from __future__ import annotations

import logging
import sys

import click

from garrison import __version__
from garrison.cli.agent import agent
from garrison.cli.db import db
from garrison.cli.scan import scan
from garrison.cli.server import server


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="garrison")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
def cli(verbose: int) -> None:
    """Garrison: anti-malware scanning and central management for government agencies."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)


cli.add_command(scan)
cli.add_command(db)
cli.add_command(server)
cli.add_command(agent)


def main() -> None:
    cli()
