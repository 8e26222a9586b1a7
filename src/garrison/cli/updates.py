"""``garrison server updates``: the signed update repository — its keys, their rotation, releases by hand."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import click

from garrison.server.audit.service import Actor
from garrison.server.db import Database, make_engine, migrate
from garrison.server.errors import ServerError
from garrison.server.settings import ServerSettings
from garrison.server.updates import rollout, service
from garrison.server.updates.repository import RepositoryError, load_signer

ACTOR = Actor(None, "command line")


def _open() -> tuple[ServerSettings, Database]:
    settings = ServerSettings()
    database = Database(make_engine(settings.resolved_database_url()))
    migrate(database.engine)
    return settings, database


@click.group()
def updates() -> None:
    """The signed (TUF) update repository agents verify: keys, rotation, releases."""


@updates.command("init")
@click.option(
    "--move-root-key",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Move the new root key here (offline media) instead of leaving it in the data directory.",
)
def init(move_root_key: Path | None) -> None:
    """Create the repository's keys and first metadata (the server also does this when it first starts)."""
    settings, database = _open()
    repo = service.repository_for(settings)
    with database.session() as session:
        created = repo.initialise(session)
        session.commit()
    click.echo("update repository created" if created else "the update repository exists already")
    if move_root_key is not None:
        source = repo.key_path("root")
        if not source.exists():
            raise click.ClickException(f"the root key is not in {source} (moved already?)")
        if move_root_key.exists():
            raise click.ClickException(f"{move_root_key} exists; choose a new file")
        move_root_key.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, move_root_key)
        move_root_key.chmod(0o600)
        source.unlink()
        click.echo(f"root key moved to {move_root_key}; keep it offline, it is needed to rotate keys")


@updates.command("status")
def status() -> None:
    """Metadata versions and expiry, where the root key is, the newest releases, and what needs doing."""
    settings, database = _open()
    repo = service.repository_for(settings)
    with database.session() as session:
        now = datetime.now(UTC)
        for role, expires in sorted(repo.expiries(session).items()):
            row = repo.latest(session, role)
            days = (expires - now).total_seconds() / 86400
            click.echo(
                f"{role:<10} version {row.version if row else '?':<6} expires {expires:%Y-%m-%d %H:%M} UTC "
                f"({days:.1f} days)"
            )
        offer = rollout.current_offer(session)
        click.echo(f"newest release: {offer.newest or '-'}; offered to everyone: {offer.general or '-'}")
        click.echo(f"root key: {'ON THIS SERVER (move it offline)' if repo.root_key_online() else 'offline'}")
        for notice in service.notices(session, repo, now):
            click.echo(f"warning: {notice.message}")


@updates.command("rotate")
@click.option(
    "--root-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The current root key (from offline storage).",
)
@click.option(
    "--new-root-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also replace the root key: a new one is written here (or this existing key is used).",
)
@click.option("--keep-online-keys", is_flag=True, help="Keep the targets, snapshot and timestamp keys.")
def rotate(root_key: Path, new_root_key: Path | None, keep_online_keys: bool) -> None:
    """Sign a new root: new online keys (and a new root key with --new-root-key), and a new expiry date.

    Agents follow because each new root is signed by the keys of the one before; run it before the root expires
    (the console warns 30 days ahead) and whenever a key may have leaked."""
    settings, database = _open()
    repo = service.repository_for(settings)
    try:
        signer = load_signer(root_key)
        with database.session() as session:
            version = repo.rotate(session, signer, new_root_key=new_root_key, online=not keep_online_keys)
            session.commit()
    except RepositoryError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"root version {version} signed; expires in {settings.tuf_root_days:.0f} days")


@updates.command("publish")
@click.option("--reason", default="published from the command line", show_default=True)
def publish(reason: str) -> None:
    """Publish a release from the signature sources now (nothing happens when nothing changed)."""
    settings, database = _open()
    repo = service.repository_for(settings)
    try:
        with database.session() as session:
            release = service.publish_from_sources(session, repo, settings, ACTOR, reason)
            session.commit()
    except ServerError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"release {release.number} published ({release.stage.value})" if release else "nothing changed")


@updates.command("add-agent")
@click.argument("wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", "version", required=True, help="The agent version the wheel holds.")
@click.option("--notes", default="", help="What changed, for the console.")
def add_agent(wheel: Path, version: str, notes: str) -> None:
    """Offer an agent software release (a pure-Python wheel) to the agents, canaries first."""
    settings, database = _open()
    repo = service.repository_for(settings)
    try:
        with database.session() as session:
            row = rollout.add_agent_release(session, repo, ACTOR, version, wheel.read_bytes(), notes=notes)
            session.commit()
            click.echo(f"agent {row.version} offered ({row.stage.value})")
    except ServerError as exc:
        raise click.ClickException(exc.message) from None
