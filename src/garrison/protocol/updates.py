"""The update channel: where releases live in the signed (TUF) repository, what the server asks an agent to
install, and what the agent says it has.

Trust does not come from these messages: the heartbeat only *names* the release an agent should install; the
agent installs it only if the TUF metadata it verified lists it, with the hashes and the content digest signed
there (``custom["garrison"]`` of each target, see :class:`TargetInfo`). Versions never go backwards.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

#: Paths of the TUF repository under the server's URL.
METADATA_PATH = "/api/v1/updates/metadata/"
TARGETS_PATH = "/api/v1/updates/targets/"

_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+_-]{0,63}$")


def full_target(release: int) -> str:
    """The whole compiled signature set of ``release`` (a gzip-compressed bundle)."""
    return f"signatures/{release}.tar.gz"


def delta_target(base: int, release: int) -> str:
    """What turns release ``base`` into release ``release``."""
    return f"signatures/{base}-to-{release}.delta"


def agent_target(version: str) -> str:
    """An agent software release (a pure-Python wheel)."""
    if not _VERSION.match(version):
        raise ValueError(f"{version!r} is not a version")
    return f"agent/garrison-{version}-py3-none-any.whl"


def valid_version(version: str) -> bool:
    return bool(_VERSION.match(version))


class TargetInfo(BaseModel):
    """What the server signs about a target, beyond its length and hashes (``custom["garrison"]``)."""

    kind: Literal["signatures", "delta", "agent"]
    release: int | None = Field(default=None, ge=1)
    base: int | None = Field(default=None, ge=1)
    content_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    content_size: int | None = Field(default=None, ge=0)
    published_at: datetime | None = None
    version: str | None = Field(default=None, max_length=64)


class UpdateOrder(BaseModel):
    """In a heartbeat answer: the signature release and agent version this agent should run (None: nothing
    published yet, or no agent release offered)."""

    release: int | None = Field(default=None, ge=1)
    agent_version: str | None = Field(default=None, max_length=64)


class UpdateStatus(BaseModel):
    """In a heartbeat: the agent's own account of its updates."""

    release: int | None = Field(default=None, ge=1)
    published_at: datetime | None = None
    installed_at: datetime | None = None
    last_check_at: datetime | None = None
    last_error: str = Field(default="", max_length=500)
    last_error_at: datetime | None = None
    failed_release: int | None = Field(default=None, ge=1)
    next_check_at: datetime | None = None
    software_error: str = Field(default="", max_length=500)
