"""REST endpoints of sharing: the STIX 2.1 indicator bundle of a unit subtree, and the signed AVReport for the
national authority."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from garrison.server.deps import AdminCaller, CurrentCaller, DbSession, Settings
from garrison.server.errors import ERROR_RESPONSES
from garrison.server.sharing import avreport, stix
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


@router.get(
    "/avreport",
    response_class=Response,
    responses={
        200: {"content": {avreport.MEDIA_TYPE: {}}, "description": "the signed AVReport document, as a file download"},
        409: {"description": "the organisation codes or the signing key and certificate are not configured"},
    },
)
def avreport_export(
    session: DbSession,
    caller: AdminCaller,
    settings: Settings,
    unit_id: Annotated[int | None, Query(ge=1, le=ID_MAX, description="subtree root; default: the whole tree")] = None,
    start: Annotated[datetime | None, Query(description="first moment included (default: the quarter's)")] = None,
    end: Annotated[datetime | None, Query(description="first moment excluded (default: the quarter's end)")] = None,
) -> Response:
    """The AVReport of a unit subtree for [start, end) (default: the current quarter) in the edXML envelope of
    QCVN 102:2016, signed with XML-DSig (rsa-sha256, the agency's X.509 certificate), as the national authority
    receives it: per-computer infections of the period, and the operating system, signature age, real-time
    protection and firewall of every computer now. Province-wide administrators only (it names computers);
    recorded in the audit log. 409 until the organisation and the signing key are configured."""
    made = avreport.export(session, settings, caller.scope, caller.actor, unit_id=unit_id, start=start, end=end)
    return Response(
        made.body,
        media_type=avreport.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{made.filename}"', "Cache-Control": "no-store"},
    )
