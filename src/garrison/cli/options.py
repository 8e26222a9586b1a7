"""Option types shared by command groups."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import click

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class Size(click.ParamType):  # type: ignore[type-arg]
    """A byte count such as ``100M``, ``4096`` or ``2G`` (binary units, like clamscan)."""

    name = "size"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a size (examples: 4096, 512K, 100M, 2G)", param, ctx)
        return int(match.group(1)) * _UNITS[match.group(2).lower()]


SIZE = Size()


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.2f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.2f} TiB"  # unreachable, keeps mypy satisfied


def config_option(variable: str, default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--config FILE``: the TOML settings file of a command group (sets ``variable`` for the commands and the
    processes they start; see :mod:`garrison.configfile`)."""

    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value:
            os.environ[variable] = os.path.abspath(value)
        return value

    return click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False),
        expose_value=False,
        is_eager=True,
        callback=remember,
        help=f"TOML settings file [default: {variable}, else {default} if it exists]; environment variables win.",
    )
