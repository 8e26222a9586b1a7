"""Console pages of the update channel: what the computers are offered and what they run.

``/updates`` shows the newest signature release and the one every computer is offered, the warnings of
``updates.service.notices`` (with what to do about each), how many computers have signatures older than 7 and 15
days (links to the filtered computers list), the rollout settings, the "publish now" button and the releases.
``/updates/releases/<n>`` shows one release (its sources and files, its history from the activity log, the
computers that run it, why a canary release is held) with the promote and pull-back buttons;
``/updates/agent-software`` the agent versions offered through the same channel.

Everyone logged in reads; only a province administrator changes anything (as in the REST API). Every change goes
through ``updates.releases``, ``updates.rollout`` and ``updates.service``, which check it and write the audit
log; their refusals are shown on the page in plain words, never as a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from babel.numbers import format_decimal
from fastapi import Form, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from garrison.server.agents.models import Agent
from garrison.server.audit.models import AuditEvent
from garrison.server.auth.models import User
from garrison.server.auth.scope import Scope
from garrison.server.console import i18n
from garrison.server.console.i18n import N_
from garrison.server.console.web import (
    AdminViewer,
    AdminWriter,
    ConsoleDb,
    CurrentViewer,
    Viewer,
    console_router,
    gettext,
    language,
    redirect,
    render,
)
from garrison.server.db import utcnow
from garrison.server.deps import Settings
from garrison.server.errors import BadRequest, Forbidden, NotFound, ServerError
from garrison.server.policies import service as policies
from garrison.server.policies.models import AgentGroup
from garrison.server.units import service as units
from garrison.server.updates import releases, rollout, service
from garrison.server.updates.api import get_repository
from garrison.server.updates.models import Release, Stage
from garrison.server.updates.repository import UpdateRepository
from garrison.server.wire import PathId

router = console_router()

#: Releases listed on the updates page.
RELEASES_SHOWN = 50
#: The reason recorded when an administrator publishes from the page without typing one.
DEFAULT_REASON = "published by an administrator from the console"

STAGE_LABELS = {
    Stage.CANARY.value: N_("Trial (canary group)"),
    Stage.GENERAL.value: N_("All computers"),
    Stage.PULLED.value: N_("Taken back"),
}
DONE = {
    "published": N_("A new release was published."),
    "unchanged": N_("Nothing changed since the latest release: nothing was published."),
    "rollout": N_("The rollout settings were saved."),
    "promoted": N_("The release is now offered to every computer."),
    "pulled": N_(
        "The release was taken back. A new release with the earlier content was published and is offered to "
        "every computer."
    ),
    "agent_added": N_("The agent version was added."),
    "agent_promoted": N_("The agent version is now offered to every computer."),
    "agent_pulled": N_("The agent version was taken back: computers are offered the previous one."),
}
# What a notice of ``service.notices`` means, and what to do about it (by its code; ``%(due)s`` is its date).
NOTICES: dict[str, tuple[str, str]] = {
    "root_expiring": (
        N_(
            "The root signature of the update channel expires on %(due)s. After that, computers can no longer "
            "check that updates are genuine, and stop updating."
        ),
        N_(
            "Sign a new root with the offline root key, on the server: %(command)s (the key is only needed for "
            "this, about once a year)."
        ),
    ),
    "targets_expired": (
        N_("The signed list of updates expired on %(due)s: computers cannot update."),
        N_(
            "The server renews it by itself. If this warning stays for more than an hour, check that the server "
            "is running normally and read its log, or ask the technical staff."
        ),
    ),
    "snapshot_expired": (
        N_("The signed list of updates expired on %(due)s: computers cannot update."),
        N_(
            "The server renews it by itself. If this warning stays for more than an hour, check that the server "
            "is running normally and read its log, or ask the technical staff."
        ),
    ),
    "timestamp_expired": (
        N_("The signed list of updates expired on %(due)s: computers cannot update."),
        N_(
            "The server renews it by itself. If this warning stays for more than an hour, check that the server "
            "is running normally and read its log, or ask the technical staff."
        ),
    ),
    "root_key_online": (
        N_(
            "The root key of the update channel is still on the server (%(path)s). Someone who breaks into the "
            "server could use it to send fake updates to every computer."
        ),
        N_(
            "Copy the file to a USB stick or a CD kept locked away, check the copy, then delete the file from the "
            "server. It is only needed to renew the root signature."
        ),
    ),
    "feed_stale": (
        N_(
            "No new signatures for more than 7 days (the latest release is of %(due)s). The computers do not "
            "recognise the newest threats."
        ),
        N_(
            "Check the signature sources: a download may fail, or nobody uploaded a new version. A source that "
            "fails shows why on its line."
        ),
    ),
}
ROTATE_COMMAND = "garrison server updates rotate --root-key FILE"


def refusal_text(error: ServerError, _: i18n.Gettext) -> str:
    if isinstance(error, Forbidden) or not error.message:
        return i18n.explain_error(error, _)
    return i18n.explain(error.message, _)


def problems_in_words(text: str, _: i18n.Gettext) -> list[str]:
    """A hold reason (``"; "``-joined canary problems) as sentences of the reader's language."""
    return [i18n.explain(part.strip(), _) for part in text.split("; ") if part.strip()]


@dataclass(frozen=True, slots=True)
class UpdateWarning:
    """A notice of the update channel, in plain words."""

    code: str
    what: str
    todo: str
    detail: str  # the service's own words, for the technical staff
    link: str  # where to act, when the console can help ("" otherwise)


def warnings(session: Session, repo: UpdateRepository, _: i18n.Gettext) -> list[UpdateWarning]:
    """``service.notices`` in the reader's language, each with what to do."""
    found = []
    for notice in service.notices(session, repo):
        values = {
            "due": i18n.moment(notice.due),
            "path": str(repo.key_path("root")),
            "command": ROTATE_COMMAND,
        }
        if notice.code in NOTICES:
            what, todo = NOTICES[notice.code]
            found.append(
                UpdateWarning(
                    notice.code,
                    _(what) % values,
                    _(todo) % values,
                    notice.message,
                    "/signatures" if notice.code == "feed_stale" else "",
                )
            )
        else:
            found.append(UpdateWarning(notice.code, notice.message, "", "", ""))
    return found


def size_text(size: int, language: str) -> str:
    """A file size in the reader's way of writing numbers: ``980 B``, ``12 KB``, ``1,5 MB``."""
    if size < 1024:
        return f"{i18n.number(size, language)} B"
    if size < 1024 * 1024:
        return f"{i18n.number(-(-size // 1024), language)} KB"
    return f"{format_decimal(round(size / (1024 * 1024), 1), locale=language)} MB"


def age_days(moment: datetime | None, now: datetime) -> int | None:
    """Whole days since ``moment`` (None when there is none)."""
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return max(0, (now - aware).days)


def page_helpers(request: Request) -> dict[str, Any]:
    lang = language(request)
    now = utcnow()
    return {
        "size": lambda value: size_text(value, lang),
        "age_days": lambda moment: age_days(moment, now),
        "stage_labels": STAGE_LABELS,
    }


def running(session: Session, scope: Scope) -> dict[int, int]:
    """How many enrolled computers of ``scope`` run each release (by the release they reported)."""
    query = (
        select(Agent.signature_release, func.count())
        .where(Agent.revoked.is_(False), Agent.signature_release.is_not(None))
        .group_by(Agent.signature_release)
    )
    rows = session.execute(units.within(query, scope, Agent.unit_id))
    return {number: count for number, count in rows if number is not None}


def user_names(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {u.id: u.display_name or u.username for u in session.scalars(select(User).where(User.id.in_(wanted)))}


def _updates_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    error: str = "",
    done: str = "",
    values: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    _ = gettext(request)
    repo = get_repository(request)
    scope = viewer.caller.scope
    offer = rollout.current_offer(session)
    settings_row = releases.rollout_settings(session)
    groups = list(policies.list_groups(session, scope)) if viewer.is_admin else []
    canary_group = session.get(AgentGroup, settings_row.canary_group_id) if settings_row.canary_group_id else None
    listed = releases.listing(session, RELEASES_SHOWN)
    context = {
        "offer": offer,
        "newest": releases.get(session, offer.newest) if offer.newest is not None else None,
        "general": releases.get(session, offer.general) if offer.general is not None else None,
        "warnings": warnings(session, repo, _),
        "outdated": service.outdated_counts(session, scope),
        "rollout": settings_row,
        "rollout_values": values
        or {
            "canary_group_id": str(settings_row.canary_group_id or ""),
            "canary_hours": _hours(settings_row.canary_hours),
            "auto_promote": "1" if settings_row.auto_promote else "",
        },
        "canary_hours_text": _hours(settings_row.canary_hours),
        "rollout_open": values is not None,
        "canary_group": canary_group,
        "groups": groups,
        "releases": listed,
        "hold_reasons": {r.number: problems_in_words(r.hold_reason, _) for r in listed if r.hold_reason},
        "reasons": {r.number: i18n.explain(r.reason, _) for r in listed},
        "running": running(session, scope),
        "pending": service.pending_generation(session),
        "notice": _(DONE[done]) if done in DONE else "",
        "error": error,
        "tab": "signatures",
        **page_helpers(request),
    }
    return render(request, "updates/index.html", context, viewer=viewer, status_code=status_code)


def _hours(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@router.get("/updates")
def updates_page(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    return _updates_page(request, session, viewer, done=done)


@router.post("/updates/publish")
def publish(
    request: Request,
    session: ConsoleDb,
    viewer: AdminWriter,
    settings: Settings,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    _ = gettext(request)
    try:
        release = service.publish_from_sources(
            session, get_repository(request), settings, viewer.caller.actor, reason.strip() or DEFAULT_REASON
        )
    except ServerError as refused:
        session.rollback()
        return _updates_page(request, session, viewer, error=refusal_text(refused, _), status_code=refused.status)
    if release is None:
        return redirect("/updates?done=unchanged")
    return redirect(f"/updates/releases/{release.number}?done=published")


@router.post("/updates/rollout")
def configure(
    request: Request,
    session: ConsoleDb,
    viewer: AdminWriter,
    canary_group_id: Annotated[str, Form(max_length=20)] = "",
    canary_hours: Annotated[str, Form(max_length=20)] = "",
    auto_promote: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    _ = gettext(request)
    values = {"canary_group_id": canary_group_id, "canary_hours": canary_hours, "auto_promote": auto_promote}
    try:
        group = canary_group_id.strip()
        if group and not group.isdigit():
            raise BadRequest("the form is not valid")
        try:
            hours = float(canary_hours.strip().replace(",", "."))
        except ValueError:
            raise BadRequest("the canary time must be between 0 and 720 hours") from None
        rollout.configure(
            session,
            viewer.caller.actor,
            canary_group_id=int(group) if group else None,
            canary_hours=hours,
            auto_promote=auto_promote == "1",
        )
    except ServerError as refused:
        session.rollback()
        return _updates_page(
            request, session, viewer, error=refusal_text(refused, _), values=values, status_code=refused.status
        )
    return redirect("/updates?done=rollout#rollout")


# -- one release ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a release's history, from the activity log."""

    at: datetime
    action: str
    who: str
    automatic: bool
    details: dict[str, Any]


def history(session: Session, number: int) -> list[Step]:
    """What happened to release ``number``: published, promoted (by whom, or automatically), taken back."""
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.target_type == "release", AuditEvent.target_id == str(number))
        .order_by(AuditEvent.id)
    )
    return [
        Step(e.at, e.action, e.actor_name, bool((e.details or {}).get("automatic")), e.details or {}) for e in events
    ]


def _release(session: Session, number: int) -> Release:
    try:
        return releases.get(session, number)
    except NotFound:
        raise NotFound("no such page") from None


def _release_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    number: int,
    *,
    template: str = "updates/release.html",
    error: str = "",
    done: str = "",
    status_code: int = 200,
) -> Response:
    _ = gettext(request)
    release = _release(session, number)
    settings_row = releases.rollout_settings(session)
    offer = rollout.current_offer(session)
    problems: list[str] = []
    if release.stage == Stage.CANARY:
        problems = problems_in_words(
            "; ".join(rollout.canary_problems(session, release, settings_row.canary_group_id)), _
        )
    restored_by = session.scalars(select(Release.number).where(Release.restores == number)).all()
    pulled_back_by = None
    if release.stage == Stage.PULLED:
        pulled_back_by = session.scalars(
            select(Release.number)
            .where(Release.restores.is_not(None), Release.number > number)
            .order_by(Release.number)
            .limit(1)
        ).first()
    context = {
        "release": release,
        "history": history(session, number),
        "people": user_names(session, {release.created_by, release.promoted_by, release.pulled_by}),
        "computers": running(session, viewer.caller.scope).get(number, 0),
        "problems": problems,
        "hold_reasons": problems_in_words(release.hold_reason, _),
        "reason": i18n.explain(release.reason, _),
        "rollout": settings_row,
        "canary_group": session.get(AgentGroup, settings_row.canary_group_id) if settings_row.canary_group_id else None,
        "canary_hours_text": _hours(settings_row.canary_hours),
        "is_newest": offer.newest == number,
        "is_general": offer.general == number,
        "restored_by": list(restored_by),
        "pulled_back_by": pulled_back_by,
        "previous": session.scalars(
            select(Release.number)
            .where(Release.number < number, Release.stage != Stage.PULLED)
            .order_by(Release.number.desc())
            .limit(1)
        ).first(),
        "notice": _(DONE[done]) if done in DONE else "",
        "error": error,
        "tab": "signatures",
        **page_helpers(request),
    }
    return render(request, template, context, viewer=viewer, status_code=status_code)


@router.get("/updates/releases/{number}")
def release_page(
    request: Request, number: PathId, session: ConsoleDb, viewer: CurrentViewer, done: str = ""
) -> Response:
    return _release_page(request, session, viewer, number, done=done)


@router.get("/updates/releases/{number}/promote")
def promote_confirm(request: Request, number: PathId, session: ConsoleDb, viewer: AdminViewer) -> Response:
    return _release_page(request, session, viewer, number, template="updates/promote.html")


@router.post("/updates/releases/{number}/promote")
def promote(request: Request, number: PathId, session: ConsoleDb, viewer: AdminWriter) -> Response:
    _ = gettext(request)
    _release(session, number)
    try:
        rollout.promote(session, viewer.caller.actor, number)
    except ServerError as refused:
        session.rollback()
        return _release_page(
            request, session, viewer, number, error=refusal_text(refused, _), status_code=refused.status
        )
    return redirect(f"/updates/releases/{number}?done=promoted")


@router.get("/updates/releases/{number}/pull")
def pull_confirm(request: Request, number: PathId, session: ConsoleDb, viewer: AdminViewer) -> Response:
    return _release_page(request, session, viewer, number, template="updates/pull.html")


@router.post("/updates/releases/{number}/pull")
def pull(request: Request, number: PathId, session: ConsoleDb, viewer: AdminWriter) -> Response:
    _ = gettext(request)
    _release(session, number)
    try:
        restored = rollout.pull_back(session, get_repository(request), viewer.caller.actor, number)
    except ServerError as refused:
        session.rollback()
        return _release_page(
            request, session, viewer, number, error=refusal_text(refused, _), status_code=refused.status
        )
    return redirect(f"/updates/releases/{restored.number}?done=pulled")
