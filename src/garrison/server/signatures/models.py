"""Signature sources (the inputs of releases), the console's local signatures, and the signature generation.

A source's files live content-addressed on disk (:class:`~garrison.server.signatures.store.SourceStore`); its row
keeps only their names, sizes and SHA-256 (``files``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from garrison.server.db import Base, enum_values, utcnow


class SourceKind(StrEnum):
    UPLOAD = "upload"  # files uploaded by a person
    WATCHED = "watched"  # files dropped in the watched directory (air-gapped networks)
    UPSTREAM = "upstream"  # fetched from a URL
    LOCAL = "local"  # the console's local signatures (one built-in source, named "local")


class SourceFormat(StrEnum):
    CLAMAV_CVD = "clamav-cvd"  # a ClamAV container (.cvd .cld .cud), updated by whole containers or .cdiff
    CLAMAV_PLAIN = "clamav-plain"  # ClamAV database files (.hdb .ndb .ldb ...), maybe with YARA rules
    YARA = "yara"
    IOC_CSV = "ioc-csv"
    IOC_STIX = "ioc-stix"
    IOC_MISP = "ioc-misp"
    LOCAL = "local"  # local.hsb and local.yar, made from LocalSignature rows


class SignatureSource(Base):
    """Where a set of signature files comes from, and its current files."""

    __tablename__ = "signature_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)  # the prefix of its files in a release
    kind: Mapped[SourceKind] = mapped_column(
        Enum(SourceKind, native_enum=False, length=16, values_callable=enum_values)
    )
    origin: Mapped[str] = mapped_column(String(2048), default="")  # URL, watched path or free text
    format: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(64), default="")  # CVD version, or a counter of imports
    licence: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    signatures: Mapped[int] = mapped_column(Integer, default=0)
    # {file name: {"sha256": hex, "size": bytes}}; the content is in the store under its SHA-256.
    files: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    content_sha256: Mapped[str] = mapped_column(String(64), default="")  # of all its files together
    download_sha256: Mapped[str] = mapped_column(String(64), default="")  # of the last bytes imported
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fetched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # upstream: the last attempt
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by_name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LocalKind(StrEnum):
    HASH = "hash"
    YARA = "yara"


class LocalSignature(Base):
    """A signature written in the console: a file hash or a YARA rule, with who added it and why."""

    __tablename__ = "local_signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[LocalKind] = mapped_column(Enum(LocalKind, native_enum=False, length=8, values_callable=enum_values))
    name: Mapped[str] = mapped_column(String(128))  # the detection name (a hash) or the rule's name (YARA)
    algorithm: Mapped[str | None] = mapped_column(String(8))  # md5, sha1, sha256 (hashes only)
    digest: Mapped[str | None] = mapped_column(String(64), index=True)  # lower-case hex (hashes only)
    size: Mapped[int | None] = mapped_column(BigInteger)  # None: any size
    rule: Mapped[str | None] = mapped_column(Text)  # the YARA source (rules only)
    reason: Mapped[str] = mapped_column(String(1024))
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    added_by_name: Mapped[str] = mapped_column(String(255), default="")
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Deleted signatures are kept (who removed what, when) but no longer in local.hsb / local.yar.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_by_name: Mapped[str | None] = mapped_column(String(255))


class SignatureState(Base):
    """One row: a counter bumped by every change of the content of an enabled source or of the local signatures,
    so that the releases side can tell whether a new release is needed (compare it with the last release's)."""

    __tablename__ = "signature_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
