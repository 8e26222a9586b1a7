"""Console pages of signature sources (list, upload, upstream URL, enable, disable, delete, import the watched
directory now) and of local signatures (file hashes and YARA rules, added with a reason, deleted).

Everyone logged in reads; only a province administrator changes anything (the same rule as the REST API). A
refused import shows the engine's reason on the page, and the refusal is committed (the source's last error and
the audit event) although the page answers 400.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from garrison.server.console import i18n
from garrison.server.console.i18n import N_
from garrison.server.console.web import (
    AdminWriter,
    ConsoleDb,
    ConsoleRoute,
    CurrentViewer,
    Viewer,
    gettext,
    redirect,
    render,
)
from garrison.server.deps import Settings
from garrison.server.errors import BadRequest, ServerError
from garrison.server.signatures import feeds, local, service
from garrison.server.signatures.importers import ContainerKeys, ImportLimits, Refused
from garrison.server.signatures.models import SourceKind
from garrison.server.signatures.store import SourceStore

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False, default_response_class=HTMLResponse)

DONE = {
    "created": N_("The signature source was added."),
    "imported": N_("The new version was imported."),
    "unchanged": N_("The file holds what the source already has: nothing changed."),
    "saved": N_("The changes were saved."),
    "enabled": N_("The source is enabled: the next release includes it."),
    "disabled": N_("The source is disabled: the next release leaves it out."),
    "deleted": N_("The source was deleted."),
    "watched": N_("The watched folder was read: see the sources below."),
    "local_added": N_("The local signature was added."),
    "local_deleted": N_("The local signature was deleted."),
}


def _imports(request: Request, settings: Any) -> tuple[SourceStore, ContainerKeys, ImportLimits]:
    state = request.app.state
    keys = getattr(state, "signature_keys", None) or ContainerKeys()
    limits = getattr(state, "signature_limits", None) or ImportLimits()
    return SourceStore(settings.data_dir), keys, limits


def _sources_page(
    request: Request, session: Session, viewer: Viewer, *, error: str = "", done: str = "", status_code: int = 200
) -> Response:
    _ = gettext(request)
    context = {
        "sources": service.list_sources(session),
        "notice": _(DONE[done]) if done in DONE else "",
        "error": error,
        "tab": "sources",
    }
    return render(request, "signatures/list.html", context, viewer=viewer, status_code=status_code)


def _refused(request: Request, session: Session, viewer: Viewer, refused: ServerError) -> Response:
    _ = gettext(request)
    if isinstance(refused, Refused):
        session.commit()  # keep the record of the refusal (last error, audit) on the page's answer
    else:
        session.rollback()
    return _sources_page(request, session, viewer, error=i18n.explain_error(refused, _), status_code=refused.status)


def _read(file: UploadFile | None, limit: int) -> tuple[str, bytes]:
    if file is None or not file.filename:
        raise BadRequest("choose a file")
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise BadRequest(f"the file is larger than the {limit} bytes an import may have")
    return file.filename, data


@router.get("/signatures")
def sources_page(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    return _sources_page(request, session, viewer, done=done)


@router.post("/signatures/upload")
def create_uploaded(
    request: Request,
    session: ConsoleDb,
    viewer: AdminWriter,
    settings: Settings,
    name: Annotated[str, Form(max_length=64)] = "",
    licence: Annotated[str, Form(max_length=4000)] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    store, keys, limits = _imports(request, settings)
    try:
        upload = _read(file, limits.max_file)
        service.create_source(
            session,
            store,
            viewer.caller.actor,
            name=name,
            kind=SourceKind.UPLOAD,
            licence=licence,
            upload=upload,
            keys=keys,
            limits=limits,
        )
    except ServerError as refused:
        return _refused(request, session, viewer, refused)
    return redirect("/signatures?done=created")


@router.post("/signatures/upstream")
def create_upstream(
    request: Request,
    session: ConsoleDb,
    viewer: AdminWriter,
    settings: Settings,
    name: Annotated[str, Form(max_length=64)] = "",
    origin: Annotated[str, Form(max_length=2048)] = "",
    licence: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    store, _keys, _limits = _imports(request, settings)
    try:
        service.create_source(
            session, store, viewer.caller.actor, name=name, kind=SourceKind.UPSTREAM, origin=origin, licence=licence
        )
    except ServerError as refused:
        return _refused(request, session, viewer, refused)
    return redirect("/signatures?done=created")


@router.post("/signatures/watched")
def import_watched(request: Request, session: ConsoleDb, viewer: AdminWriter, settings: Settings) -> Response:
    store, keys, limits = _imports(request, settings)
    directory = getattr(settings, "updates_watch_dir", None) or service.inbox(settings.data_dir)
    feeds.import_watched(session, store, directory, viewer.caller.actor, keys=keys, limits=limits)
    return redirect("/signatures?done=watched")


@router.post("/signatures/{source_id}/files")
def upload_version(
    request: Request,
    source_id: int,
    session: ConsoleDb,
    viewer: AdminWriter,
    settings: Settings,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    store, keys, limits = _imports(request, settings)
    try:
        filename, data = _read(file, limits.max_file)
        result = service.upload(
            session, store, viewer.caller.actor, source_id, filename, data, keys=keys, limits=limits
        )
    except ServerError as refused:
        return _refused(request, session, viewer, refused)
    return redirect(f"/signatures?done={'imported' if result.changed else 'unchanged'}#source-{source_id}")


@router.post("/signatures/{source_id}/fetch")
def fetch(request: Request, source_id: int, session: ConsoleDb, viewer: AdminWriter, settings: Settings) -> Response:
    store, keys, limits = _imports(request, settings)
    get = getattr(request.app.state, "signature_get", None) or feeds.default_get
    try:
        source = service.get_source(session, source_id)
        result = feeds.fetch_upstream(session, store, source, get, actor=viewer.caller.actor, keys=keys, limits=limits)
    except ServerError as refused:
        return _refused(request, session, viewer, refused)
    return redirect(f"/signatures?done={'imported' if result.changed else 'unchanged'}#source-{source_id}")


@router.post("/signatures/{source_id}/edit")
def edit_source(
    request: Request,
    source_id: int,
    session: ConsoleDb,
    viewer: AdminWriter,
    origin: Annotated[str | None, Form(max_length=2048)] = None,
    licence: Annotated[str | None, Form(max_length=4000)] = None,
) -> Response:
    try:
        service.update_source(session, viewer.caller.actor, source_id, origin=origin, licence=licence)
    except ServerError as refused:
        return _refused(request, session, viewer, refused)
    return redirect(f"/signatures?done=saved#source-{source_id}")


@router.post("/signatures/{source_id}/enable")
def enable(source_id: int, session: ConsoleDb, viewer: AdminWriter) -> Response:
    service.set_enabled(session, viewer.caller.actor, source_id, True)
    return redirect(f"/signatures?done=enabled#source-{source_id}")


@router.post("/signatures/{source_id}/disable")
def disable(source_id: int, session: ConsoleDb, viewer: AdminWriter) -> Response:
    service.set_enabled(session, viewer.caller.actor, source_id, False)
    return redirect(f"/signatures?done=disabled#source-{source_id}")


@router.post("/signatures/{source_id}/delete")
def delete(source_id: int, session: ConsoleDb, viewer: AdminWriter) -> Response:
    service.delete_source(session, viewer.caller.actor, source_id)
    return redirect("/signatures?done=deleted")


# -- local signatures -----------------------------------------------------------------------------------------


def _local_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    values: dict[str, str] | None = None,
    error: str = "",
    done: str = "",
    status_code: int = 200,
) -> Response:
    _ = gettext(request)
    context = {
        "signatures": local.list_local(session),
        "values": values or {"digest": "", "size": "", "name": "", "reason": "", "rule": "", "rule_reason": ""},
        "notice": _(DONE[done]) if done in DONE else "",
        "error": error,
        "tab": "local",
    }
    return render(request, "signatures/local.html", context, viewer=viewer, status_code=status_code)


@router.get("/signatures/local")
def local_page(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    return _local_page(request, session, viewer, done=done)


@router.post("/signatures/local/hash")
def add_hash(
    request: Request,
    session: ConsoleDb,
    viewer: AdminWriter,
    settings: Settings,
    digest: Annotated[str, Form(max_length=128)] = "",
    size: Annotated[str, Form(max_length=20)] = "",
    name: Annotated[str, Form(max_length=128)] = "",
    reason: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    _ = gettext(request)
    values = {"digest": digest, "size": size, "name": name, "reason": reason, "rule": "", "rule_reason": ""}
    try:
        if size.strip() and not size.strip().isdigit():
            raise BadRequest("the size is a number of bytes")
        local.add_local_hash(
            session,
            SourceStore(settings.data_dir),
            viewer.caller.actor,
            digest=digest,
            name=name,
            reason=reason,
            size=int(size) if size.strip() else None,
        )
    except ServerError as refused:
        session.rollback()
        error = i18n.explain_error(refused, _)
        return _local_page(request, session, viewer, values=values, error=error, status_code=refused.status)
    return redirect("/signatures/local?done=local_added")


@router.post("/signatures/local/rule")
def add_rule(
    request: Request,
    session: ConsoleDb,
    viewer: AdminWriter,
    settings: Settings,
    rule: Annotated[str, Form(max_length=65536)] = "",
    rule_reason: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    _ = gettext(request)
    values = {"digest": "", "size": "", "name": "", "reason": "", "rule": rule, "rule_reason": rule_reason}
    try:
        local.add_local_rule(
            session, SourceStore(settings.data_dir), viewer.caller.actor, rule=rule, reason=rule_reason
        )
    except ServerError as refused:
        session.rollback()
        error = i18n.explain_error(refused, _)
        return _local_page(request, session, viewer, values=values, error=error, status_code=refused.status)
    return redirect("/signatures/local?done=local_added")


@router.post("/signatures/local/{signature_id}/delete")
def delete_local(signature_id: int, session: ConsoleDb, viewer: AdminWriter, settings: Settings) -> Response:
    local.delete_local(session, SourceStore(settings.data_dir), viewer.caller.actor, signature_id)
    return redirect("/signatures/local?done=local_deleted")
