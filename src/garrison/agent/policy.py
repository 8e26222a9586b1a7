"""The policy the server sends, kept on disk and applied over the agent's own settings.

An agent runs on its local settings (``GARRISON_AGENT_*``) except where its policy enforces a setting (the
document's ``enforced`` list): what to scan, what to exclude, what to do with detections, real-time protection,
the schedule, the scan limits. What only the machine can know (directories, proxy, how many processes scan) is
always local. The last policy received is saved, so an agent that restarts while the server is away keeps
applying it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from garrison.agent.settings import AgentSettings
from garrison.atomicfile import write_atomic
from garrison.engine import ScanLimits
from garrison.protocol.policy import PolicyDocument, ScheduledScan

log = logging.getLogger(__name__)

MiB = 1024 * 1024


class PolicyStore:
    """The last policy document received, in ``path`` (JSON, replaced atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.document: PolicyDocument | None = None
        try:
            self.document = PolicyDocument.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, ValidationError) as exc:
            # A damaged file must not stop the agent: the server sends the policy again at the next heartbeat.
            log.warning("ignoring the saved policy in %s: %s", path, exc)

    @property
    def revision(self) -> str:
        return self.document.revision if self.document else ""

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(self.document.allow_sha256) if self.document else frozenset()

    def save(self, document: PolicyDocument) -> None:
        write_atomic(self.path, document.model_dump_json(indent=1).encode(), 0o600)
        self.document = document


def apply(settings: AgentSettings, document: PolicyDocument | None) -> AgentSettings:
    """The agent's settings with the settings the policy enforces in place (unchanged without a policy)."""
    if document is None:
        return settings
    policy, enforced = document.policy, set(document.enforced)
    update: dict[str, object] = {}
    if "scan_paths" in enforced:
        update["watch_paths"] = list(policy.scan_paths)
    if "exclude" in enforced:
        update["exclude"] = list(policy.exclude)
    if "action" in enforced:
        update["scan_action"] = policy.action.value
    if "realtime_paths" in enforced:
        update["realtime_paths"] = list(policy.realtime_paths)
    if "realtime_enabled" in enforced and not policy.realtime_enabled:
        update["realtime_paths"] = []
    if "realtime_action" in enforced:
        update["realtime_action"] = policy.realtime_action.value
    if "heartbeat_seconds" in enforced:
        update["heartbeat_seconds"] = float(policy.heartbeat_seconds)
    if "update_seconds" in enforced:
        update["update_seconds"] = float(policy.update_seconds)
    return settings.model_copy(update=update)


def schedules(document: PolicyDocument | None) -> list[ScheduledScan]:
    return list(document.policy.schedules) if document and "schedules" in document.enforced else []


def limits(document: PolicyDocument | None) -> ScanLimits:
    """The engine's limits under the policy (the engine's defaults where it says nothing)."""
    base = ScanLimits()
    if document is None or "limits" not in document.enforced:
        return base
    chosen = document.policy.limits
    return ScanLimits(
        max_file_size=chosen.max_file_mb * MiB if chosen.max_file_mb else base.max_file_size,
        max_scan_size=chosen.max_scan_mb * MiB if chosen.max_scan_mb else base.max_scan_size,
        max_depth=chosen.max_depth if chosen.max_depth is not None else base.max_depth,
        max_members=chosen.max_members or base.max_members,
        max_scan_time=float(chosen.max_scan_seconds) if chosen.max_scan_seconds else base.max_scan_time,
    )
