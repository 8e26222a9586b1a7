"""The agent's identity: who it is to the server and how it recognises the server.

Written once by ``garrison agent enroll`` into ``identity.json`` in the state directory (mode 0600, replaced
atomically, so a crash leaves the old identity or the new one, never half of one), read by every other command.
It holds the agent's secret: never log it, never print it.

Trust is one of two kinds:

- ``pinned``: the server's own certificate, whose fingerprint the operator gave at enrollment, is the only trust
  anchor (self-signed servers; ``check_hostname`` is on when the server URL's host is among its names);
- ``ca``: the certificates of a CA given with ``--ca-file`` (a deployment with a real CA); host names are checked;
- ``none``: plain HTTP, only when development mode allowed it (``GARRISON_AGENT_ALLOW_HTTP``).

This module does no network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from garrison.atomicfile import write_atomic

TrustKind = Literal["pinned", "ca", "none"]
_FORMAT = 1


class IdentityError(Exception):
    """The identity file cannot be read or written; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Identity:
    """An enrolled agent.

    Attributes:
        agent_id, secret: the credential the server issued (``Authorization: Agent <id>:<secret>``).
        server_url: the server's base URL, ``https://host:port``.
        unit_id: the unit the enrollment token belonged to.
        trust: ``pinned``, ``ca`` or ``none`` (see the module docstring).
        trust_pem: the PEM certificate(s) trusted for the server: the pinned certificate or the CA bundle.
        check_hostname: whether TLS checks the server's name against its certificate.
        fingerprint: the pinned certificate's SHA-256 (``AB:CD:...``), or None with a CA.
        enrolled_at: when, timezone-aware.
        heartbeat_seconds: the interval the server gave at enrollment.
    """

    agent_id: str
    secret: str
    server_url: str
    unit_id: int
    trust: TrustKind
    trust_pem: str
    check_hostname: bool
    fingerprint: str | None
    enrolled_at: datetime
    heartbeat_seconds: float

    def to_json(self) -> str:
        data: dict[str, Any] = {"format": _FORMAT, **asdict(self)}
        data["enrolled_at"] = self.enrolled_at.isoformat()
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Identity:
        data = json.loads(text)
        if not isinstance(data, dict) or data.pop("format", None) != _FORMAT:
            raise ValueError("unknown identity format")
        data["enrolled_at"] = datetime.fromisoformat(data["enrolled_at"])
        if data.get("trust") not in ("pinned", "ca", "none"):
            raise ValueError("unknown trust kind")
        return cls(**data)

    def __repr__(self) -> str:  # keeps the secret out of logs and tracebacks
        return f"Identity(agent_id={self.agent_id!r}, server_url={self.server_url!r}, trust={self.trust!r})"


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, as a mode-0600 file."""
    write_atomic(path, data, 0o600)


def save(path: Path, identity: Identity) -> None:
    try:
        write_private(path, identity.to_json().encode())
    except OSError as exc:
        raise IdentityError(f"cannot write the agent identity {path}: {exc.strerror or exc}") from exc


def load(path: Path) -> Identity | None:
    """The saved identity, or None when the agent has not enrolled yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IdentityError(f"cannot read the agent identity {path}: {exc.strerror or exc}") from exc
    try:
        return Identity.from_json(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise IdentityError(f"the agent identity {path} is damaged ({exc}); enroll again") from exc
