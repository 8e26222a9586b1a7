"""Console pages of the protected computers (agents): the list with filters and its CSV export, one agent's
page (what it reported, its recent detections) and revoking it.

Agents are read through ``agents.service`` with the viewer's scope, like the API; their state (online, offline
since…, stale, revoked) is computed by ``agents.service.state_of`` from the heartbeat interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.server.agents import service
from garrison.server.agents.models import Agent
from garrison.server.auth.scope import Scope
from garrison.server.console import csvfile, i18n, sorting
from garrison.server.console.i18n import N_
from garrison.server.console.views.units import tree_rows
from garrison.server.console.web import (
    ConsoleDb,
    CurrentViewer,
    WritingViewer,
    console_router,
    gettext,
    redirect,
    render,
)
from garrison.server.db import utcnow
from garrison.server.deps import Settings
from garrison.server.detections import service as detections
from garrison.server.detections.models import Triage
from garrison.server.units import service as units
from garrison.server.units.models import Unit
from garrison.server.updates import service as updates

router = console_router()

MAX_EXPORT = 100_000
RECENT_DETECTIONS = 20
#: The "signatures older than" filters offered (days), as on the overview.
SIGNATURE_AGES = (7, 15)
STATES = [state.value for state in service.AgentState]
#: A state filter of its own: every computer but the revoked ones (the "enrolled" figures of the overview).
ACTIVE = "active"
#: Why a computer needs someone (``needs=action``): out of contact for over a day, real-time protection off,
#: signatures older than 7 days (or never reported), or detections still to review.
NEED_OFFLINE = timedelta(days=1)
NEED_SIGNATURE_DAYS = 7
NEEDS = ("offline", "realtime_off", "signatures", "to_review")
#: Characters of an update error shown in the list (the whole text is in the cell's tooltip).
ERROR_SHOWN = 60
NEED_LABELS = {
    "offline": N_("Not connected for over a day"),
    "realtime_off": N_("Real-time protection off"),
    "signatures": N_("Signatures older than 7 days"),
    "to_review": N_("Detections to review"),
}


@dataclass(frozen=True, slots=True)
class Shown:
    """An agent with its state, as one row of the list."""

    agent: Agent
    state: str
    since: datetime | None
    unit_name: str
    needs: tuple[str, ...] = ()  # the NEEDS codes that apply (revoked computers need nothing)
    signature_age: int | None = None  # whole days since its signatures were published (None: never reported)
    signatures_late: bool = False  # older than NEED_SIGNATURE_DAYS (or never reported)

    @property
    def update_error_short(self) -> str:
        error = " ".join(self.agent.update_error.split())
        return error if len(error) <= ERROR_SHOWN else error[: ERROR_SHOWN - 1] + "…"


@dataclass(frozen=True, slots=True)
class Filters:
    state: str = ""
    unit: int | None = None
    signatures: int | None = None  # older than this many days (or never reported)
    protected: bool = False
    needs_action: bool = False
    release: int | None = None  # runs this signature release
    realtime: bool = False  # not revoked, real-time protection on
    firewall: str = ""  # "on" or "unknown": not revoked, the firewall on or not reported
    infected_from: date | None = None  # malware found on it (false alarms left out) in these days, both included
    infected_to: date | None = None

    def query_string(self) -> str:
        parts: dict[str, Any] = {
            "state": self.state,
            "unit": self.unit,
            "signatures": self.signatures,
            "protected": "1" if self.protected else "",
            "needs": "action" if self.needs_action else "",
            "release": self.release,
            "realtime": "on" if self.realtime else "",
            "firewall": self.firewall,
            "infected_from": self.infected_from,
            "infected_to": self.infected_to,
        }
        return urlencode({k: str(v) for k, v in parts.items() if v})


def signature_older_than(agent: Agent, days: int, now: datetime) -> bool:
    """Signatures older than ``days`` (an agent that never reported a date counts as out of date)."""
    return agent.signature_date is None or service.aware(agent.signature_date) < now - timedelta(days=days)


def signature_age(agent: Agent, now: datetime) -> int | None:
    """Whole days since the signatures ``agent`` runs were published (None when it never said)."""
    if agent.signature_date is None:
        return None
    return max(0, (now - service.aware(agent.signature_date)).days)


def outdated_ids(session: Session, viewer_scope: Scope, days: int, now: datetime) -> set[str]:
    """The enrolled computers whose signatures are older than ``days`` (as the overview and the updates page
    count them: ``updates.service.outdated``)."""
    query = select(Agent.id).where(Agent.revoked.is_(False), updates.outdated(days, now))
    return set(session.scalars(units.within(query, viewer_scope, Agent.unit_id)))


def needs_of(agent: Agent, info: service.StateInfo, now: datetime, to_review: set[str]) -> tuple[str, ...]:
    """The reasons (NEEDS codes) why someone should look at ``agent``; none for a revoked one."""
    if info.state is service.AgentState.REVOKED:
        return ()
    out_of_contact = info.since is None or info.since < now - NEED_OFFLINE
    reasons = {
        "offline": info.state is not service.AgentState.ONLINE and out_of_contact,
        "realtime_off": not agent.realtime_enabled,
        "signatures": signature_older_than(agent, NEED_SIGNATURE_DAYS, now),
        "to_review": agent.id in to_review,
    }
    return tuple(code for code in NEEDS if reasons[code])


def shown_agents(session: Session, viewer_scope: Scope, interval: float, filters: Filters) -> list[Shown]:
    """The agents of the viewer's scope matching ``filters``, each with its state and what it needs."""
    now = utcnow()
    to_review = detections.agents_with(session, viewer_scope, triage=Triage.NEW)
    unit_list: Sequence[Unit] = units.subtree(session, viewer_scope)
    names = {u.id: u.name for u in unit_list}
    inside: set[int] | None = None
    if filters.unit is not None:
        chosen = next((u for u in unit_list if u.id == filters.unit), None)
        inside = {u.id for u in unit_list if chosen and u.path.startswith(chosen.path)}
    outdated = outdated_ids(session, viewer_scope, filters.signatures, now) if filters.signatures else None
    infected = None
    if filters.infected_from is not None and filters.infected_to is not None:
        since, until = i18n.day_start(filters.infected_from), i18n.day_start(filters.infected_to + timedelta(days=1))
        infected = detections.agents_infected(session, viewer_scope, since=since, until=until)
    rows = []
    for agent in service.list_agents(session, viewer_scope):
        info = service.state_of(agent, interval, now)
        if inside is not None and agent.unit_id not in inside:
            continue
        active = info.state is not service.AgentState.REVOKED
        if filters.state and filters.state not in (ACTIVE, info.state.value):
            continue
        if filters.state == ACTIVE and not active:
            continue
        if outdated is not None and agent.id not in outdated:
            continue
        if filters.release is not None and agent.signature_release != filters.release:
            continue
        if filters.protected and not (info.state is service.AgentState.ONLINE and agent.realtime_enabled):
            continue
        if filters.realtime and not (active and agent.realtime_enabled):
            continue
        firewall = {"on": agent.firewall_enabled is True, "unknown": agent.firewall_enabled is None}
        if filters.firewall and not (active and firewall[filters.firewall]):
            continue
        if infected is not None and agent.id not in infected:
            continue
        needs = needs_of(agent, info, now, to_review)
        if filters.needs_action and not needs:
            continue
        age = signature_age(agent, now)
        late = signature_older_than(agent, NEED_SIGNATURE_DAYS, now)
        rows.append(Shown(agent, info.state.value, info.since, names.get(agent.unit_id, ""), needs, age, late))
    return rows


def _moment(value: datetime | None) -> tuple[bool, Any]:
    """A sort key for a time, "never" before the oldest one."""
    return sorting.nullable(service.aware(value) if value is not None else None)


#: The sortable columns (``sort``), sorted here since the states are computed here: by name by default.
SORTABLE = sorting.Sortable(
    ("name", "state", "unit", "signatures", "seen"), "name", descending_first=frozenset({"signatures", "seen"})
)
Chosen = Annotated[sorting.Sort, Depends(SORTABLE.chosen)]
_SORT_KEYS: dict[str, Callable[[Shown], Any]] = {
    "name": lambda row: sorting.text(row.agent.hostname),
    "state": lambda row: STATES.index(row.state) if row.state in STATES else len(STATES),
    "unit": lambda row: sorting.text(row.unit_name),
    "signatures": lambda row: _moment(row.agent.signature_date),
    "seen": lambda row: _moment(row.agent.last_seen_at),
}


def sort_agents(rows: list[Shown], sort: sorting.Sort) -> list[Shown]:
    """The rows in the order asked for; then by name (and id, for computers of the same name)."""
    return sorting.sort_rows(rows, sort, _SORT_KEYS, lambda row: (sorting.text(row.agent.hostname), row.agent.id))


def _filters(
    state: str,
    unit: str,
    signatures: str,
    protected: str,
    needs: str = "",
    release: str = "",
    outdated: str = "",
    realtime: str = "",
    firewall: str = "",
    infected_from: str = "",
    infected_to: str = "",
) -> Filters:
    # ``outdated`` is another name of ``signatures`` (older than so many days); ``signatures`` wins.
    age = signatures or outdated
    first, last = i18n.iso_day(infected_from), i18n.iso_day(infected_to)
    return Filters(
        state if state in STATES or state == ACTIVE else "",
        int(unit) if unit.isdigit() else None,
        int(age) if age in {str(d) for d in SIGNATURE_AGES} else None,
        protected == "1",
        needs == "action",
        int(release) if release.isdigit() and len(release) < 10 else None,
        realtime == "on",
        firewall if firewall in {"on", "unknown"} else "",
        first if first and last and first <= last else None,
        last if first and last and first <= last else None,
    )


@router.get("/agents")
def list_page(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    chosen: Chosen,
    settings: Settings,
    state: str = "",
    unit: str = "",
    signatures: str = "",
    protected: str = "",
    needs: str = "",
    release: str = "",
    outdated: str = "",
    realtime: str = "",
    firewall: str = "",
    infected_from: str = "",
    infected_to: str = "",
    done: str = "",
) -> Response:
    _ = gettext(request)
    more = (realtime, firewall, infected_from, infected_to)
    filters = _filters(state, unit, signatures, protected, needs, release, outdated, *more)
    order = chosen
    context = {
        "agents": sort_agents(shown_agents(session, viewer.caller.scope, settings.heartbeat_seconds, filters), order),
        "filters": filters,
        "sort": order,
        "states": STATES,
        "units": tree_rows(units.subtree(session, viewer.caller.scope)),
        "signature_ages": SIGNATURE_AGES,
        "active": ACTIVE,
        "need_labels": NEED_LABELS,
        "notice": _("The computer was revoked: it can no longer report to this server.") if done == "revoked" else "",
    }
    return render(request, "agents/list.html", context, viewer=viewer)


@router.get("/agents.csv")
def export(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    chosen: Chosen,
    settings: Settings,
    state: str = "",
    unit: str = "",
    signatures: str = "",
    protected: str = "",
    needs: str = "",
    release: str = "",
    outdated: str = "",
    realtime: str = "",
    firewall: str = "",
    infected_from: str = "",
    infected_to: str = "",
) -> Response:
    _ = gettext(request)
    more = (realtime, firewall, infected_from, infected_to)
    filters = _filters(state, unit, signatures, protected, needs, release, outdated, *more)
    rows = shown_agents(session, viewer.caller.scope, settings.heartbeat_seconds, filters)
    header = [_("Computer"), _("Unit"), _("State"), _("Since"), _("Operating system"), _("Agent version")]
    header += [_("Signatures of"), _("Signature release"), _("Signature age (days)"), _("Real-time protection")]
    header += [_("Last seen"), _("Address"), _("Last update error"), _("Update error at"), "ID"]
    lines = []
    for row in sort_agents(rows, chosen)[:MAX_EXPORT]:
        agent = row.agent
        values = [
            agent.hostname,
            row.unit_name,
            i18n.label(i18n.STATE_LABELS, row.state, _),
            i18n.moment(row.since),
            f"{agent.os} {agent.os_version}".strip(),
            agent.agent_version,
            i18n.moment(agent.signature_date),
            agent.signature_release if agent.signature_release is not None else "",
            row.signature_age if row.signature_age is not None else "",
            _("On") if agent.realtime_enabled else _("Off"),
            i18n.moment(agent.last_seen_at),
            agent.last_address,
            agent.update_error,
            i18n.moment(agent.update_error_at) if agent.update_error else "",
            agent.id,
        ]
        lines.append(values)
    return csvfile.download("agents", header, lines)


@router.get("/agents/{agent_id}")
def detail(request: Request, agent_id: str, session: ConsoleDb, viewer: CurrentViewer, settings: Settings) -> Response:
    agent = service.get_agent(session, viewer.caller.scope, agent_id)
    info = service.state_of(agent, settings.heartbeat_seconds)
    unit = units.get(session, viewer.caller.scope, agent.unit_id)
    context = {
        "agent": agent,
        "state": info.state.value,
        "since": info.since,
        "unit": unit,
        "inventory": agent.inventory or {},
        "detections": detections.search(session, viewer.caller.scope, agent_id=agent.id, limit=RECENT_DETECTIONS),
        "detection_count": detections.count(session, viewer.caller.scope, agent_id=agent.id),
    }
    return render(request, "agents/detail.html", context, viewer=viewer)


@router.post("/agents/{agent_id}/revoke")
def revoke(request: Request, agent_id: str, session: ConsoleDb, viewer: WritingViewer) -> Response:
    service.revoke(session, viewer.caller.scope, viewer.caller.actor, agent_id)
    return redirect("/agents?done=revoked")
