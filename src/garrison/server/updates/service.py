"""The update channel's moving parts in one place: publishing from the signature sources, the periodic
maintenance (watched directory, upstream feeds, re-signing, promotion), and what the console warns about."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from garrison.server.agents.models import Agent
from garrison.server.audit.service import SYSTEM, Actor
from garrison.server.auth.scope import Scope
from garrison.server.db import Database, utcnow
from garrison.server.settings import ServerSettings
from garrison.server.signatures import feeds
from garrison.server.signatures import service as signatures
from garrison.server.signatures.importers import ContainerKeys, Refused
from garrison.server.signatures.models import SignatureSource, SourceKind
from garrison.server.signatures.store import SourceStore
from garrison.server.units import service as units
from garrison.server.updates import releases, rollout
from garrison.server.updates.models import Release, Stage
from garrison.server.updates.repository import Lifetimes, UpdateRepository

logger = logging.getLogger(__name__)

#: Signatures older than these are counted on the dashboard and in the national report.
OUTDATED_DAYS = (7, 15)


def repository_for(settings: ServerSettings) -> UpdateRepository:
    lifetimes = Lifetimes(
        root=timedelta(days=settings.tuf_root_days),
        targets=timedelta(days=settings.tuf_targets_days),
        snapshot=timedelta(days=settings.tuf_snapshot_days),
        timestamp=timedelta(hours=settings.tuf_timestamp_hours),
    )
    return UpdateRepository(settings.data_dir, lifetimes)


def release_policy(settings: ServerSettings) -> releases.ReleasePolicy:
    return releases.ReleasePolicy(keep=settings.updates_keep_releases)


def publish_from_sources(
    session: Session, repo: UpdateRepository, settings: ServerSettings, actor: Actor, reason: str
) -> Release | None:
    """A new release from the enabled sources and local signatures, if their content changed."""
    store = SourceStore(settings.data_dir)
    return releases.publish(
        session,
        repo,
        signatures.content(session, store),
        actor=actor,
        reason=reason,
        sources=signatures.summary(session),
        generation=signatures.generation(session),
        policy=release_policy(settings),
    )


def pending_generation(session: Session) -> bool:
    """Whether the sources changed since the latest release was built."""
    newest = releases.latest(session)
    return newest is None or newest.generation != signatures.generation(session)


@dataclass
class MaintenanceReport:
    imported: int = 0
    fetched: int = 0
    published: int | None = None
    resigned: list[str] = field(default_factory=list)
    promoted: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def maintain(database: Database, repo: UpdateRepository, settings: ServerSettings) -> MaintenanceReport:
    """One pass of the update channel's housekeeping; each step in its own transaction, failures logged and
    reported without stopping the others."""
    report = MaintenanceReport()
    store = SourceStore(settings.data_dir)

    def step(name: str, work: object) -> None:
        try:
            with database.session() as session:
                work(session)  # type: ignore[operator]
                session.commit()
        except Exception as exc:  # housekeeping must go on with the next step
            logger.exception("update maintenance: %s failed", name)
            report.errors.append(f"{name}: {exc}")

    def init(session: Session) -> None:
        repo.initialise(session)

    def watched(session: Session) -> None:
        directory = settings.updates_watch_dir or signatures.inbox(settings.data_dir)
        if directory.is_dir():
            repo.lock(session)  # one server process at a time moves the files
            keys = ContainerKeys(allow_unsigned=settings.updates_accept_cud)
            report.imported = len(feeds.import_watched(session, store, directory, keys=keys))

    def upstream(session: Session) -> None:
        report.fetched = fetch_due_upstream(session, store, settings)

    def publish(session: Session) -> None:
        repo.lock(session)
        if pending_generation(session):
            release = publish_from_sources(session, repo, settings, SYSTEM, "the signature sources changed")
            report.published = release.number if release else None

    def resign(session: Session) -> None:
        report.resigned = repo.refresh(session)

    def promote(session: Session) -> None:
        report.promoted = rollout.auto_promote(session, SYSTEM)

    def collect(session: Session) -> None:
        repo.collect_garbage(session)

    for name, work in (
        ("initialise", init),
        ("watched directory", watched),
        ("upstream feeds", upstream),
        ("publish", publish),
        ("re-sign", resign),
        ("promote", promote),
        ("clean up", collect),
    ):
        step(name, work)
    return report


def fetch_due_upstream(
    session: Session,
    store: SourceStore,
    settings: ServerSettings,
    get: Callable[[str], bytes] = feeds.default_get,
    now: datetime | None = None,
) -> int:
    """Fetch the upstream sources not tried for ``updates_upstream_hours``; returns how many brought a change.
    A failed download is recorded on its source (shown in the console) and tried again at the next interval."""
    now = now or utcnow()
    due = now - timedelta(hours=settings.updates_upstream_hours)
    sources = session.scalars(
        select(SignatureSource).where(
            SignatureSource.kind == SourceKind.UPSTREAM,
            SignatureSource.enabled.is_(True),
            or_(SignatureSource.fetched_at.is_(None), SignatureSource.fetched_at < due),
        )
    ).all()
    changed = 0
    for source in sources:
        source.fetched_at = now
        try:
            changed += bool(feeds.fetch_upstream(session, store, source, get).changed)
        except Refused as exc:
            logger.warning("upstream source %s: %s", source.name, exc.message)
    return changed


# -- what the console shows -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    """Something an admin must act on, with the words to show."""

    code: str
    message: str
    due: datetime | None = None


def notices(session: Session, repo: UpdateRepository, now: datetime | None = None) -> list[Notice]:
    """Expiring metadata, an online root key, a stale feed: what the console shows on the updates page and the
    dashboard."""
    now = now or utcnow()
    found: list[Notice] = []
    expiries = repo.expiries(session)
    root = expiries.get("root")
    if root is not None and root - now < repo.lifetimes.root_warn:
        found.append(
            Notice(
                "root_expiring",
                "the update repository's root metadata expires soon; sign a new one with the offline root key "
                "(garrison server updates rotate --root-key FILE)",
                root,
            )
        )
    for role in ("targets", "snapshot", "timestamp"):
        moment = expiries.get(role)
        if moment is not None and moment < now:
            found.append(Notice(f"{role}_expired", f"the {role} metadata expired: agents cannot update", moment))
    if repo.initialised(session) and repo.root_key_online():
        found.append(
            Notice(
                "root_key_online",
                f"the root key is still on the server ({repo.key_path('root')}); move it to offline storage",
            )
        )
    newest = session.scalars(select(func.max(Release.created_at)).where(Release.stage != Stage.PULLED)).one()
    if newest is not None and now - _aware(newest) > timedelta(days=OUTDATED_DAYS[0]):
        found.append(
            Notice(
                "feed_stale",
                "no new signatures for more than 7 days: check the signature sources",
                _aware(newest),
            )
        )
    return found


def outdated_counts(session: Session, scope: Scope, now: datetime | None = None) -> dict[int, int]:
    """How many enrolled computers in ``scope`` have signatures older than 7 and than 15 days (or none reported)."""
    now = now or utcnow()
    counts = {}
    for days in OUTDATED_DAYS:
        query = select(func.count()).select_from(Agent).where(Agent.revoked.is_(False), outdated(days, now))
        counts[days] = session.scalars(units.within(query, scope, Agent.unit_id)).one()
    return counts


def outdated(days: int, now: datetime | None = None) -> ColumnElement[bool]:
    """The SQL condition: this computer's signatures are older than ``days`` (or it never said how old).

    The age is that of the signatures it runs (the publication of its release), as the national report counts
    it: a computer on the newest release is out of date too when the province published nothing for that long,
    which the updates page reports as a stale feed."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    return or_(Agent.signature_date.is_(None), Agent.signature_date < cutoff)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
