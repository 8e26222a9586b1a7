"""Wire shapes of logins, users and API tokens."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from garrison.server.auth.models import Role
from garrison.server.wire import Id, UtcDateTime


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, max_length=12)


class LoginOut(BaseModel):
    username: str
    display_name: str
    role: Role
    csrf_token: str


class SetupIn(BaseModel):
    token: str = Field(min_length=1, max_length=256)
    username: str = Field(min_length=1, max_length=64)
    display_name: str = Field(default="", max_length=255)
    password: str = Field(min_length=1, max_length=1024)


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    display_name: str = Field(default="", max_length=255)
    password: str = Field(min_length=1, max_length=1024)
    role: Role
    unit_id: Id | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    unit_id: int | None
    active: bool
    last_login_at: UtcDateTime | None


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    days: int | None = Field(default=90, ge=1, le=3650)


class TokenOut(BaseModel):
    token: str
