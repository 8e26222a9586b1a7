"""``garrison server``: run the central server, migrate its database, create the first administrator."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from garrison.cli.federation import federation
from garrison.cli.options import config_option
from garrison.cli.updates import updates
from garrison.server import tls
from garrison.server.audit.service import Actor
from garrison.server.auth import service as auth
from garrison.server.auth.models import Role
from garrison.server.auth.scope import Scope
from garrison.server.db import Database, make_engine, migrate
from garrison.server.errors import ServerError
from garrison.server.operations.logging import LogFormat, configure_logging
from garrison.server.settings import ServerSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

#: How ``garrison server run --workers N`` tells its worker processes the log format (they are started afresh).
_LOG_FORMAT_VARIABLE = "GARRISON_RUN_LOG_FORMAT"


def _database(settings: ServerSettings) -> Database:
    return Database(make_engine(settings.resolved_database_url()))


@click.group()
@config_option("GARRISON_CONFIG", "/etc/garrison/server.toml")
def server() -> None:
    """The central management server (settings from GARRISON_* variables, e.g. GARRISON_DATABASE_URL, or a TOML
    file)."""


server.add_command(updates)
server.add_command(federation)


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


def _tls_files(settings: ServerSettings, names: tuple[str, ...]) -> tls.TlsFiles:
    files = tls.ensure_self_signed(settings.data_dir, tls.subject_names(settings.host, names))
    if files.created:
        click.echo(f"created a self-signed TLS certificate: {files.cert} (key {files.key}, mode 0600)")
    return files


_TLS_NAME = click.option(
    "--tls-name",
    multiple=True,
    envvar="GARRISON_TLS_NAMES",
    help="Host name or address agents use to reach this server, for the self-signed certificate when it is made "
    "(repeatable; GARRISON_TLS_NAMES, space-separated).",
)


@server.command("fingerprint")
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="Certificate to show [default: the self-signed one].",
)
@_TLS_NAME
def fingerprint_command(tls_cert: str | None, tls_name: tuple[str, ...]) -> None:
    """Print the SHA-256 fingerprint agents pin (garrison agent enroll --fingerprint ...)."""
    settings = ServerSettings()
    path = Path(tls_cert) if tls_cert else _tls_files(settings, tls_name).cert
    click.echo(tls.certificate_fingerprint(path))


@server.command("run")
@click.option("--host", default=None, help="Address to listen on [default: GARRISON_HOST or 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: GARRISON_PORT or 8443].")
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM certificate [default: a self-signed one made once in the data directory].",
)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key of --tls-cert.")
@_TLS_NAME
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Serve plain HTTP: only for development, or behind a reverse proxy that terminates TLS.",
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "text"]),
    default="json",
    show_default=True,
    help="Logs on standard error: one JSON object per line, or plain text.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes sharing the port (uvicorn workers); each has its own connection pool and load "
    "shedding budget. Several cores: about one per core.",
)
def run(
    host: str | None,
    port: int | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_name: tuple[str, ...],
    insecure_http: bool,
    log_format: LogFormat,
    workers: int,
) -> None:
    """Start the server over HTTPS. With no users yet, prints a one-time link that creates the first administrator."""
    import uvicorn  # noqa: PLC0415 - only this command needs the ASGI server

    from garrison.server.app import create_app  # noqa: PLC0415

    configure_logging(log_format)
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if insecure_http and tls_cert:
        raise click.UsageError("--insecure-http serves no certificate; leave out --tls-cert/--tls-key")
    settings = ServerSettings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    cert_file = key_file = None
    if insecure_http:
        click.echo(
            "WARNING: serving plain HTTP (--insecure-http). Agents refuse http:// servers: put a reverse proxy that "
            "terminates TLS in front of this port, or use this only for development.",
            err=True,
        )
    elif tls_cert and tls_key:
        cert_file, key_file = tls_cert, tls_key
    else:
        files = _tls_files(settings, tls_name)
        cert_file, key_file = str(files.cert), str(files.key)
    database = _database(settings)
    if workers > 1:
        migrate(database.engine)  # once here; the workers start on a current schema
    else:
        app = create_app(settings, database)
    scheme = "http" if insecure_http else "https"
    url = f"{scheme}://{_url_host(settings.host)}:{settings.port}"
    if cert_file:
        pin = tls.certificate_fingerprint(Path(cert_file))
        click.echo(f"TLS certificate {cert_file}, SHA-256 fingerprint:\n  {pin}")
        click.echo(f"Agents enroll with: garrison agent enroll --server {url} --token TOKEN --fingerprint {pin}")
    with database.session() as session:
        token = auth.issue_setup_token(session)
    if token:
        click.echo(f"No administrator yet. Create one at: {url}/setup?token={token}")
        click.echo("(or run: garrison server create-admin --username NAME)")
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ssl_certfile": cert_file,
        "ssl_keyfile": key_file,
        "log_level": "info",
        "log_config": None,  # keep the handlers configure_logging installed
        "access_log": False,  # the server writes its own access log, without query strings or headers
    }
    if workers == 1:
        uvicorn.run(app, **options)
        return
    # Workers are fresh processes that import the application: they read the same GARRISON_* settings.
    database.engine.dispose()
    os.environ[_LOG_FORMAT_VARIABLE] = log_format
    uvicorn.run("garrison.cli.server:worker_app", factory=True, workers=workers, **options)


def worker_app() -> FastAPI:
    """The application in one worker process of ``garrison server run --workers N`` (migrated by the parent)."""
    from garrison.server.app import create_app  # noqa: PLC0415

    log_format: LogFormat = "text" if os.environ.get(_LOG_FORMAT_VARIABLE) == "text" else "json"
    configure_logging(log_format)
    return create_app(ServerSettings(), run_migrations=False)


def _url_host(host: str) -> str:
    """The listening address as agents and browsers write it (this machine's name when listening everywhere)."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        host = socket.getfqdn()
    return f"[{host}]" if ":" in host else host
