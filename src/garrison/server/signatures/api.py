"""REST endpoints of signature sources and local signatures: anyone logged in reads, province admins change.

A refused import answers 400 with the reason, after committing the record of the refusal (the source's
``last_error`` and the audit event); the source keeps its previous files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, File, Form, Request, UploadFile
from sqlalchemy.orm import Session

from garrison.server.deps import AdminCaller, CurrentCaller, DbSession, Settings
from garrison.server.errors import ERROR_RESPONSES, BadRequest
from garrison.server.signatures import feeds, local, service
from garrison.server.signatures.importers import ContainerKeys, ImportLimits, Refused
from garrison.server.signatures.models import SignatureSource, SourceKind
from garrison.server.signatures.schemas import (
    EnabledIn,
    ImportOut,
    LocalHashIn,
    LocalOut,
    LocalRuleIn,
    SourceIn,
    SourceOut,
    SourceUpdate,
    WatchedOut,
)
from garrison.server.signatures.store import SourceStore
from garrison.server.wire import PathId

router = APIRouter(prefix="/api/v1", tags=["signatures"], responses=ERROR_RESPONSES)


class Importing:
    """What imports need from the application: the store, the container keys, the limits and the HTTP getter.

    The keys and getter come from ``app.state.signature_keys`` / ``app.state.signature_get`` when set (tests sign
    containers with their own key and fetch from a local server); else Talos's keys and :func:`feeds.default_get`.
    """

    def __init__(self, request: Request, settings: Settings) -> None:
        state = request.app.state
        self.watched = getattr(settings, "updates_watch_dir", None) or service.inbox(settings.data_dir)
        self.store = SourceStore(settings.data_dir)
        self.keys: ContainerKeys = getattr(state, "signature_keys", None) or ContainerKeys()
        self.limits: ImportLimits = getattr(state, "signature_limits", None) or ImportLimits()
        self.get: Callable[[str], bytes] = getattr(state, "signature_get", None) or feeds.default_get


Imports = Annotated[Importing, Depends()]


def _out(source: SignatureSource) -> SourceOut:
    return SourceOut.model_validate(source)


def _read(file: UploadFile, limit: int) -> tuple[str, bytes]:
    # Sync endpoints (the engine's check is CPU work): the upload is already spooled to a file.
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise BadRequest(f"the file is larger than the {limit} bytes an import may have")
    return file.filename or "upload", data


def _keep_refusal(session: Session, refused: Refused) -> Refused:
    session.commit()  # the source's last_error and the audit event outlive the refused request
    return refused


@router.get("/signature-sources", response_model=list[SourceOut])
def list_sources(session: DbSession, caller: CurrentCaller) -> list[SourceOut]:
    del caller  # anyone logged in may read them (auditors too)
    return [_out(s) for s in service.list_sources(session)]


@router.get("/signature-generation")
def signature_generation(session: DbSession, caller: CurrentCaller) -> dict[str, int]:
    del caller
    return {"generation": service.generation(session)}


@router.get("/signature-sources/{source_id}", response_model=SourceOut)
def get_source(source_id: PathId, session: DbSession, caller: CurrentCaller) -> SourceOut:
    del caller
    return _out(service.get_source(session, source_id))


@router.post("/signature-uploads", response_model=ImportOut, status_code=201)
def create_uploaded(
    session: DbSession,
    caller: AdminCaller,
    imports: Imports,
    file: Annotated[UploadFile, File()],
    name: Annotated[str, Form(max_length=64)],
    licence: Annotated[str, Form(max_length=4000)] = "",
) -> ImportOut:
    """A new source from an uploaded file (a ClamAV container or database files, YARA rules, an archive of them,
    an IOC list)."""
    upload = _read(file, imports.limits.max_file)
    try:
        source, result = service.create_source(
            session,
            imports.store,
            caller.actor,
            name=name,
            kind=SourceKind.UPLOAD,
            licence=licence,
            upload=upload,
            keys=imports.keys,
            limits=imports.limits,
        )
    except Refused as refused:
        raise _keep_refusal(session, refused) from None
    assert result is not None  # noqa: S101 - an upload always gives a result
    return ImportOut(source=_out(source), changed=result.changed, warnings=list(result.warnings))


@router.post("/signature-sources", response_model=SourceOut, status_code=201)
def create_source(body: SourceIn, session: DbSession, caller: AdminCaller, imports: Imports) -> SourceOut:
    """A source fetched from a URL (``upstream``) or fed by the watched directory (``watched``)."""
    source, _ = service.create_source(
        session,
        imports.store,
        caller.actor,
        name=body.name,
        kind=SourceKind(body.kind),
        origin=body.origin,
        licence=body.licence,
    )
    if body.fetch and source.kind is SourceKind.UPSTREAM:
        try:
            feeds.fetch_upstream(
                session, imports.store, source, imports.get, actor=caller.actor, keys=imports.keys,
                limits=imports.limits,
            )  # fmt: skip
        except Refused as refused:
            raise _keep_refusal(session, refused) from None
    return _out(source)


@router.post("/signature-inbox", response_model=list[WatchedOut])
def import_watched(session: DbSession, caller: AdminCaller, imports: Imports) -> list[WatchedOut]:
    """Import the files dropped in the watched directory now (the ``updates_watch_dir`` setting, else
    ``data_dir/signature-inbox``)."""
    results = feeds.import_watched(
        session,
        imports.store,
        imports.watched,
        caller.actor,
        keys=imports.keys,
        limits=imports.limits,
    )
    return [WatchedOut(file=r.file, outcome=r.outcome, source=r.source, reason=r.reason) for r in results]  # type: ignore[arg-type]


@router.post("/signature-sources/{source_id}/files", response_model=ImportOut)
def upload_version(
    source_id: PathId,
    session: DbSession,
    caller: AdminCaller,
    imports: Imports,
    file: Annotated[UploadFile, File()],
) -> ImportOut:
    """A new version of a source (a whole file, or a ``.cdiff`` for a ClamAV database source)."""
    filename, data = _read(file, imports.limits.max_file)
    try:
        result = service.upload(
            session, imports.store, caller.actor, source_id, filename, data, keys=imports.keys, limits=imports.limits
        )
    except Refused as refused:
        raise _keep_refusal(session, refused) from None
    source = service.get_source(session, source_id)
    return ImportOut(source=_out(source), changed=result.changed, warnings=list(result.warnings))


@router.post("/signature-sources/{source_id}/fetch", response_model=ImportOut)
def fetch(source_id: PathId, session: DbSession, caller: AdminCaller, imports: Imports) -> ImportOut:
    """Fetch an upstream source's URL now."""
    source = service.get_source(session, source_id)
    try:
        result = feeds.fetch_upstream(
            session, imports.store, source, imports.get, actor=caller.actor, keys=imports.keys, limits=imports.limits
        )
    except Refused as refused:
        raise _keep_refusal(session, refused) from None
    return ImportOut(source=_out(source), changed=result.changed, warnings=list(result.warnings))


@router.patch("/signature-sources/{source_id}", response_model=SourceOut)
def update_source(source_id: PathId, body: SourceUpdate, session: DbSession, caller: AdminCaller) -> SourceOut:
    return _out(service.update_source(session, caller.actor, source_id, origin=body.origin, licence=body.licence))


@router.put("/signature-sources/{source_id}/enabled", response_model=SourceOut)
def set_enabled(source_id: PathId, body: EnabledIn, session: DbSession, caller: AdminCaller) -> SourceOut:
    return _out(service.set_enabled(session, caller.actor, source_id, body.enabled))


@router.delete("/signature-sources/{source_id}", status_code=204)
def delete_source(source_id: PathId, session: DbSession, caller: AdminCaller) -> None:
    service.delete_source(session, caller.actor, source_id)


@router.get("/local-signatures", response_model=list[LocalOut])
def list_local(session: DbSession, caller: CurrentCaller) -> list[LocalOut]:
    del caller
    return [LocalOut.model_validate(row) for row in local.list_local(session)]


@router.post("/local-signatures", response_model=LocalOut, status_code=201)
def add_local(
    body: Annotated[LocalHashIn | LocalRuleIn, Body(discriminator="kind")],
    session: DbSession,
    caller: AdminCaller,
    imports: Imports,
) -> LocalOut:
    """A file hash (``kind: hash``) or a YARA rule (``kind: yara``), with the reason it is added."""
    if isinstance(body, LocalHashIn):
        row = local.add_local_hash(
            session, imports.store, caller.actor, digest=body.digest, name=body.name, reason=body.reason, size=body.size
        )
    else:
        row = local.add_local_rule(session, imports.store, caller.actor, rule=body.rule, reason=body.reason)
    return LocalOut.model_validate(row)


@router.delete("/local-signatures/{signature_id}", status_code=204)
def delete_local(signature_id: PathId, session: DbSession, caller: AdminCaller, imports: Imports) -> None:
    local.delete_local(session, imports.store, caller.actor, signature_id)
