"""Signature and agent updates through the server's TUF repository.

The heartbeat names the release this computer should run; nothing is trusted from that. Every check refreshes
the signed metadata with python-tuf's client (which refuses expired, badly signed, rolled-back or frozen
metadata), installs a release only if the verified targets list it, takes the delta from the installed release
when there is one (else the whole release), checks the result's digest against the signed one, compiles it
like a scan would, and only then swaps it in: ``releases/<n>/`` is written whole, then ``current.json`` is
replaced atomically. The previous release stays on disk as the last good one.

Any failure leaves the installed release in use, is reported in the next heartbeat, and makes the next try wait
longer (exponential backoff with jitter, kept across restarts): never a tight retry loop.

Layout under ``settings.updates_dir``::

    metadata/          trusted TUF metadata (root.json, timestamp.json, snapshot.json, targets.json)
    releases/<n>/      the files of an installed release
    current.json       {"release", "content_sha256", "published_at", "installed_at"}
    state.json         {"failures", "next_check_at", "last_check_at", "last_error", "last_error_at", ...}
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater

from garrison.agent.client import AgentClient, ClientError, EnrollAgain, RequestRejected, ServerBusy
from garrison.agent.settings import AgentSettings
from garrison.atomicfile import write_atomic
from garrison.engine import DatabaseError, load_database
from garrison.engine.signatures import bundle
from garrison.protocol.updates import (
    METADATA_PATH,
    TARGETS_PATH,
    TargetInfo,
    UpdateOrder,
    UpdateStatus,
    agent_target,
    delta_target,
    full_target,
)

log = logging.getLogger(__name__)

#: Bounds on what an update may unpack to.
MAX_CONTENT_BYTES = 2 * 1024 * 1024 * 1024


class UpdateFailed(Exception):
    """An update did not happen; the message says why in words for the console."""


class Installed(BaseModel):
    release: int
    content_sha256: str
    published_at: datetime | None = None
    installed_at: datetime


class UpdateState(BaseModel):
    failures: int = 0
    next_check_at: datetime | None = None
    last_check_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    failed_release: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one check did."""

    installed: int | None = None
    software: str | None = None  # a staged agent version to restart into
    via: str = ""  # "delta" or "full"
    bytes_downloaded: int = 0


class _Fetcher(FetcherInterface):
    """TUF downloads through the agent's own client (its pinned TLS and credential)."""

    def __init__(self, client: AgentClient, counter: list[int]) -> None:
        self._client = client
        self._base = str(client.url).rstrip("/")
        self._counter = counter

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = url.removeprefix(self._base)
        try:
            for chunk in self._client.download(path):
                self._counter[0] += len(chunk)
                yield chunk
        except RequestRejected as exc:
            raise tuf_errors.DownloadHTTPError(str(exc), exc.status) from exc
        except EnrollAgain:
            raise
        except ClientError as exc:
            raise tuf_errors.DownloadError(str(exc)) from exc


def _now() -> datetime:
    return datetime.now(UTC)


class SignatureUpdater:
    """Keeps ``settings.updates_dir`` at the release the server names, safely. Build one per agent.

    Args:
        settings: the agent's settings (paths, backoff).
        client: the agent's HTTP client.
        running_version: the agent software version running now.
        stage_software: stages verified agent wheel bytes (``(data, version) -> None``); None: agent software
            updates are not taken.
        software_refused: why a version is not to be downloaded again (it failed before), or None.
        clock: the wall clock; ``rng``: jitter.
    """

    def __init__(
        self,
        settings: AgentSettings,
        client: AgentClient,
        *,
        running_version: str = "",
        stage_software: Callable[[bytes, str], object] | None = None,
        software_refused: Callable[[str], str | None] = lambda version: None,
        clock: Callable[[], datetime] = _now,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.running_version = running_version
        self._stage_software = stage_software
        self._software_refused_by = software_refused
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.root = settings.updates_dir
        self.metadata_dir = self.root / "metadata"
        self.releases_dir = self.root / "releases"
        self.software_error = ""
        self._software_refused: set[str] = set()

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def installed(self) -> Installed | None:
        return _read_model(self.root / "current.json", Installed)

    @property
    def state(self) -> UpdateState:
        return _read_model(self.root / "state.json", UpdateState) or UpdateState()

    def _save_state(self, state: UpdateState) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.root / "state.json", state.model_dump_json().encode(), 0o600)

    def release_dir(self) -> Path | None:
        """Where the installed release's files are (None before the first update)."""
        installed = self.installed
        if installed is None:
            return None
        directory = self.releases_dir / str(installed.release)
        return directory if directory.is_dir() else None

    def status(self) -> UpdateStatus:
        status = local_status(self.root)
        status.software_error = self.software_error[:500]
        return status

    def due(self, order: UpdateOrder | None, *, forced: bool = False) -> bool:
        """Whether to check now: told to (a task), the interval passed, or the server names something newer — but
        never before a failed check's backoff ends, unless told to."""
        if forced:
            return True
        if order is None or (order.release is None and order.agent_version is None):
            return False  # the server has published nothing yet
        state = self.state
        if state.next_check_at is None or self._clock() >= _aware(state.next_check_at):
            return True
        return state.failures == 0 and self._wants(order)

    def _wants(self, order: UpdateOrder | None) -> bool:
        if order is None:
            return False
        installed = self.installed
        newer = order.release is not None and (installed is None or order.release > installed.release)
        software = (
            order.agent_version is not None
            and order.agent_version != self.running_version
            and self._stage_software is not None
            and self._software_ok(order.agent_version)
        )
        return newer or software

    # -- the check --------------------------------------------------------------------------------------------

    def check(self, order: UpdateOrder | None) -> Outcome:
        """Refresh the metadata and install what ``order`` names, if newer. Raises :class:`UpdateFailed` (after
        recording it and scheduling the next try) or :class:`EnrollAgain`."""
        state = self.state
        now = self._clock()
        state.last_check_at = now
        counter = [0]
        try:
            outcome = self._check(order, counter)
        except EnrollAgain:
            raise
        except UpdateFailed as exc:
            self._failed(state, str(exc), order, now)
            raise
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError, DatabaseError, OSError) as exc:
            message = _describe(exc)
            self._failed(state, message, order, now)
            raise UpdateFailed(message) from exc
        state.failures = 0
        state.last_error = ""
        state.last_error_at = None
        state.failed_release = None
        state.next_check_at = now + timedelta(seconds=self.settings.update_seconds * self._rng.uniform(0.9, 1.1))
        self._save_state(state)
        return Outcome(outcome.installed, outcome.software, outcome.via, counter[0])

    def _failed(self, state: UpdateState, message: str, order: UpdateOrder | None, now: datetime) -> None:
        state.failures += 1
        state.last_error = message[:500]
        state.last_error_at = now
        state.failed_release = order.release if order else None
        ceiling = min(self.settings.update_backoff_cap, self.settings.update_backoff_base * 2 ** (state.failures - 1))
        wait = max(ceiling * self._rng.uniform(0.5, 1.0), self.settings.heartbeat_seconds)
        state.next_check_at = now + timedelta(seconds=wait)
        self._save_state(state)
        log.warning("update failed (%s); next try in %.0f s", message, wait)

    def _check(self, order: UpdateOrder | None, counter: list[int]) -> Outcome:
        tuf = self._tuf(counter)
        tuf.refresh()
        installed_release: int | None = None
        via = ""
        installed = self.installed
        if order is not None and order.release is not None and (installed is None or order.release > installed.release):
            installed_release, via = self._install(tuf, order.release, installed)
        software = None
        wanted = order.agent_version if order is not None else None
        if wanted and wanted != self.running_version and self._software_ok(wanted):
            software = self._software(tuf, wanted)
        return Outcome(installed_release, software, via)

    def _tuf(self, counter: list[int]) -> Updater:
        self.metadata_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        bootstrap = None
        if not (self.metadata_dir / "root.json").exists():
            # Trust on first use, over the channel the agent enrolled on (pinned TLS, its own credential): the
            # first root version. Every later root must be signed by the keys of the one before.
            bootstrap = b"".join(self.client.download(METADATA_PATH + "1.root.json"))
        base = str(self.client.url).rstrip("/")
        return Updater(
            str(self.metadata_dir),
            base + METADATA_PATH,
            target_base_url=base + TARGETS_PATH,
            fetcher=_Fetcher(self.client, counter),
            bootstrap=bootstrap,
        )

    def _software_ok(self, version: str) -> bool:
        if version in self._software_refused:
            return False
        reason = self._software_refused_by(version)
        if reason:
            self.software_error = f"agent {version} is not taken again: {reason}"
            return False
        return True

    def _target(self, tuf: Updater, path: str) -> tuple[TargetFile, TargetInfo]:
        target = tuf.get_targetinfo(path)
        if target is None:
            raise UpdateFailed(f"{path} is not in the signed repository")
        try:
            info = TargetInfo.model_validate(target.custom.get("garrison", {}))
        except ValidationError as exc:
            raise UpdateFailed(f"{path} has no valid Garrison description in the signed metadata") from exc
        return target, info

    def _download(self, tuf: Updater, target: TargetFile) -> bytes:
        with tempfile.TemporaryDirectory(dir=self.root, prefix="download-") as tmp:
            path = tuf.download_target(target, str(Path(tmp) / "target"))
            return Path(path).read_bytes()

    def _install(self, tuf: Updater, release: int, installed: Installed | None) -> tuple[int, str]:
        full, info = self._target(tuf, full_target(release))
        if info.kind != "signatures" or info.release != release or info.content_sha256 is None:
            raise UpdateFailed(f"the signed description of release {release} does not match it")
        files: dict[str, bytes] | None = None
        via = "full"
        current_dir = self.release_dir()
        if installed is not None and current_dir is not None:
            delta = tuf.get_targetinfo(delta_target(installed.release, release))
            if delta is not None and delta.length < full.length:
                try:
                    old = _read_dir(current_dir)
                    files = bundle.apply_delta(old, self._download(tuf, delta))
                    if bundle.digest(files) != info.content_sha256:
                        raise DatabaseError("the result of the delta does not match the signed digest")
                    via = "delta"
                except (DatabaseError, tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError) as exc:
                    log.warning("delta %d to %d failed (%s); taking the whole release", installed.release, release, exc)
                    files = None
        if files is None:
            data = bundle.decompress(self._download(tuf, full), MAX_CONTENT_BYTES)
            files = bundle.unpack(data)
            if bundle.digest(files) != info.content_sha256:
                raise UpdateFailed(f"release {release} does not match its signed digest; it was not installed")
        self.install(release, files, info)
        log.info("signature release %d installed (%s)", release, via)
        return release, via

    def install(self, release: int, files: dict[str, bytes], info: TargetInfo) -> None:
        """Write a verified release (``files`` is emptied once written), compile it where the engine will load it,
        and make it current (the previous one stays as the last good one). Raises :class:`UpdateFailed` when it
        does not compile."""
        self.releases_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.releases_dir / f"{release}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        for name, data in files.items():
            (partial / name).write_bytes(data)
        files.clear()  # written: free them before compiling, the step that needs the memory
        final = self.releases_dir / str(release)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        try:
            # Compile it as a scan will, with the same paths, so the compiled form left in the cache is what the
            # engine's reload finds (the cache is keyed by the files' paths: compiling the partial directory would
            # make the reload compile it all again).
            load_database(database_paths(self.settings, final), cache_dir=self.settings.state_dir / "cache")
        except DatabaseError as exc:
            shutil.rmtree(final, ignore_errors=True)
            raise UpdateFailed(f"release {release} does not compile, the previous one stays in use: {exc}") from exc
        previous = self.installed
        current = Installed(
            release=release,
            content_sha256=info.content_sha256 or "",
            published_at=info.published_at,
            installed_at=self._clock(),
        )
        write_atomic(self.root / "current.json", current.model_dump_json().encode(), 0o600)
        keep = {str(release)} | ({str(previous.release)} if previous else set())
        for entry in self.releases_dir.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)

    def _software(self, tuf: Updater, version: str) -> str | None:
        if self._stage_software is None:
            return None
        target, info = self._target(tuf, agent_target(version))
        if info.kind != "agent" or info.version != version:
            raise UpdateFailed(f"the signed description of agent {version} does not match it")
        wheel = self._download(tuf, target)  # a failed or tampered download is an update failure: backed off
        try:
            self._stage_software(wheel, version)
        except Exception as exc:  # the software module's own refusals (a version that failed before, a bad wheel)
            self.software_error = f"agent {version} was not installed: {exc}"
            self._software_refused.add(version)  # not again until the server offers another version
            log.warning("%s", self.software_error)
            return None
        self.software_error = ""
        return version


def local_status(updates_dir: Path) -> UpdateStatus:
    """What the files under ``updates_dir`` say about the installed release and the last check (no network)."""
    installed = _read_model(updates_dir / "current.json", Installed)
    state = _read_model(updates_dir / "state.json", UpdateState) or UpdateState()
    return UpdateStatus(
        release=installed.release if installed else None,
        published_at=installed.published_at if installed else None,
        installed_at=installed.installed_at if installed else None,
        last_check_at=state.last_check_at,
        last_error=state.last_error[:500],
        last_error_at=state.last_error_at,
        failed_release=state.failed_release,
        next_check_at=state.next_check_at,
    )


def database_paths(settings: AgentSettings, release_dir: Path | None) -> list[Path]:
    """What the engine loads: a release's files, and the local databases in ``settings.signature_dir``."""
    local = settings.signature_dir
    extra = [local] if local.is_dir() and any(local.iterdir()) else []
    return [release_dir, *extra] if release_dir is not None else extra


def release_dirs(updates_dir: Path) -> list[Path]:
    """The installed releases' directories, the current one first, then the last good one."""
    current = _read_model(updates_dir / "current.json", Installed)
    releases = updates_dir / "releases"
    if not releases.is_dir():
        return []
    found = sorted(
        (entry for entry in releases.iterdir() if entry.is_dir() and entry.name.isdigit()),
        key=lambda entry: int(entry.name),
        reverse=True,
    )
    if current is not None:
        found.sort(key=lambda entry: entry.name != str(current.release))
    return found


def _read_dir(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


M = TypeVar("M", bound=BaseModel)


def _read_model(path: Path, model: type[M]) -> M | None:
    try:
        return model.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError, json.JSONDecodeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_TUF_WORDS: dict[type[Exception], str] = {
    tuf_errors.ExpiredMetadataError: "the update metadata has expired (the server must re-sign it)",
    tuf_errors.BadVersionNumberError: "the server offered older update metadata than this agent trusts (rollback)",
    tuf_errors.EqualVersionNumberError: "the server offered changed update metadata under the same version",
    tuf_errors.UnsignedMetadataError: "the update metadata is not signed by the trusted keys",
    tuf_errors.LengthOrHashMismatchError: "a downloaded update does not match its signed length or hash",
    tuf_errors.DownloadLengthMismatchError: "a download was longer than its signed length",
    tuf_errors.SlowRetrievalError: "the download was too slow",
    tuf_errors.DownloadHTTPError: "the server refused an update download",
    tuf_errors.DownloadError: "the update download failed",
    tuf_errors.RepositoryError: "the update metadata is not valid",
}


def _describe(exc: Exception) -> str:
    for kind, words in _TUF_WORDS.items():
        if isinstance(exc, kind):
            cause = exc.__cause__
            detail = str(cause) if isinstance(cause, (ClientError, ServerBusy)) else str(exc)
            return f"{words}: {detail}"[:500] if detail else words
    if isinstance(exc, DatabaseError):
        return f"the update is not a valid signature set: {exc}"[:500]
    return f"the update could not be written: {exc}"[:500]


def as_dict(outcome: Outcome) -> dict[str, Any]:
    return {"installed": outcome.installed, "via": outcome.via, "bytes": outcome.bytes_downloaded}
