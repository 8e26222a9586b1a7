"""Users, logins, console sessions and API tokens.

There is no default password: the first administrator is created by ``garrison server create-admin`` or through
a one-time setup link printed when the server starts with no users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from garrison.server.audit.service import Actor, record
from garrison.server.auth.models import ApiToken, ConsoleSession, LoginAttempt, Role, SetupToken, User
from garrison.server.auth.passwords import hash_password, needs_rehash, verify_password
from garrison.server.auth.scope import Scope
from garrison.server.auth.tokens import new_token, token_hash
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized
from garrison.server.units.models import Unit


class LoginFailed(Unauthorized):
    """A failed login. Its attempt is recorded in the session: the caller must commit before answering."""


API_TOKEN_PREFIX = "gst_"  # noqa: S105 - a label that makes leaked tokens recognisable, not a secret


def scope_of(session: Session, user: User) -> Scope:
    """The part of the tree a user sees: all of it for an administrator, their unit's subtree otherwise."""
    if user.role is Role.ADMIN:
        return Scope.whole_tree()
    if user.unit_id is None:
        raise Forbidden("your account is not attached to a unit; ask an administrator")
    unit = session.get(Unit, user.unit_id)
    if unit is None:
        raise Forbidden("your account is attached to a unit that no longer exists")
    return Scope(unit.path, everything=False, writable=user.role is not Role.AUDITOR)


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    display_name: str
    password: str
    role: Role
    unit_id: int | None = None


def users_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def create_user(session: Session, scope: Scope, actor: Actor, new: NewUser) -> User:
    """Add a user inside the caller's scope; only an administrator creates administrators."""
    if not scope.writable:
        raise Forbidden("read-only access")
    if new.role is Role.ADMIN and not scope.everything:
        raise Forbidden("only an administrator can create administrators")
    if new.role is not Role.ADMIN and new.unit_id is None:
        raise BadRequest("unit administrators and auditors belong to a unit")
    if new.unit_id is not None:
        unit = session.get(Unit, new.unit_id)
        if unit is None or not scope.contains(unit.path):
            raise NotFound(f"no unit {new.unit_id}")
    username = new.username.strip().lower()
    if not username or not username.replace(".", "").replace("_", "").replace("-", "").isalnum():
        raise BadRequest("a username uses letters, digits, '.', '_' and '-'")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"the username {username!r} is taken")
    user = User(
        username=username,
        display_name=new.display_name.strip() or username,
        password_hash=hash_password(new.password),
        role=new.role,
        unit_id=new.unit_id if new.role is not Role.ADMIN else None,
    )
    session.add(user)
    session.flush()
    record(session, actor, "user.create", "user", user.id, unit_id=user.unit_id, username=username, role=new.role.value)
    return user


def list_users(session: Session, scope: Scope) -> Sequence[User]:
    query = select(User).order_by(User.username)
    if not scope.everything:
        query = query.join(Unit, Unit.id == User.unit_id).where(Unit.path.startswith(scope.path))
    return session.scalars(query).all()


@dataclass(frozen=True, slots=True)
class Throttle:
    attempts: int
    window: timedelta


def _throttled(session: Session, username: str, address: str, throttle: Throttle) -> int | None:
    """Seconds to wait when the account or the address used up its failed attempts, else None."""
    since = utcnow() - throttle.window
    for column, value in ((LoginAttempt.username, username), (LoginAttempt.address, address)):
        count = session.scalar(
            select(func.count()).select_from(LoginAttempt).where(column == value, LoginAttempt.at >= since)
        )
        if (count or 0) >= throttle.attempts:
            return int(throttle.window.total_seconds())
    return None


def login(
    session: Session, username: str, password: str, totp: str | None, address: str, throttle: Throttle
) -> tuple[User, str, str]:
    """Check credentials; on success open a console session and return (user, session token, CSRF token).

    Failed attempts are counted per account and per address; past the limit, even a right password is refused
    until the window passes, and the caller is told how long to wait.
    """
    username = username.strip().lower()
    wait = _throttled(session, username, address, throttle)
    if wait is not None:
        raise TooManyRequests("too many failed logins; wait and try again", retry_after=wait)
    user = session.scalar(select(User).where(User.username == username))
    ok = verify_password(user.password_hash if user else None, password)
    if ok and user is not None and user.totp_secret:
        ok = bool(totp) and pyotp.TOTP(user.totp_secret).verify(totp or "", valid_window=1)
    if not ok or user is None or not user.active:
        session.add(LoginAttempt(username=username, address=address))
        session.flush()
        record(session, Actor(None, username or "?", address), "auth.login_failed", "user", username)
        raise LoginFailed("wrong username, password or one-time code")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    session.execute(delete(LoginAttempt).where(LoginAttempt.username == username))
    token, csrf = new_token(), new_token()
    session.add(ConsoleSession(token_hash=token_hash(token), csrf_token=csrf, user_id=user.id, address=address))
    user.last_login_at = utcnow()
    session.flush()
    record(session, Actor(user.id, user.username, address), "auth.login", "user", user.id, unit_id=user.unit_id)
    return user, token, csrf


def session_user(session: Session, token: str, max_idle: timedelta) -> tuple[User, ConsoleSession]:
    found = session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token)))
    if found is None:
        raise Unauthorized("not logged in")
    now = utcnow()
    if _aware(found.last_seen_at) + max_idle < now:
        session.delete(found)
        session.flush()
        raise Unauthorized("the session expired; log in again")
    user = session.get(User, found.user_id)
    if user is None or not user.active:
        raise Unauthorized("the account is disabled")
    found.last_seen_at = now
    return user, found


def logout(session: Session, token: str) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token)))


def create_api_token(session: Session, actor: Actor, user: User, name: str, days: int | None) -> str:
    token = new_token(API_TOKEN_PREFIX)
    expires = utcnow() + timedelta(days=days) if days else None
    session.add(ApiToken(name=name, token_hash=token_hash(token), user_id=user.id, expires_at=expires))
    session.flush()
    record(session, actor, "api_token.create", "user", user.id, unit_id=user.unit_id, name=name, days=days)
    return token


def api_token_user(session: Session, token: str) -> User:
    found = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    now = utcnow()
    if found is None or found.revoked or (found.expires_at is not None and _aware(found.expires_at) < now):
        raise Unauthorized("the API token is unknown, revoked or expired")
    user = session.get(User, found.user_id)
    if user is None or not user.active:
        raise Unauthorized("the account is disabled")
    found.last_used_at = now
    return user


def get_user(session: Session, scope: Scope, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    if not scope.everything:
        unit = session.get(Unit, user.unit_id) if user.unit_id else None
        if unit is None or not scope.contains(unit.path):
            raise NotFound(f"no user {user_id}")
    return user


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns; they were stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def issue_setup_token(session: Session) -> str | None:
    """A new one-time setup token while the server has no users (earlier unused ones stop working), else None."""
    if users_count(session):
        return None
    session.execute(delete(SetupToken))
    token = new_token()
    session.add(SetupToken(token_hash=token_hash(token)))
    session.flush()
    return token


def complete_setup(session: Session, token: str, username: str, display_name: str, password: str, address: str) -> User:
    """Create the first administrator with a setup token; works once, and only while there are no users."""
    found = session.scalar(select(SetupToken).where(SetupToken.token_hash == token_hash(token)))
    if found is None or found.used or users_count(session):
        raise Unauthorized("the setup link is not valid (already used, or replaced by a newer one)")
    found.used = True
    actor = Actor(None, "setup", address)
    return create_user(session, Scope.whole_tree(), actor, NewUser(username, display_name, password, Role.ADMIN))
