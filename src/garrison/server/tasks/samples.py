"""Collected samples: files agents upload for a collect task, kept encrypted at rest, handed to people packed.

Each sample is encrypted with AES-256-GCM under the server's sample key (``data_dir/sample.key``, made on first
use, mode 0600) and stored under a random name, so the data directory never holds live malware that another
scanner would find or a person could run by mistake. People download a sample as a 7-Zip archive encrypted with
the password ``infected`` — the convention malware analysts and their tools expect — so that it crosses mail
gateways and desktop antivirus without being removed on the way.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from pathlib import Path, PurePath

import py7zr
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.atomicfile import write_atomic
from garrison.protocol.tasks import TaskKind
from garrison.server.agents.models import Agent
from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, Conflict, NotFound
from garrison.server.tasks import service as tasks
from garrison.server.tasks.models import Sample
from garrison.server.units import service as units

ARCHIVE_PASSWORD = "infected"  # noqa: S105 - a published convention, not a secret
NONCE = 12
KEY_NAME = "sample.key"


class SampleStore:
    """Encrypted sample blobs in ``directory``."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "samples"
        self._key_path = data_dir / KEY_NAME

    def _key(self) -> bytes:
        try:
            key = self._key_path.read_bytes()
        except FileNotFoundError:
            key = AESGCM.generate_key(bit_length=256)
            self._key_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                # O_EXCL: two server processes starting on the same data directory agree on one key.
                fd = os.open(self._key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return self._key_path.read_bytes()
            with os.fdopen(fd, "wb") as out:
                out.write(key)
                out.flush()
                os.fsync(out.fileno())
        if len(key) != 32:
            raise RuntimeError(f"{self._key_path} is not a sample key (32 bytes)")
        return key

    def put(self, data: bytes) -> str:
        name = secrets.token_hex(16)
        nonce = os.urandom(NONCE)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.directory / name, nonce + AESGCM(self._key()).encrypt(nonce, data, name.encode()))
        return name

    def get(self, name: str) -> bytes:
        blob = (self.directory / name).read_bytes()
        return AESGCM(self._key()).decrypt(blob[:NONCE], blob[NONCE:], name.encode())

    def remove(self, name: str) -> None:
        (self.directory / name).unlink(missing_ok=True)


def receive(
    session: Session, store: SampleStore, agent: Agent, task_id: int, path: str, sha256: str, data: bytes, limit: int
) -> Sample:
    """Keep the file an agent uploads for its open collect task (once: a repeated upload returns the first)."""
    task, _run = tasks.run_for(session, agent, task_id)
    if task.kind is not TaskKind.COLLECT:
        raise BadRequest(f"task {task_id} does not collect a file")
    if len(data) > limit:
        raise BadRequest(f"the file is larger than the {limit} bytes a sample may have")
    if hashlib.sha256(data).hexdigest() != sha256.lower():
        raise BadRequest("the upload does not match its SHA-256: it was damaged on the way; send it again")
    existing = session.scalar(select(Sample).where(Sample.task_id == task.id, Sample.agent_id == agent.id))
    if existing is not None:
        if existing.sha256 != sha256.lower():
            raise Conflict("a different file was already collected for this task")
        return existing
    sample = Sample(
        task_id=task.id,
        agent_id=agent.id,
        unit_id=agent.unit_id,
        path=path[:4096],
        size=len(data),
        sha256=sha256.lower(),
        blob=store.put(data),
        received_at=utcnow(),
    )
    session.add(sample)
    session.flush()
    return sample


def get(session: Session, scope: Scope, sample_id: int) -> Sample:
    sample = session.scalar(units.within(select(Sample), scope, Sample.unit_id).where(Sample.id == sample_id))
    if sample is None:
        raise NotFound(f"no sample {sample_id}")
    return sample


def of_task(session: Session, scope: Scope, task_id: int) -> list[Sample]:
    query = units.within(select(Sample), scope, Sample.unit_id).where(Sample.task_id == task_id)
    return list(session.scalars(query.order_by(Sample.id)))


def packed(session: Session, scope: Scope, actor: Actor, store: SampleStore, sample_id: int) -> tuple[str, bytes]:
    """The sample as an encrypted 7-Zip archive (password ``infected``) and its file name; the download is
    audited, since it hands malware to a person."""
    sample = get(session, scope, sample_id)
    data = store.get(sample.blob)
    inner = PurePath(sample.path.replace("\\", "/")).name or "sample"
    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w", password=ARCHIVE_PASSWORD, header_encryption=True) as archive:
        archive.writestr(data, f"{sample.sha256}_{inner}.bin")
    record(session, actor, "sample.download", "sample", sample.id, unit_id=sample.unit_id, sha256=sample.sha256)
    return f"sample-{sample.id}-{sample.sha256[:12]}.7z", buffer.getvalue()
