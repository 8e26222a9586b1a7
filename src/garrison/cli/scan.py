"""``garrison scan``: scan files and directories, with output and exit codes like clamscan's.

Exit codes: 0 nothing found, 1 something found, 2 errors (and nothing found).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from garrison import __version__
from garrison.cli.db import open_database
from garrison.cli.options import SIZE, human_bytes
from garrison.engine import Database, Engine, ObjectResult, ScanLimits, ScanResult, Status
from garrison.engine.pool import scan_files
from garrison.engine.results import printable
from garrison.engine.walker import Found, walk

EXIT_CLEAN, EXIT_FOUND, EXIT_ERROR = 0, 1, 2
_DEFAULTS = ScanLimits()


@dataclass
class Totals:
    files: int = 0
    infected: int = 0
    errors: int = 0
    incomplete: int = 0
    scanned_bytes: int = 0
    read_bytes: int = 0
    detections: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)
    start_date: datetime = field(default_factory=datetime.now)

    def add(self, result: ScanResult) -> None:
        self.files += 1
        self.scanned_bytes += result.scanned_bytes
        self.read_bytes += result.objects[0].size if result.objects else 0
        self.detections += len(result.detections)
        if result.status is Status.INFECTED:
            self.infected += 1
        elif result.status is Status.ERROR:
            self.errors += 1
        elif result.status is Status.INCOMPLETE:
            self.incomplete += 1

    @property
    def exit_code(self) -> int:
        return EXIT_FOUND if self.infected else EXIT_ERROR if self.errors else EXIT_CLEAN


def _error_result(path: str, reason: str) -> ScanResult:
    obj = ObjectResult((printable(path),), "CL_TYPE_BINARY_DATA", 0, Status.ERROR, reason=reason)
    return ScanResult(printable(path), Status.ERROR, (obj,))


class TextReport:
    """clamscan-like lines: ``path: Name FOUND``, ``path: OK``, ``path: reason ERROR``."""

    def __init__(self, out: TextIO, *, infected_only: bool, quiet: bool) -> None:
        self.out = out
        self.infected_only = infected_only
        self.quiet = quiet

    def result(self, result: ScanResult) -> None:
        if result.status is Status.INFECTED:
            for obj, detection in result.detections:
                self.out.write(f"{obj.display_name}: {detection.name} FOUND\n")
        elif result.status is Status.ERROR:
            self.out.write(f"{result.path}: {result.reason or 'cannot scan'} ERROR\n")
        elif not (self.infected_only or self.quiet):
            if result.status is Status.INCOMPLETE:
                self.out.write(f"{result.path}: OK (not fully scanned: {result.reason})\n")
            else:
                self.out.write(f"{result.path}: OK\n")

    def summary(self, totals: Totals, database: Database) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - totals.started
        minutes, seconds = divmod(int(elapsed), 60)
        lines = [
            "",
            "----------- SCAN SUMMARY -----------",
            f"Known signatures: {database.report.signatures}",
            f"Engine version: garrison {__version__}",
            f"Scanned files: {totals.files}",
            f"Infected files: {totals.infected}",
            f"Not fully scanned: {totals.incomplete}",
            f"Total errors: {totals.errors}",
            f"Data scanned: {human_bytes(totals.scanned_bytes)}",
            f"Data read: {human_bytes(totals.read_bytes)}",
            f"Time: {elapsed:.3f} sec ({minutes} m {seconds} s)",
            f"Start Date: {totals.start_date:%Y:%m:%d %H:%M:%S}",
            f"End Date:   {datetime.now():%Y:%m:%d %H:%M:%S}",
        ]
        self.out.write("\n".join(lines) + "\n")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--db",
    "db_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Signature database file or directory (repeatable). Default: the configured directory.",
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Scanning processes [default: all cores].")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip paths or names matching GLOB (repeatable).")
@click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links found inside directories.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with every result and a summary.")
@click.option("--jsonl", is_flag=True, help="Print one JSON object per scanned file, as each finishes.")
@click.option("--members", is_flag=True, help="In JSON output, list clean members of archives too.")
@click.option("-q", "--quiet", is_flag=True, help="Print only detections and errors; no summary, no progress.")
@click.option("-i", "--infected", is_flag=True, help="Print only infected files (and errors).")
@click.option("--strict", is_flag=True, help="Refuse a database with any malformed signature.")
@click.option("--no-cache", is_flag=True, help="Do not use or write the compiled database cache.")
@click.option(
    "--max-filesize",
    type=SIZE,
    default=_DEFAULTS.max_file_size,
    show_default="100M",
    help="Skip objects larger than this.",
)
@click.option(
    "--max-scansize",
    type=SIZE,
    default=_DEFAULTS.max_scan_size,
    show_default="400M",
    help="Most data scanned per file, members included.",
)
@click.option(
    "--max-recursion",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_depth,
    show_default=True,
    help="Deepest container nesting.",
)
@click.option(
    "--max-files",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_members,
    show_default=True,
    help="Most members per file.",
)
@click.option(
    "--max-ratio",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_ratio,
    show_default=True,
    help="Largest compression ratio of a member (0: no limit).",
)
@click.option(
    "--max-scantime",
    type=click.FloatRange(min=0.001),
    default=_DEFAULTS.max_scan_time,
    show_default=True,
    help="Seconds per file.",
)
@click.option("--alert-exceeds-max", is_flag=True, help="Report files that hit a limit as Heuristics.Limits.Exceeded.")
@click.option(
    "--alert-encrypted", is_flag=True, help="Report encrypted archives and documents as Heuristics.Encrypted."
)
def scan(
    paths: tuple[str, ...],
    db_paths: tuple[Path, ...],
    jobs: int | None,
    exclude: tuple[str, ...],
    follow_symlinks: bool,
    as_json: bool,
    jsonl: bool,
    members: bool,
    quiet: bool,
    infected: bool,
    strict: bool,
    no_cache: bool,
    max_filesize: int,
    max_scansize: int,
    max_recursion: int,
    max_files: int,
    max_ratio: int,
    max_scantime: float,
    alert_exceeds_max: bool,
    alert_encrypted: bool,
) -> None:
    """Scan files and directories (recursively) for malware.

    PATH may be "-" to scan standard input. Prints "path: Name FOUND" for each detection and a summary;
    exits 0 when nothing was found, 1 when something was found, 2 on errors.
    """
    if as_json and jsonl:
        raise click.UsageError("choose one of --json and --jsonl")
    limits = ScanLimits(
        max_file_size=max_filesize,
        max_scan_size=max_scansize,
        max_depth=max_recursion,
        max_members=max_files,
        max_ratio=max_ratio,
        max_scan_time=max_scantime,
        alert_exceeds_max=alert_exceeds_max,
        alert_encrypted=alert_encrypted,
    )
    database = open_database(db_paths, strict=strict, cache=not no_cache, allow_empty=True)
    if database.report.warnings and not quiet:
        click.echo(
            f"warning: {len(database.report.warnings)} signature(s) skipped; run 'garrison db check' for the list",
            err=True,
        )
    engine = Engine(database, limits, clean_members=members)
    totals = Totals()
    out = sys.stdout
    text = TextReport(out, infected_only=infected, quiet=quiet) if not (as_json or jsonl) else None
    collected: list[dict[str, object]] = []

    def emit(result: ScanResult) -> None:
        totals.add(result)
        if text is not None:
            text.result(result)
        elif jsonl:
            out.write(json.dumps(result.to_dict(members=members), ensure_ascii=False) + "\n")
        else:
            collected.append(result.to_dict(members=members))

    found: list[Found] = []
    for path in paths:
        if path == "-":
            emit(engine.scan_bytes(sys.stdin.buffer.read(limits.max_file_size + 1), "stdin"))
            continue
        for entry in walk([path], follow_symlinks=follow_symlinks, exclude=exclude):
            if isinstance(entry, Found):
                found.append(entry)
            elif entry.error:
                emit(_error_result(entry.path, entry.reason))
            else:
                totals.skipped += 1

    show_progress = not quiet and sys.stderr.isatty() and bool(found)
    for result in _scan_with_progress(engine, found, jobs, show_progress):
        emit(result)

    if as_json:
        json.dump({"results": collected, "summary": _summary(totals, database)}, out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif text is not None:
        text.summary(totals, database)
    out.flush()
    sys.exit(totals.exit_code)


def _scan_with_progress(engine: Engine, found: list[Found], jobs: int | None, show: bool) -> Iterator[ScanResult]:
    results = scan_files(engine, [(f.path, f.size) for f in found], jobs)
    if not show:
        yield from results
        return
    total_bytes = sum(f.size for f in found)
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]Scanning"),
        BarColumn(),
        TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
        TextColumn("{task.fields[data]}"),
        TextColumn("[red]{task.fields[found]} found"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("scan", total=total_bytes, files=0, total_files=len(found), data="", found=0)
        done_bytes = found_count = 0
        for done_files, result in enumerate(results, 1):
            done_bytes += result.objects[0].size if result.objects else 0
            found_count += result.status is Status.INFECTED
            progress.update(task, completed=done_bytes, files=done_files, data=human_bytes(done_bytes),
                            found=found_count)  # fmt: skip
            yield result


def _summary(totals: Totals, database: Database) -> dict[str, object]:
    return {
        "known_signatures": database.report.signatures,
        "engine_version": __version__,
        "files": totals.files,
        "infected": totals.infected,
        "incomplete": totals.incomplete,
        "errors": totals.errors,
        "skipped": totals.skipped,
        "scanned_bytes": totals.scanned_bytes,
        "read_bytes": totals.read_bytes,
        "seconds": round(time.monotonic() - totals.started, 3),
        "exit_code": totals.exit_code,
    }
