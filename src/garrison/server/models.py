"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from garrison.server.agents.models import Agent, EnrollmentToken
from garrison.server.audit.models import AuditEvent
from garrison.server.auth.models import ApiToken, ConsoleSession, LoginAttempt, Role, SetupToken, User
from garrison.server.detections.models import Detection, Triage
from garrison.server.policies.models import AgentGroup, AllowedFile, Policy, PolicyAssignment, PolicyState
from garrison.server.tasks.models import QuarantinedFile, Sample, Task, TaskRun
from garrison.server.units.models import Unit, UnitKind

__all__ = [
    "Agent",
    "AgentGroup",
    "AllowedFile",
    "ApiToken",
    "AuditEvent",
    "ConsoleSession",
    "Detection",
    "EnrollmentToken",
    "LoginAttempt",
    "Policy",
    "PolicyAssignment",
    "PolicyState",
    "QuarantinedFile",
    "Role",
    "Sample",
    "SetupToken",
    "Task",
    "TaskRun",
    "Triage",
    "Unit",
    "UnitKind",
    "User",
]
