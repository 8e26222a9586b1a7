"""``garrison agent``: enroll this machine with a server, run the agent, show its state, scan now.

Settings come from ``GARRISON_AGENT_*`` variables (see :class:`garrison.agent.settings.AgentSettings`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import click

from garrison import __version__
from garrison.agent import identity as identities
from garrison.agent import inventory, software, updater
from garrison.agent.client import AgentClient, Backoff, ClientError, EnrollAgain, enroll
from garrison.agent.daemon import Daemon, load_engine, open_outbox, record_scan, scan_paths
from garrison.agent.identity import Identity, IdentityError
from garrison.agent.outbox import Outbox, OutboxError
from garrison.agent.settings import AgentSettings
from garrison.cli.options import config_option
from garrison.cli.scan import EXIT_CLEAN, EXIT_ERROR, EXIT_FOUND
from garrison.protocol.enrollment import EnrollRequest

EXIT_ENROLL_AGAIN = 78  # EX_CONFIG: the systemd unit does not restart the agent on it


def _identity(settings: AgentSettings) -> Identity:
    try:
        found = identities.load(settings.identity_path)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None
    if found is None:
        raise click.ClickException(
            f"this machine is not enrolled (no {settings.identity_path}); run: "
            "garrison agent enroll --server URL --token TOKEN --fingerprint SHA256"
        )
    return found


def _client(settings: AgentSettings, identity: Identity) -> AgentClient:
    try:
        return AgentClient.for_identity(
            identity, timeout=settings.timeout, allow_http=settings.allow_http, proxy=settings.proxy
        )
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@config_option("GARRISON_AGENT_CONFIG", "/etc/garrison/agent.toml")
def agent() -> None:
    """The endpoint agent (settings from GARRISON_AGENT_* variables, e.g. GARRISON_AGENT_STATE_DIR, or a TOML
    file)."""


@agent.command("enroll")
@click.option("--server", "server_url", required=True, help="The server's URL, e.g. https://garrison.example:8443.")
@click.option(
    "--token", required=True, envvar="GARRISON_AGENT_TOKEN", help="Enrollment token from the console (or env)."
)
@click.option("--fingerprint", help="SHA-256 fingerprint of the server's certificate (garrison server fingerprint).")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM CA certificate(s) that issued the server's certificate, instead of --fingerprint.",
)
@click.option("--allow-http", is_flag=True, help="Accept an http:// server URL. Development only.")
def enroll_command(
    server_url: str, token: str, fingerprint: str | None, ca_file: Path | None, allow_http: bool
) -> None:
    """Enroll this machine: trade the token for the agent's own credential and pin the server's certificate."""
    settings = AgentSettings()
    allow_http = allow_http or settings.allow_http
    if fingerprint and ca_file:
        raise click.UsageError("give --fingerprint or --ca-file, not both")
    if not (fingerprint or ca_file or (allow_http and server_url.strip().lower().startswith("http://"))):
        raise click.UsageError(
            "give the server certificate's fingerprint (--fingerprint; the server prints it at start and with "
            "`garrison server fingerprint`) or the CA that issued it (--ca-file)"
        )
    try:
        previous = identities.load(settings.identity_path)
    except IdentityError:
        previous = None
    system, version = inventory.os_name_and_version()
    try:
        request = EnrollRequest(
            token=token.strip(),
            hostname=(socket.gethostname() or "unknown")[:255],
            os=system,
            os_version=version,
            agent_version=__version__,
        )
    except ValueError:
        raise click.UsageError("that is not an enrollment token; copy it again from the console") from None
    try:
        ca_pem = ca_file.read_text(encoding="ascii") if ca_file else None
        enrolled = enroll(
            server_url,
            request,
            pinned_fingerprint=fingerprint,
            ca_pem=ca_pem,
            allow_http=allow_http,
            timeout=settings.timeout,
            proxy=settings.proxy,
            backoff=Backoff(settings.backoff_base, settings.backoff_cap, settings.retry_after_cap),
            attempts=5,
        )
    except (ClientError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        identities.save(settings.identity_path, enrolled)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None
    if previous is not None and previous.agent_id != enrolled.agent_id:
        click.echo(f"replaced the previous enrollment (agent {previous.agent_id})")
    click.echo(f"enrolled as agent {enrolled.agent_id} in unit {enrolled.unit_id} of {enrolled.server_url}")
    click.echo(f"trust: {_trust(enrolled)}")
    click.echo(f"identity saved in {settings.identity_path}; start the agent with: garrison agent run")


def _trust(identity: Identity) -> str:
    if identity.trust == "pinned":
        return f"the server's certificate only, SHA-256 {identity.fingerprint}"
    if identity.trust == "ca":
        return "certificates issued by the CA given at enrollment, with host-name checks"
    return "none: plain HTTP (development only)"


@agent.command("run")
def run() -> None:
    """Run the agent until SIGTERM or SIGINT: heartbeats, reporting queued events, reconnecting by itself."""
    settings = AgentSettings()
    garrison_log = logging.getLogger("garrison")
    if garrison_log.getEffectiveLevel() > logging.INFO:
        garrison_log.setLevel(logging.INFO)
    # First: a staged agent version (on trial, or the last healthy one) replaces this process here.
    software.boot(settings.state_dir, __version__, os.environ)
    identity = _identity(settings)
    try:
        outbox = open_outbox(settings)
    except OutboxError as exc:
        raise click.ClickException(str(exc)) from None
    client = _client(settings, identity)
    daemon = Daemon(settings, identity, outbox, client)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    previous = {}
    for name in ("SIGTERM", "SIGINT"):
        if hasattr(signal, name):
            number = getattr(signal, name)
            previous[number] = signal.signal(number, _stop)
    restart: software.RestartRequested | None = None
    try:
        daemon.run(stop)
    except software.RestartRequested as exc:
        restart = exc
    except EnrollAgain as exc:
        click.echo(f"garrison agent: {exc}", err=True)
        sys.exit(EXIT_ENROLL_AGAIN)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        client.close()
        outbox.close()
    if restart is not None:
        # exec here rather than exit, so that an agent run by hand (no service manager) comes back too.
        logging.getLogger(__name__).info("restarting the agent: %s", restart)
        software.boot(settings.state_dir, __version__, os.environ, restart=True)
        sys.exit(software.RESTART_EXIT)  # boot could not exec: the service manager starts the agent again


@agent.command("status")
def status() -> None:
    """Show the enrollment, the events waiting to be sent and the last scan (no network)."""
    settings = AgentSettings()
    try:
        found = identities.load(settings.identity_path)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None
    if found is None:
        click.echo(f"not enrolled (no {settings.identity_path})")
    else:
        click.echo(f"agent:    {found.agent_id} (unit {found.unit_id})")
        click.echo(f"server:   {found.server_url}")
        click.echo(f"trust:    {_trust(found)}")
        click.echo(f"enrolled: {found.enrolled_at.isoformat(timespec='seconds')}")
    if settings.outbox_path.exists():
        try:
            with open_outbox(settings) as outbox:
                click.echo(f"queued:   {len(outbox)} event(s) waiting for the server ({outbox.dropped} ever dropped)")
        except OutboxError as exc:
            click.echo(f"queued:   unknown ({exc})")
    else:
        click.echo("queued:   0 event(s)")
    last = inventory.load_status(settings.status_path)
    if last.last_scan_at:
        click.echo(
            f"last scan: {last.last_scan_at.isoformat(timespec='seconds')}, {last.last_scan_files} file(s), "
            f"{last.last_scan_detections} detection(s), {last.last_scan_errors} error(s)"
        )
    else:
        click.echo("last scan: never")
    updates = updater.local_status(settings.updates_dir)
    if updates.release is not None:
        published = f", published {updates.published_at:%Y-%m-%d %H:%M} UTC" if updates.published_at else ""
        click.echo(f"signatures: release {updates.release}{published}")
    else:
        click.echo("signatures: no release from the server yet")
    if updates.last_error:
        click.echo(f"last update error: {updates.last_error}")
    if updates.next_check_at is not None:
        click.echo(f"next update check: {updates.next_check_at:%Y-%m-%d %H:%M} UTC")
    if found is None:
        sys.exit(1)


@agent.command("scan")
@click.argument("paths", nargs=-1, type=click.Path())
def scan(paths: tuple[str, ...]) -> None:
    """Scan PATHS now (default: GARRISON_AGENT_WATCH_PATHS) and report detections to the server.

    Detections are queued in the outbox first; when the server cannot be reached now, the running agent sends
    them later. Exit status: 0 clean, 1 something found, 2 errors.
    """
    settings = AgentSettings()
    targets = list(paths) or settings.watch_paths
    if not targets:
        raise click.UsageError("give the paths to scan (or set GARRISON_AGENT_WATCH_PATHS)")
    try:
        found = identities.load(settings.identity_path)
    except IdentityError as exc:
        click.echo(f"warning: {exc}", err=True)
        found = None
    engine, problem = load_engine(settings)
    if problem:
        click.echo(f"warning: {problem}", err=True)
    try:
        outbox = open_outbox(settings)
    except OutboxError as exc:
        raise click.ClickException(str(exc)) from None
    with outbox:
        summary = scan_paths(engine, targets, outbox, exclude=settings.exclude, jobs=settings.scan_jobs)
        record_scan(settings, summary)
        for path, obj, name in summary.detections:
            click.echo(f"{obj}: {name} FOUND" if obj != path else f"{path}: {name} FOUND")
        for problem_text in summary.problems:
            click.echo(f"error: {problem_text}", err=True)
        click.echo(
            f"scanned {summary.files} file(s): {summary.infected} infected, {summary.errors} error(s); "
            f"{len(summary.detections)} detection(s) queued"
        )
        if found is None:
            click.echo("not enrolled: detections wait in the outbox until this machine is enrolled")
        elif len(outbox):
            _report_now(settings, found, outbox)
    sys.exit(EXIT_FOUND if summary.infected else EXIT_ERROR if summary.errors or summary.problems else EXIT_CLEAN)


def _report_now(settings: AgentSettings, identity: Identity, outbox: Outbox) -> None:
    client = _client(settings, identity)
    with client:
        daemon = Daemon(settings, identity, outbox, client)
        try:
            sent = daemon.send_pending()
        except EnrollAgain as exc:
            click.echo(f"error: {exc}", err=True)
            return
        except (ClientError, OutboxError) as exc:
            click.echo(f"could not report now ({exc}); {len(outbox)} event(s) wait in the outbox for the agent")
            return
    click.echo(f"reported {sent} event(s) to {identity.server_url}")
