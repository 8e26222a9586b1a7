"""Wire shapes of signature sources and local signatures."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from garrison.server.signatures.models import LocalKind, SourceKind
from garrison.server.wire import UtcDateTime

SOURCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SourceFile(BaseModel):
    name: str
    size: int
    sha256: str


class SourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: SourceKind
    origin: str
    format: str
    version: str
    licence: str
    enabled: bool
    signatures: int
    updated_at: UtcDateTime | None
    last_error: str | None = Field(description="why the latest import was refused (null: it was accepted)")
    last_error_at: UtcDateTime | None
    created_by_name: str
    created_at: UtcDateTime
    files: list[SourceFile]

    @field_validator("files", mode="before")
    @classmethod
    def _files(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [{"name": name, **entry} for name, entry in sorted(value.items())]
        return value


class SourceIn(BaseModel):
    """A source without a file: an upstream URL fetched by the server, or a name awaiting files in the watched
    directory. (Uploaded sources are created with a multipart form: ``name``, ``licence`` and ``file``.)"""

    name: str = Field(pattern=SOURCE_NAME)
    kind: Literal["upstream", "watched"]
    origin: str = Field(default="", max_length=2048, description="the URL of an upstream source")
    licence: str = Field(default="", max_length=4000)
    fetch: bool = Field(default=False, description="fetch an upstream source at once")


class SourceUpdate(BaseModel):
    origin: str | None = Field(default=None, max_length=2048)
    licence: str | None = Field(default=None, max_length=4000)


class EnabledIn(BaseModel):
    enabled: bool


class ImportOut(BaseModel):
    source: SourceOut
    changed: bool = Field(description="false when the file held what the source already had")
    warnings: list[str]


class WatchedOut(BaseModel):
    file: str
    outcome: Literal["imported", "unchanged", "refused", "waiting"]
    source: str | None
    reason: str


class LocalHashIn(BaseModel):
    kind: Literal["hash"]
    digest: str = Field(pattern=r"^([0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")
    size: int | None = Field(default=None, ge=0, le=2**53)
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    reason: str = Field(min_length=1, max_length=1024)


class LocalRuleIn(BaseModel):
    kind: Literal["yara"]
    rule: str = Field(min_length=1, max_length=65536)
    reason: str = Field(min_length=1, max_length=1024)


class LocalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: LocalKind
    name: str
    algorithm: str | None
    digest: str | None
    size: int | None
    rule: str | None
    reason: str
    added_by_name: str
    added_at: UtcDateTime
