"""``garrison server federation``: this server reporting to a parent Garrison server (a district to its province).

Run on the child's host, with the child's settings (its data directory holds the link, the key and the status).
"""

from __future__ import annotations

import re
import ssl
from urllib.parse import urlsplit

import click

from garrison.server import tls
from garrison.server.db import Database, make_engine, migrate
from garrison.server.federation import child
from garrison.server.settings import ServerSettings


def _same_fingerprint(given: str, presented: str) -> bool:
    """``given`` written with or without colons, spaces or a ``sha256:`` prefix, in either case."""
    digits = re.sub(r"[\s:\-]", "", given.strip().lower().removeprefix("sha256:"))
    return digits == presented.replace(":", "").lower()


@click.group()
def federation() -> None:
    """Report to a parent Garrison server: its figures and submitted reports, pushed and signed."""


@federation.command("join")
@click.argument("parent_url")
@click.argument("token", envvar="GARRISON_FEDERATION_TOKEN")
@click.option("--fingerprint", help="SHA-256 fingerprint of the parent's certificate (shown with the join token).")
@click.option(
    "--trust-on-first-use",
    is_flag=True,
    help="Trust the certificate the parent presents now (its fingerprint is printed: compare it) instead.",
)
def join(parent_url: str, token: str, fingerprint: str | None, trust_on_first_use: bool) -> None:
    """Join the parent at PARENT_URL with the one-time TOKEN its administrators made; pins its certificate."""
    if bool(fingerprint) == trust_on_first_use:
        raise click.UsageError(
            "give the parent's certificate fingerprint (--fingerprint, shown on the parent's console with the join "
            "token, or `garrison server fingerprint` on the parent), or --trust-on-first-use"
        )
    settings = ServerSettings()
    try:
        url = child.check_parent_url(parent_url)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        # Read without verifying, only to compare with the fingerprint (or to pin it): nothing is sent yet.
        pem = ssl.get_server_certificate((host, port), timeout=30)
    except OSError as exc:
        raise click.ClickException(f"cannot read the certificate of {host}:{port}: {exc}") from None
    presented = tls.fingerprint(ssl.PEM_cert_to_DER_cert(pem))
    if fingerprint and not _same_fingerprint(fingerprint, presented):
        raise click.ClickException(
            f"the parent at {host}:{port} presented a certificate with SHA-256 fingerprint\n  {presented}\n"
            f"but the fingerprint given is\n  {fingerprint}\nNothing was sent: something else may answer at this "
            "address (a TLS-inspecting proxy, or an attacker)."
        )
    if trust_on_first_use:
        click.echo(f"trusting the parent's certificate as presented now: SHA-256 {presented}")
        click.echo("compare it with `garrison server fingerprint` on the parent")
    try:
        link = child.join(settings, url, token, pem, presented)
    except child.FederationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"this server reports to {link.parent_name or link.parent_url} as {link.name!r} (child {link.child_id})")
    click.echo(f"for the unit {link.unit_name!r} of the parent's tree")
    click.echo(f"link, pinned certificate and key saved in {child.directory(settings.data_dir)} (mode 0600)")
    if settings.federation_push_seconds > 0:
        click.echo(f"`garrison server run` pushes every {settings.federation_push_seconds:g} s")
    click.echo("push now with: garrison server federation push")


@federation.command("status")
def status() -> None:
    """The parent this server reports to, the last push and the last error."""
    settings = ServerSettings()
    try:
        link = child.link_of(settings.data_dir)
    except child.FederationError as exc:
        raise click.ClickException(str(exc)) from None
    if link is None:
        click.echo("this server does not report to a parent")
        return
    state = child.status_of(settings.data_dir)
    click.echo(f"parent:      {link.parent_name} {link.parent_url}")
    click.echo(f"as:          {link.name!r} (child {link.child_id}), unit {link.unit_name!r}")
    click.echo(f"certificate: SHA-256 {link.fingerprint}")
    click.echo(f"joined:      {link.joined_at}")
    click.echo(f"last push:   {state.last_push_at or 'never'}")
    if state.last_error:
        click.echo(f"last error:  {state.last_error_at} {state.last_error}")


@federation.command("push")
def push() -> None:
    """Push the figures and the reports not yet acknowledged to the parent now."""
    settings = ServerSettings()
    database = Database(make_engine(settings.resolved_database_url()))
    migrate(database.engine)
    try:
        pushed = child.push(database, settings)
    except child.FederationError as exc:
        raise click.ClickException(f"push failed: {exc}") from None
    finally:
        database.engine.dispose()
    click.echo(f"pushed to the parent ({pushed.requests} request(s), {pushed.reports} report(s) acknowledged)")


@federation.command("leave")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def leave(yes: bool) -> None:
    """Forget the parent (the link and the key). The parent lists this server until its administrators revoke it."""
    settings = ServerSettings()
    if not yes:
        click.confirm("Stop reporting to the parent and delete this server's federation key?", abort=True)
    if child.leave(settings.data_dir):
        click.echo("this server no longer reports to a parent; ask the parent's administrators to revoke it")
    else:
        click.echo("this server did not report to a parent")
