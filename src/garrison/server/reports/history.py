"""The endpoints' state of each unit, recorded once a day, so a past period's statistics give the state at its end.

Online, protected, firewall and signature figures are states, not events: nothing in the agents' table says what
they were last quarter. The server's background pass (every ``statistics_record_seconds``, default one hour) writes
one ``EndpointState`` row per unit for today (Vietnam's day), replacing today's rows, so each day keeps the last
state seen in it; ``statistics.compute`` reads the last recorded day of a period that has ended. Days before the
server recorded anything have no rows, and the statistics then say they give the state now.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from garrison.server.agents.models import Agent
from garrison.server.db import Database, transaction_lock, utcnow
from garrison.server.reports.models import EndpointState
from garrison.server.reports.statistics import ENDPOINT_FIELDS, ZONE, state_columns
from garrison.server.settings import ServerSettings
from garrison.server.units.models import Unit

logger = logging.getLogger(__name__)

#: Serialises recording between server processes ("gsta"): two passes replacing the same day at once would
#: otherwise both delete, then both insert the day's rows, and the second would fail on their primary key.
RECORD_LOCK = 0x67737461


def record(session: Session, now: datetime | None = None, heartbeat_seconds: float = 60.0) -> date:
    """Record every unit's endpoints as they are at ``now`` under its Vietnam day (replacing that day's rows);
    the day recorded. One query per table; a province of a few hundred units writes a few hundred rows."""
    now = now or utcnow()
    day = now.astimezone(ZONE).date()
    transaction_lock(session, RECORD_LOCK)
    states = {
        unit_id: [int(n) for n in counts]
        for unit_id, *counts in session.execute(
            select(Agent.unit_id, *state_columns(session, now, heartbeat_seconds)).group_by(Agent.unit_id)
        )
    }
    nothing = [0] * (len(ENDPOINT_FIELDS) - 3)
    rows = [
        dict(
            zip(
                ("day", "unit_id", "recorded_at", *ENDPOINT_FIELDS),
                (day, unit_id, now, servers, workstations, other, *states.get(unit_id, nothing)),
                strict=True,
            )
        )
        for unit_id, servers, workstations, other in session.execute(
            select(Unit.id, Unit.declared_servers, Unit.declared_workstations, Unit.declared_other)
        )
    ]
    session.execute(delete(EndpointState).where(EndpointState.day == day))
    if rows:
        session.execute(insert(EndpointState), rows)
    return day


def record_pass(database: Database, settings: ServerSettings) -> None:
    """One pass of the background work: today's state of every unit, in its own transaction."""
    with database.session() as session:
        day = record(session, heartbeat_seconds=settings.heartbeat_seconds)
        session.commit()
    logger.debug("endpoint states of %s recorded", day)
