"""The request's transaction commits before the answer leaves: a commit that fails is a failed request (the agent
keeps its events and sends them again), never an acknowledgement of something the database does not hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from garrison.server.app import create_app
from garrison.server.db import Database
from garrison.server.detections.models import Detection
from garrison.server.settings import ServerSettings
from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token


class CommitFails(Exception):
    pass


@pytest.fixture
def failing_commits() -> Iterator[list[bool]]:
    """While the flag is set, every session commit raises."""
    armed = [False]

    def refuse(session: Session) -> None:
        if armed[0]:
            raise CommitFails("the database went away during the commit")

    event.listen(Session, "before_commit", refuse)
    try:
        yield armed
    finally:
        event.remove(Session, "before_commit", refuse)


def test_an_answer_is_sent_only_after_the_commit(
    client: TestClient,
    database: Database,
    settings: ServerSettings,
    tree: dict[str, int],
    failing_commits: list[bool],
) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    batch = {"detections": [detection_event(), detection_event()]}
    quiet = TestClient(create_app(settings, database, run_migrations=False), raise_server_exceptions=False)
    failing_commits[0] = True
    answer = quiet.post("/api/v1/agent/events", json=batch, headers=agent_auth(enrolled))
    failing_commits[0] = False
    assert answer.status_code == 500  # not 200 with a list of ids the agent would delete
    assert "accepted" not in answer.text
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Detection)) == 0
    retried = client.post("/api/v1/agent/events", json=batch, headers=agent_auth(enrolled))
    assert retried.status_code == 200
    assert len(retried.json()["accepted"]) == 2
