"""``garrison server``: run the central server, migrate its database, create the first administrator."""

from __future__ import annotations

import sys

import click

from garrison.server.audit.service import Actor
from garrison.server.auth import service as auth
from garrison.server.auth.models import Role
from garrison.server.auth.scope import Scope
from garrison.server.db import Database, make_engine, migrate
from garrison.server.errors import ServerError
from garrison.server.settings import ServerSettings


def _database(settings: ServerSettings) -> Database:
    return Database(make_engine(settings.resolved_database_url()))


@click.group()
def server() -> None:
    """The central management server (settings from GARRISON_* variables, e.g. GARRISON_DATABASE_URL)."""


@server.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date (the server also does this when it starts)."""
    settings = ServerSettings()
    migrate(_database(settings).engine)
    click.echo(f"database is up to date: {settings.resolved_database_url().split('@')[-1]}")


@server.command("create-admin")
@click.option("--username", required=True, help="Login name of the new administrator.")
@click.option("--display-name", default="", help="Name shown in the console.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
def create_admin(username: str, display_name: str, password_stdin: bool) -> None:
    """Create an administrator (there is no default account)."""
    settings = ServerSettings()
    database = _database(settings)
    migrate(database.engine)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with database.session() as session:
            actor = Actor(None, "command line")
            user = auth.create_user(
                session, Scope.whole_tree(), actor, auth.NewUser(username, display_name, password, Role.ADMIN)
            )
    except ServerError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"administrator {user.username!r} created")


@server.command("run")
@click.option("--host", default=None, help="Address to listen on [default: GARRISON_HOST or 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: GARRISON_PORT or 8443].")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate: serve HTTPS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key of the certificate.")
def run(host: str | None, port: int | None, tls_cert: str | None, tls_key: str | None) -> None:
    """Start the server. With no users yet, prints a one-time link that creates the first administrator."""
    import uvicorn  # noqa: PLC0415 - only this command needs the ASGI server

    from garrison.server.app import create_app  # noqa: PLC0415

    settings = ServerSettings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    database = _database(settings)
    app = create_app(settings, database)
    scheme = "https" if tls_cert else "http"
    with database.session() as session:
        token = auth.issue_setup_token(session)
    if token:
        click.echo(
            f"No administrator yet. Create one at: {scheme}://{settings.host}:{settings.port}/setup?token={token}"
        )
        click.echo("(or run: garrison server create-admin --username NAME)")
    uvicorn.run(
        app, host=settings.host, port=settings.port, ssl_certfile=tls_cert, ssl_keyfile=tls_key, log_level="info"
    )
