"""Writing and reading the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.server.audit.models import AuditEvent
from garrison.server.auth.scope import Scope
from garrison.server.units.models import Unit


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting, and from where: recorded with every change."""

    user_id: int | None
    name: str
    address: str | None = None


SYSTEM = Actor(None, "system")


def record(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: object = None,
    *,
    unit_id: int | None = None,
    **details: Any,
) -> AuditEvent:
    """Add one audit event (committed with the change it describes). Never pass secrets in ``details``."""
    event = AuditEvent(
        actor_id=actor.user_id,
        actor_name=actor.name,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        unit_id=unit_id,
        details=details,
        address=actor.address,
    )
    session.add(event)
    session.flush()
    return event


def events(session: Session, scope: Scope, *, limit: int = 100, offset: int = 0) -> Sequence[AuditEvent]:
    """Audit events the scope may read: everything for the whole tree, else events about its subtree."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit).offset(offset)
    if not scope.everything:
        query = query.join(Unit, Unit.id == AuditEvent.unit_id).where(Unit.path.startswith(scope.path))
    return session.scalars(query).all()
