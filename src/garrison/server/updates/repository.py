"""The server's TUF repository: keys, signing, and the metadata agents verify before installing anything.

Four roles, one ed25519 key each (python-tuf and securesystemslib do the signing and the formats):

- **root** says which keys the other roles use. Its key signs only at initialisation and rotation, so it can be
  kept offline: ``garrison server updates init`` writes it to ``data_dir/update-keys/root.pem`` and tells the
  operator to move it; rotation (``rotate-keys``) takes it back from wherever it is kept.
- **targets** lists the files (signature releases, deltas, agent wheels) with their lengths, hashes and what
  Garrison says about them (:class:`garrison.protocol.updates.TargetInfo`);
- **snapshot** pins the targets version and **timestamp** pins the snapshot: both are re-signed on a short
  expiry by the server, so an agent told nothing new for a day (a freeze attack, a mirror holding back fixes)
  notices.

Metadata versions live in the database (``tuf_metadata``); every change happens under a lock (an advisory lock on
PostgreSQL, the write lock on SQLite) so server processes never sign two different versions with one number.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, Signer
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from garrison.atomicfile import write_atomic
from garrison.server.db import transaction_lock, utcnow
from garrison.server.errors import BadRequest, NotFound
from garrison.server.updates.models import TufMetadata, UpdateTarget

logger = logging.getLogger(__name__)

ROLES = ("root", "targets", "snapshot", "timestamp")
ONLINE_ROLES = ("targets", "snapshot", "timestamp")
#: The advisory lock serialising repository changes between server processes ("gtuf").
REPOSITORY_LOCK = 0x67747566
_SERIALIZER = JSONSerializer(compact=True)


class RepositoryError(BadRequest):
    """The repository cannot do what was asked (a missing key, a wrong root key)."""


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long each role's metadata stays valid. Snapshot and timestamp are re-signed when half their life is
    gone, targets when a third is left; root cannot be re-signed without its (offline) key, so the console warns
    ``root_warn`` before it expires."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)
    root_warn: timedelta = timedelta(days=30)

    def of(self, role: str) -> timedelta:
        lifetime: timedelta = getattr(self, role)
        return lifetime


def load_signer(path: Path) -> CryptoSigner:
    """A signer from a PEM private key file (PKCS#8, unencrypted, as :func:`generate_key` writes)."""
    try:
        private = load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise RepositoryError(f"no key at {path}") from None
    except (ValueError, TypeError) as exc:
        raise RepositoryError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    return CryptoSigner(private)


def generate_key(path: Path) -> CryptoSigner:
    """A new ed25519 key, saved to ``path`` (mode 0600; an existing file is kept and loaded instead)."""
    signer = CryptoSigner.generate_ed25519()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        # O_EXCL: two server processes initialising at once agree on one key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_signer(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(signer.private_bytes)
    return signer


class UpdateRepository:
    """The repository of one server (all its processes share ``data_dir`` and the database).

    Args:
        data_dir: the server's data directory; keys in ``update-keys/``, target files in ``updates/targets/``.
        lifetimes: metadata expiry.
    """

    def __init__(self, data_dir: Path, lifetimes: Lifetimes | None = None) -> None:
        self.key_dir = data_dir / "update-keys"
        self.targets_dir = data_dir / "updates" / "targets"
        self.lifetimes = lifetimes or Lifetimes()

    # -- keys -------------------------------------------------------------------------------------------------

    def key_path(self, role: str) -> Path:
        return self.key_dir / f"{role}.pem"

    def signer(self, role: str) -> CryptoSigner:
        return load_signer(self.key_path(role))

    def root_key_online(self) -> bool:
        """Whether the root key is still in the data directory (it should be moved offline)."""
        return self.key_path("root").exists()

    # -- reading ----------------------------------------------------------------------------------------------

    def latest(self, session: Session, role: str) -> TufMetadata | None:
        return session.scalars(
            select(TufMetadata).where(TufMetadata.role == role).order_by(TufMetadata.version.desc()).limit(1)
        ).first()

    def initialised(self, session: Session) -> bool:
        return self.latest(session, "root") is not None

    def metadata_file(self, session: Session, name: str) -> bytes:
        """The body served as ``name``: ``timestamp.json``, or ``<version>.<role>.json`` (consistent snapshots)."""
        if name == "timestamp.json":
            row = self.latest(session, "timestamp")
        else:
            version, _, rest = name.partition(".")
            role = rest.removesuffix(".json")
            if not version.isdigit() or role not in ("root", "targets", "snapshot") or not rest.endswith(".json"):
                raise NotFound(f"no metadata called {name!r}")
            row = session.scalars(
                select(TufMetadata).where(TufMetadata.role == role, TufMetadata.version == int(version))
            ).first()
        if row is None:
            raise NotFound(f"no metadata called {name!r}")
        return row.body

    def target_file(self, session: Session, url_path: str) -> tuple[Path, UpdateTarget]:
        """The file behind a target URL ``<dir>/<sha256>.<name>`` (hash-prefixed, as TUF clients ask)."""
        directory, _, leaf = url_path.rpartition("/")
        digest, _, name = leaf.partition(".")
        path = f"{directory}/{name}" if directory else name
        target = session.get(UpdateTarget, path)
        if target is None or target.sha256 != digest:
            raise NotFound(f"no target {url_path!r}")
        return self.targets_dir / target.sha256, target

    def load_target(self, target: UpdateTarget) -> bytes:
        return (self.targets_dir / target.sha256).read_bytes()

    def expiries(self, session: Session) -> dict[str, datetime]:
        rows = session.execute(select(TufMetadata.role, func.max(TufMetadata.version)).group_by(TufMetadata.role)).all()
        out: dict[str, datetime] = {}
        for role, version in rows:
            row = session.scalars(
                select(TufMetadata).where(TufMetadata.role == role, TufMetadata.version == version)
            ).one()
            out[role] = _aware(row.expires_at)
        return out

    # -- changing ---------------------------------------------------------------------------------------------

    def lock(self, session: Session) -> None:
        """Serialise repository changes until the transaction ends."""
        transaction_lock(session, REPOSITORY_LOCK)

    def initialise(self, session: Session, now: datetime | None = None) -> bool:
        """Make the keys and the first signed metadata, unless done already; True if it did."""
        self.lock(session)
        if self.initialised(session):
            return False
        now = now or utcnow()
        signers = {role: generate_key(self.key_path(role)) for role in ROLES}
        root = Root(expires=now + self.lifetimes.root, consistent_snapshot=True)
        for role, signer in signers.items():
            root.add_key(signer.public_key, role)
        self._store(session, Metadata(root), [signers["root"]])
        self._publish(session, now, signers)
        logger.info("update repository initialised; keys in %s (move root.pem offline)", self.key_dir)
        return True

    def put_target(self, session: Session, path: str, kind: str, data: bytes, custom: dict[str, Any]) -> UpdateTarget:
        """Store a file and list it in the next targets version (:meth:`publish`)."""
        digest = hashlib.sha256(data).hexdigest()
        stored = self.targets_dir / digest
        if not stored.exists():
            self.targets_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(stored, data, 0o644)
        target = session.get(UpdateTarget, path)
        if target is None:
            target = UpdateTarget(path=path)
            session.add(target)
        target.kind = kind
        target.sha256 = digest
        target.length = len(data)
        target.custom = {"garrison": custom}
        target.created_at = utcnow()
        return target

    def drop_targets(self, session: Session, paths: Iterable[str]) -> None:
        """Stop listing these targets (their files are removed by :meth:`collect_garbage`)."""
        for path in paths:
            target = session.get(UpdateTarget, path)
            if target is not None:
                session.delete(target)

    def publish(self, session: Session, now: datetime | None = None) -> None:
        """Sign new targets, snapshot and timestamp versions listing the current targets."""
        self.lock(session)
        if not self.initialised(session):
            self.initialise(session, now)
            return
        self._publish(session, now or utcnow(), {role: self.signer(role) for role in ONLINE_ROLES})

    def refresh(self, session: Session, now: datetime | None = None) -> list[str]:
        """Re-sign the online roles that are getting old; returns which ones were re-signed."""
        now = now or utcnow()
        self.lock(session)
        expiries = self.expiries(session)
        if not expiries:
            return []

        def ageing(role: str, left: float) -> bool:
            return expiries[role] - now < self.lifetimes.of(role) * left

        if ageing("targets", 1 / 3):
            self._publish(session, now, {role: self.signer(role) for role in ONLINE_ROLES})
            return ["targets", "snapshot", "timestamp"]
        if ageing("snapshot", 1 / 2):
            self._snapshot_and_timestamp(session, now, self.signer("snapshot"), self.signer("timestamp"))
            return ["snapshot", "timestamp"]
        if ageing("timestamp", 1 / 2):
            self._timestamp(session, now, self.signer("timestamp"))
            return ["timestamp"]
        return []

    def rotate(
        self,
        session: Session,
        root_signer: Signer,
        *,
        new_root_key: Path | None = None,
        online: bool = True,
        now: datetime | None = None,
    ) -> int:
        """Sign a new root version: new online keys (``online``) and, with ``new_root_key``, a new root key.

        The new root is signed by the current root key and, when it changes, by the new one too, as clients
        require to follow a rotation. Returns the new root version.
        """
        now = now or utcnow()
        self.lock(session)
        current = self.latest(session, "root")
        if current is None:
            raise RepositoryError("the update repository is not initialised")
        root_md = Metadata[Root].from_bytes(current.body)
        root = root_md.signed
        root_keyids = root.roles["root"].keyids
        if root_signer.public_key.keyid not in root_keyids:
            raise RepositoryError("that is not the root key of this repository")
        signers: list[Signer] = [root_signer]
        if new_root_key is not None:
            new_signer = generate_key(new_root_key) if not new_root_key.exists() else load_signer(new_root_key)
            for keyid in list(root_keyids):
                root.revoke_key(keyid, "root")
            root.add_key(new_signer.public_key, "root")
            signers.append(new_signer)
        if online:
            for role in ONLINE_ROLES:
                for keyid in list(root.roles[role].keyids):
                    root.revoke_key(keyid, role)
                path = self.key_path(role)
                replaced = path.with_suffix(".pem.old")
                if path.exists():
                    path.replace(replaced)
                root.add_key(generate_key(path).public_key, role)
                replaced.unlink(missing_ok=True)
        root.version += 1
        root.expires = now + self.lifetimes.root
        self._store(session, Metadata(root), signers)
        # Re-sign everything else with the (possibly new) online keys, so clients can verify it.
        self._publish(session, now, {role: self.signer(role) for role in ONLINE_ROLES})
        return root.version

    def collect_garbage(self, session: Session) -> int:
        """Remove target files no target lists any more; returns how many."""
        listed = set(session.scalars(select(UpdateTarget.sha256)))
        removed = 0
        if self.targets_dir.is_dir():
            for path in self.targets_dir.iterdir():
                if path.name not in listed and len(path.name) == 64:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    # -- internals --------------------------------------------------------------------------------------------

    def _store(self, session: Session, metadata: Metadata[Any], signers: list[Signer]) -> bytes:
        for signer in signers:
            metadata.sign(signer, append=True)
        body = metadata.to_bytes(_SERIALIZER)
        signed = metadata.signed
        session.add(TufMetadata(role=signed.type, version=signed.version, body=body, expires_at=signed.expires))
        session.flush()
        return body

    def _next_version(self, session: Session, role: str) -> int:
        row = self.latest(session, role)
        return 1 if row is None else row.version + 1

    def _publish(self, session: Session, now: datetime, signers: dict[str, CryptoSigner]) -> None:
        targets = Targets(
            version=self._next_version(session, "targets"), expires=now + self.lifetimes.targets, targets={}
        )
        for row in session.scalars(select(UpdateTarget).order_by(UpdateTarget.path)):
            targets.targets[row.path] = TargetFile(
                length=row.length,
                hashes={"sha256": row.sha256},
                path=row.path,
                unrecognized_fields={"custom": row.custom},
            )
        self._store(session, Metadata(targets), [signers["targets"]])
        self._snapshot_and_timestamp(session, now, signers["snapshot"], signers["timestamp"])

    def _snapshot_and_timestamp(self, session: Session, now: datetime, snapshot: Signer, timestamp: Signer) -> None:
        targets_version = self._require(session, "targets").version
        meta = {"targets.json": MetaFile(version=targets_version)}
        version = self._next_version(session, "snapshot")
        snapshot_md = Metadata(Snapshot(version=version, expires=now + self.lifetimes.snapshot, meta=meta))
        body = self._store(session, snapshot_md, [snapshot])
        self._timestamp(session, now, timestamp, body)

    def _timestamp(self, session: Session, now: datetime, signer: Signer, snapshot_body: bytes | None = None) -> None:
        snapshot = self._require(session, "snapshot")
        body = snapshot_body if snapshot_body is not None else snapshot.body
        snapshot_meta = MetaFile(
            version=snapshot.version, length=len(body), hashes={"sha256": hashlib.sha256(body).hexdigest()}
        )
        stamp = Timestamp(
            version=self._next_version(session, "timestamp"),
            expires=now + self.lifetimes.timestamp,
            snapshot_meta=snapshot_meta,
        )
        self._store(session, Metadata(stamp), [signer])

    def _require(self, session: Session, role: str) -> TufMetadata:
        row = self.latest(session, role)
        if row is None:
            raise RepositoryError(f"no {role} metadata yet")
        return row


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
