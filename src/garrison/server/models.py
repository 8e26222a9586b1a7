"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from garrison.server.agents.models import Agent, EnrollmentToken
from garrison.server.alerts.models import AlertDelivery, AlertRecipient, AlertRecord, AlertRule
from garrison.server.audit.models import AuditEvent
from garrison.server.auth.models import ApiToken, ConsoleSession, LoginAttempt, Role, SetupToken, User
from garrison.server.detections.models import Detection, Triage
from garrison.server.federation.models import FederationAcknowledged, FederationChild, FederationReceivedReport
from garrison.server.policies.models import AgentGroup, AllowedFile, Policy, PolicyAssignment, PolicyState
from garrison.server.reports.models import ReportingLine, ReportSubmission
from garrison.server.sharing.models import DeliveryStatus, NationalAttempt, NationalDelivery
from garrison.server.signatures.models import LocalSignature, SignatureSource, SignatureState
from garrison.server.tasks.models import QuarantinedFile, Sample, Task, TaskRun
from garrison.server.units.models import Unit, UnitKind
from garrison.server.updates.models import AgentRelease, Release, RolloutSettings, TufMetadata, UpdateTarget

__all__ = [
    "Agent",
    "AgentGroup",
    "AgentRelease",
    "AlertDelivery",
    "AlertRecipient",
    "AlertRecord",
    "AlertRule",
    "AllowedFile",
    "ApiToken",
    "AuditEvent",
    "ConsoleSession",
    "DeliveryStatus",
    "Detection",
    "EnrollmentToken",
    "FederationAcknowledged",
    "FederationChild",
    "FederationReceivedReport",
    "LocalSignature",
    "LoginAttempt",
    "NationalAttempt",
    "NationalDelivery",
    "Policy",
    "PolicyAssignment",
    "PolicyState",
    "QuarantinedFile",
    "Release",
    "ReportSubmission",
    "ReportingLine",
    "Role",
    "RolloutSettings",
    "Sample",
    "SetupToken",
    "SignatureSource",
    "SignatureState",
    "Task",
    "TaskRun",
    "Triage",
    "TufMetadata",
    "Unit",
    "UnitKind",
    "UpdateTarget",
    "User",
]
