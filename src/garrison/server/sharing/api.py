"""REST endpoint of sharing: the STIX 2.1 indicator bundle of a unit subtree."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from garrison.server.deps import CurrentCaller, DbSession
from garrison.server.errors import ERROR_RESPONSES
from garrison.server.sharing import stix
from garrison.server.wire import ID_MAX

router = APIRouter(prefix="/api/v1/sharing", tags=["sharing"], responses=ERROR_RESPONSES)


@router.get(
    "/stix",
    response_class=Response,
    responses={200: {"content": {stix.MEDIA_TYPE: {}}, "description": "a STIX 2.1 bundle, as a file download"}},
)
def stix_export(
    session: DbSession,
    caller: CurrentCaller,
    unit_id: Annotated[int | None, Query(ge=1, le=ID_MAX, description="subtree root; default: your scope's")] = None,
    start: Annotated[datetime | None, Query(description="first moment included (default: end - 90 days)")] = None,
    end: Annotated[datetime | None, Query(description="first moment excluded (default: now)")] = None,
    tlp: Annotated[stix.Tlp, Query(description="Traffic Light Protocol marking")] = stix.Tlp.AMBER,
) -> Response:
    """Malware names, file hashes and detection counts of a unit subtree in [start, end), for threat-sharing
    platforms (MISP, OpenCTI). False positives and allow-listed files are left out; nothing about single
    computers is included. Open to every logged-in person within their scope; recorded in the audit log."""
    made = stix.export(session, caller.scope, caller.actor, unit_id=unit_id, start=start, end=end, tlp=tlp)
    return Response(
        made.body.encode(),
        media_type=stix.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{made.filename}"', "Cache-Control": "no-store"},
    )
