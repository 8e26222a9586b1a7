"""The web console: server-rendered pages (Jinja2 + htmx) in Vietnamese by default, English on request.

``router`` holds every page; ``STATIC`` is the directory served at ``/static`` (the stylesheet and a vendored
copy of htmx: the console loads nothing from the internet).
"""

from __future__ import annotations

from fastapi import APIRouter

from garrison.server.console.views import (
    agent_software,
    agents,
    alerts,
    audit,
    auth,
    detections,
    enrollment,
    federation,
    groups,
    home,
    policies,
    quarantine,
    reporting,
    sharing,
    signatures,
    statistics,
    tasks,
    units,
    updates,
    users,
)
from garrison.server.console.web import STATIC

router = APIRouter(include_in_schema=False)
for _views in (
    auth,
    home,
    tasks,
    quarantine,
    agents,
    detections,
    policies,
    groups,
    signatures,
    updates,
    statistics,
    reporting,
    sharing,
    alerts,
    agent_software,
    enrollment,
    federation,
    units,
    users,
    audit,
):
    router.include_router(_views.router)

__all__ = ["STATIC", "router"]
