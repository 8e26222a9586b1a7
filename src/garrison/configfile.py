"""Settings from a TOML file, under the environment: what ``garrison server`` and ``garrison agent`` read.

Each part reads, from strongest to weakest: values given in code (command-line options), its environment
variables (``GARRISON_*``, ``GARRISON_AGENT_*``), its TOML file, then the defaults. The file is the one named by
``GARRISON_CONFIG`` (server) or ``GARRISON_AGENT_CONFIG`` (agent) — which ``--config`` sets — else
``/etc/garrison/server.toml`` or ``/etc/garrison/agent.toml`` when it exists. Keys are the settings' names without
the prefix, in lower case (``data_dir = "/srv/garrison"``). A named file that does not exist is an error; the
default file is optional.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

CONFIG_DIR = Path("/etc/garrison")


class MissingConfigFile(FileNotFoundError):
    """The configuration file named by the environment does not exist."""


def config_file(variable: str, default_name: str) -> Path | None:
    """The TOML file to read: the one ``variable`` names, else the default one if it exists."""
    named = os.environ.get(variable, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise MissingConfigFile(f"{variable} names {path}, which is not a file")
        return path
    default = CONFIG_DIR / default_name
    return default if default.is_file() else None


def sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    *,
    variable: str,
    default_name: str,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """The settings sources in order of strength, the TOML file after the environment."""
    path = config_file(variable, default_name)
    if path is None:
        return init_settings, env_settings
    return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path)


class FileSettings(BaseSettings):
    """Settings read from code, then the environment, then the TOML file ``CONFIG_VARIABLE`` names (or
    ``/etc/garrison/CONFIG_DEFAULT``)."""

    CONFIG_VARIABLE: ClassVar[str]
    CONFIG_DEFAULT: ClassVar[str]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return sources(
            settings_cls, init_settings, env_settings, variable=cls.CONFIG_VARIABLE, default_name=cls.CONFIG_DEFAULT
        )
