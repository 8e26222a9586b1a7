"""Console pages of the organisation tree: the tree, create, edit (and move), delete, CSV import.

Everything goes through ``units.service`` with the viewer's scope: a unit outside it answers 404 here as in the
API. Form input is validated by the API's own ``UnitIn`` schema, and problems are shown next to their field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, File, Form, Request, Response, UploadFile
from pydantic import ValidationError
from sqlalchemy.orm import Session

from garrison.server.console import i18n
from garrison.server.console.i18n import N_
from garrison.server.console.web import (
    ConsoleDb,
    CurrentViewer,
    Viewer,
    WritingViewer,
    console_router,
    gettext,
    redirect,
    render,
)
from garrison.server.errors import BadRequest, ServerError
from garrison.server.units import service
from garrison.server.units.api import MAX_CSV_BYTES
from garrison.server.units.models import Unit, UnitKind
from garrison.server.units.schemas import UnitIn

router = console_router()

DONE = {
    "created": N_("The unit was added."),
    "saved": N_("The changes were saved."),
    "deleted": N_("The unit was deleted."),
    "imported": N_("The units of the file were added."),
}
FIELD_PROBLEMS = {
    "name": N_("Enter a name (at most 255 characters)."),
    "kind": N_("Choose the kind of unit."),
    "parent_id": N_("Choose the unit it belongs to."),
    "code": N_("A code uses only letters without accents, digits, '.', '_' and '-' (at most 64 characters)."),
    "declared_servers": N_("Enter a whole number from 0 to 1,000,000."),
    "declared_workstations": N_("Enter a whole number from 0 to 1,000,000."),
    "declared_other": N_("Enter a whole number from 0 to 1,000,000."),
}


@dataclass(frozen=True, slots=True)
class Row:
    """A unit shown in the tree: its depth below the viewer's top and the endpoints declared in its subtree."""

    unit: Unit
    depth: int
    subtree_total: int


def tree_rows(units: Sequence[Unit]) -> list[Row]:
    """``units`` (parents before children, as ``service.subtree`` gives them) with depths and subtree totals."""
    if not units:
        return []
    top = min(u.path.count("/") for u in units)
    totals = {u.path: 0 for u in units}
    for unit in units:
        for path in totals:
            if unit.path.startswith(path):
                totals[path] += unit.declared_total
    return [Row(u, u.path.count("/") - top, totals[u.path]) for u in units]


def _form_values(
    name: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "",
    parent_id: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
    declared_servers: Annotated[str, Form()] = "",
    declared_workstations: Annotated[str, Form()] = "",
    declared_other: Annotated[str, Form()] = "",
) -> dict[str, str]:
    """The unit form's fields as posted, trimmed (one dependency for the create and edit forms)."""
    posted = {
        "name": name,
        "kind": kind,
        "parent_id": parent_id,
        "code": code,
        "declared_servers": declared_servers,
        "declared_workstations": declared_workstations,
        "declared_other": declared_other,
    }
    return {field: value.strip() for field, value in posted.items()}


UnitFormValues = Annotated[dict[str, str], Depends(_form_values)]


def _parse(values: dict[str, str], _: i18n.Gettext) -> tuple[service.UnitFields | None, dict[str, str]]:
    """The form as service fields, or the problems by field name (in the reader's language)."""
    raw = {
        "name": values["name"],
        "kind": values["kind"],
        "parent_id": values["parent_id"] or None,
        "code": values["code"] or None,
        "declared_servers": values["declared_servers"] or "0",
        "declared_workstations": values["declared_workstations"] or "0",
        "declared_other": values["declared_other"] or "0",
    }
    try:
        checked = UnitIn.model_validate(raw)
    except ValidationError as invalid:
        fields = {str(e["loc"][0]) for e in invalid.errors() if e["loc"]}
        return None, {name: _(FIELD_PROBLEMS[name]) for name in FIELD_PROBLEMS if name in fields}
    if not checked.name.strip():
        problem = FIELD_PROBLEMS["name"]
        return None, {"name": _(problem)}
    return service.UnitFields(**checked.model_dump()), {}


def _parent_choices(session: Session, viewer: Viewer, moving: Unit | None = None) -> list[Row]:
    """Units the viewer may choose as a parent (not the moving unit nor anything under it)."""
    rows = tree_rows(service.subtree(session, viewer.caller.scope))
    if moving is not None:
        rows = [r for r in rows if not r.unit.path.startswith(moving.path)]
    return rows


def _form_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    values: dict[str, str],
    unit: Unit | None = None,
    errors: dict[str, str] | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    # The top of the viewer's scope (or the province) keeps its parent: it is not offered for moving.
    fixed_parent = unit is not None and (unit.parent_id is None or unit.path == viewer.caller.scope.path)
    context = {
        "unit": unit,
        "values": values,
        "errors": errors or {},
        "error": error,
        "kinds": [kind.value for kind in UnitKind],
        "parents": [] if fixed_parent else _parent_choices(session, viewer, unit),
        "fixed_parent": fixed_parent,
        "may_be_top": viewer.caller.scope.everything and unit is None,
    }
    return render(request, "units/form.html", context, viewer=viewer, status_code=status_code)


@router.get("/units")
def tree(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    _ = gettext(request)
    rows = tree_rows(service.subtree(session, viewer.caller.scope))
    totals = {
        "servers": sum(r.unit.declared_servers for r in rows),
        "workstations": sum(r.unit.declared_workstations for r in rows),
        "other": sum(r.unit.declared_other for r in rows),
        "all": sum(r.unit.declared_total for r in rows),
    }
    notice = _(DONE[done]) if done in DONE else ""
    return render(request, "units/tree.html", {"rows": rows, "totals": totals, "notice": notice}, viewer=viewer)


@router.get("/units/new")
def new_unit(request: Request, session: ConsoleDb, viewer: CurrentViewer, parent: int | None = None) -> Response:
    if parent is not None:
        service.get(session, viewer.caller.scope, parent)  # 404 outside the scope
    values = {"name": "", "kind": UnitKind.UNIT.value, "parent_id": str(parent or ""), "code": ""}
    values |= {"declared_servers": "0", "declared_workstations": "0", "declared_other": "0"}
    return _form_page(request, session, viewer, values=values)


@router.post("/units/new")
def create_unit(
    request: Request,
    session: ConsoleDb,
    viewer: WritingViewer,
    values: UnitFormValues,
) -> Response:
    _ = gettext(request)
    fields, errors = _parse(values, _)
    if fields is None:
        return _form_page(request, session, viewer, values=values, errors=errors, status_code=400)
    try:
        service.create(session, viewer.caller.scope, viewer.caller.actor, fields)
    except ServerError as refused:
        session.rollback()
        error = i18n.explain_error(refused, _)
        return _form_page(request, session, viewer, values=values, error=error, status_code=refused.status)
    return redirect("/units?done=created")


@router.get("/units/import")
def import_page(request: Request, viewer: CurrentViewer) -> Response:
    return render(request, "units/import.html", {"error": ""}, viewer=viewer)


@router.post("/units/import")
def import_units(
    request: Request,
    session: ConsoleDb,
    viewer: WritingViewer,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    _ = gettext(request)
    try:
        if file is None or not file.filename:
            raise BadRequest("no file")
        raw = file.file.read(MAX_CSV_BYTES + 1)
        if len(raw) > MAX_CSV_BYTES:
            raise BadRequest("the CSV file is larger than 5 MiB")
        service.import_csv(session, viewer.caller.scope, viewer.caller.actor, raw.decode("utf-8-sig", errors="replace"))
    except ServerError as refused:
        session.rollback()
        error = _("Choose a CSV file.") if refused.message == "no file" else i18n.explain_error(refused, _)
        return render(request, "units/import.html", {"error": error}, viewer=viewer, status_code=400)
    return redirect("/units?done=imported")


def _unit_values(unit: Unit) -> dict[str, str]:
    return {
        "name": unit.name,
        "kind": unit.kind.value,
        "parent_id": str(unit.parent_id or ""),
        "code": unit.code or "",
        "declared_servers": str(unit.declared_servers),
        "declared_workstations": str(unit.declared_workstations),
        "declared_other": str(unit.declared_other),
    }


@router.get("/units/{unit_id}/edit")
def edit_unit(request: Request, unit_id: int, session: ConsoleDb, viewer: CurrentViewer) -> Response:
    unit = service.get(session, viewer.caller.scope, unit_id)
    return _form_page(request, session, viewer, values=_unit_values(unit), unit=unit)


@router.post("/units/{unit_id}/edit")
def update_unit(
    request: Request,
    unit_id: int,
    session: ConsoleDb,
    viewer: WritingViewer,
    values: UnitFormValues,
) -> Response:
    _ = gettext(request)
    unit = service.get(session, viewer.caller.scope, unit_id)
    fields, errors = _parse(values, _)
    if fields is None:
        return _form_page(request, session, viewer, values=values, unit=unit, errors=errors, status_code=400)
    try:
        service.update_unit(session, viewer.caller.scope, viewer.caller.actor, unit_id, fields)
    except ServerError as refused:
        session.rollback()
        unit = service.get(session, viewer.caller.scope, unit_id)
        error = i18n.explain_error(refused, _)
        return _form_page(request, session, viewer, values=values, unit=unit, error=error, status_code=refused.status)
    return redirect("/units?done=saved")


@router.get("/units/{unit_id}/delete")
def confirm_delete(request: Request, unit_id: int, session: ConsoleDb, viewer: CurrentViewer) -> Response:
    unit = service.get(session, viewer.caller.scope, unit_id)
    return render(request, "units/delete.html", {"unit": unit, "error": ""}, viewer=viewer)


@router.post("/units/{unit_id}/delete")
def delete_unit(request: Request, unit_id: int, session: ConsoleDb, viewer: WritingViewer) -> Response:
    _ = gettext(request)
    try:
        service.delete(session, viewer.caller.scope, viewer.caller.actor, unit_id)
    except ServerError as refused:
        session.rollback()
        unit = service.get(session, viewer.caller.scope, unit_id)
        context = {"unit": unit, "error": i18n.explain_error(refused, _)}
        return render(request, "units/delete.html", context, viewer=viewer, status_code=refused.status)
    return redirect("/units?done=deleted")
