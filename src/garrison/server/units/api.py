"""REST endpoints of the organisation tree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, UploadFile

from garrison.server.deps import CurrentCaller, DbSession
from garrison.server.errors import ERROR_RESPONSES, BadRequest
from garrison.server.units import service
from garrison.server.units.schemas import UnitIn, UnitOut
from garrison.server.wire import ID_MAX, PathId

router = APIRouter(prefix="/api/v1/units", tags=["units"], responses=ERROR_RESPONSES)


def _fields(body: UnitIn) -> service.UnitFields:
    return service.UnitFields(**body.model_dump())


@router.get("", response_model=list[UnitOut])
def list_units(
    session: DbSession, caller: CurrentCaller, root: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None
) -> list[UnitOut]:
    """The caller's part of the tree (or the subtree under ``root``), parents before children."""
    return [UnitOut.model_validate(u) for u in service.subtree(session, caller.scope, root)]


@router.post("", response_model=UnitOut, status_code=201)
def create_unit(body: UnitIn, session: DbSession, caller: CurrentCaller) -> UnitOut:
    return UnitOut.model_validate(service.create(session, caller.scope, caller.actor, _fields(body)))


@router.get("/{unit_id:int}", response_model=UnitOut)
def get_unit(unit_id: PathId, session: DbSession, caller: CurrentCaller) -> UnitOut:
    return UnitOut.model_validate(service.get(session, caller.scope, unit_id))


@router.put("/{unit_id:int}", response_model=UnitOut)
def update_unit(unit_id: PathId, body: UnitIn, session: DbSession, caller: CurrentCaller) -> UnitOut:
    return UnitOut.model_validate(service.update_unit(session, caller.scope, caller.actor, unit_id, _fields(body)))


@router.delete("/{unit_id:int}", status_code=204)
def delete_unit(unit_id: PathId, session: DbSession, caller: CurrentCaller) -> None:
    service.delete(session, caller.scope, caller.actor, unit_id)


MAX_CSV_BYTES = 5 * 1024 * 1024


@router.post("/import", response_model=list[UnitOut], status_code=201)
def import_units(file: UploadFile, session: DbSession, caller: CurrentCaller) -> list[UnitOut]:
    """Add units from an uploaded CSV file: ``name,kind,parent,code,servers,workstations,other``.

    All or nothing: a bad row is reported with its line number and nothing is added.
    """
    raw = file.file.read(MAX_CSV_BYTES + 1)
    if len(raw) > MAX_CSV_BYTES:
        raise BadRequest("the CSV file is larger than 5 MiB")
    text = raw.decode("utf-8-sig", errors="replace")
    return [UnitOut.model_validate(u) for u in service.import_csv(session, caller.scope, caller.actor, text)]
