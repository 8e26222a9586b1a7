"""Agents enrolling at the same moment: every use of a token is counted, and a use-limited token is never used
more often than allowed (one atomic UPDATE, on SQLite and PostgreSQL, from many threads with their own sessions)."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, func, select

from garrison.protocol.enrollment import EnrollRequest
from garrison.server.agents import service
from garrison.server.agents.models import Agent, EnrollmentToken
from garrison.server.audit.service import SYSTEM
from garrison.server.auth.scope import Scope
from garrison.server.db import Database
from garrison.server.errors import Unauthorized
from garrison.server.units.models import Unit, UnitKind


def test_concurrent_enrollments_respect_the_limit(fresh_engine: Engine) -> None:
    database = Database(fresh_engine)
    with database.session() as session:
        unit = Unit(name="Tỉnh", kind=UnitKind.PROVINCE, path="")
        session.add(unit)
        session.flush()
        unit.path = f"/{unit.id}/"
        _row, token = service.create_enrollment_token(session, Scope.whole_tree(), SYSTEM, unit.id, "đợt 1", 1, 5)
    refused: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(12)

    def enroll(number: int) -> None:
        start.wait()
        try:
            with database.session() as session:
                service.enroll(session, EnrollRequest(token=token, hostname=f"may-{number:02}"), "127.0.0.1", 60)
        except Unauthorized as exc:
            refused.append(exc.message)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=enroll, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with database.session() as session:
        enrolled = session.scalar(select(func.count()).select_from(Agent))
        uses = session.scalar(select(EnrollmentToken.uses))
    assert enrolled == 5
    assert uses == 5
    assert len(refused) == 7
    assert all("as many times as allowed" in message for message in refused)
