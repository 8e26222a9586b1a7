"""``garrison db``: inspect and validate signature databases."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from garrison.cli.settings import CliSettings
from garrison.engine import Database, DatabaseError, LoadReport, load_database


def open_database(
    paths: tuple[Path, ...], *, strict: bool, cache: bool, pua: bool = False, allow_empty: bool = False
) -> Database:
    """Load databases for a command, or exit with status 2 and a one-line reason."""
    settings = CliSettings()
    if not paths and not (settings.db_dir.is_dir() and any(settings.db_dir.iterdir())):
        if not allow_empty:
            click.echo(f"garrison: no signature database in {settings.db_dir}; use --db PATH", err=True)
            sys.exit(2)
        click.echo(
            f"warning: no signature database in {settings.db_dir} (set GARRISON_DB_DIR or use --db);"
            " only the built-in EICAR test-file check applies",
            err=True,
        )
        return Database.empty()
    try:
        return load_database(
            list(paths) or [settings.db_dir],
            strict=strict,
            pua=pua,
            cache_dir=settings.cache_dir / "db" if cache else None,
        )
    except DatabaseError as exc:
        click.echo(f"garrison: cannot load the signature database: {exc}", err=True)
        sys.exit(2)


def _print_warnings(report: LoadReport, limit: int | None) -> None:
    shown = report.warnings if limit is None else report.warnings[:limit]
    for warning in shown:
        click.echo(f"warning: {warning}", err=True)
    if limit is not None and len(report.warnings) > limit:
        click.echo(f"warning: ... and {len(report.warnings) - limit} more (see garrison db check)", err=True)


@click.group()
def db() -> None:
    """Inspect and validate signature databases (ClamAV formats and YARA)."""


@db.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(paths: tuple[Path, ...], as_json: bool) -> None:
    """Show what a database holds: signatures per type, and each file's version and date.

    PATHS are database files or directories; the default is the configured database directory.
    """
    report = open_database(paths, strict=False, cache=False).report
    if as_json:
        payload = {
            "signatures": report.signatures,
            "counts": dict(report.counts),
            "sources": [asdict(source) for source in report.sources],
            "warnings": report.warnings,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    for source in report.sources:
        details = [f"{source.signatures} signatures"]
        if source.version is not None:
            details.append(f"version {source.version}")
        if source.build_time:
            details.append(f"built {source.build_time}")
        if source.functionality_level is not None:
            details.append(f"flevel {source.functionality_level}")
        if source.signed is not None:
            details.append("signature verified" if source.signed else "unsigned")
        click.echo(f"{source.name} ({source.kind}): " + ", ".join(details))
    click.echo("")
    labels = {
        "hash": "Hash signatures",
        "body": "Body signatures",
        "logical": "Logical signatures",
        "yara": "YARA rules",
        "allow": "Allow-list entries",
        "ignore": "Ignore-list entries",
        "disabled": "Signatures switched off by ignore lists",
        "gated": "Signatures for other engine levels",
        "skipped": "Skipped (malformed or unsupported)",
    }
    for key, label in labels.items():
        click.echo(f"{label + ':':36} {report.counts.get(key, 0)}")
    click.echo(f"{'Total signatures:':36} {report.signatures}")
    _print_warnings(report, limit=20)


@db.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Stop at the first malformed signature.")
def check(paths: tuple[Path, ...], strict: bool) -> None:
    """Validate databases without scanning: every malformed signature is listed with its file and line.

    Exits 0 when everything loads cleanly, 1 when some signatures were skipped, 2 when the database is unusable.
    """
    report = open_database(paths, strict=strict, cache=False).report
    _print_warnings(report, limit=None)
    click.echo(
        f"{report.signatures} signatures loaded, {len(report.warnings)} problem(s)",
        err=bool(report.warnings),
    )
    sys.exit(1 if report.warnings else 0)
