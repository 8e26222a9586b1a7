"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from garrison.server.audit.models import AuditEvent
from garrison.server.auth.models import ApiToken, ConsoleSession, LoginAttempt, Role, SetupToken, User
from garrison.server.units.models import Unit, UnitKind

__all__ = ["ApiToken", "AuditEvent", "ConsoleSession", "LoginAttempt", "Role", "SetupToken", "Unit", "UnitKind", "User"]
