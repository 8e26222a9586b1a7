"""The organisation tree: create, rename, move and delete units, and import them from CSV.

Every function takes the caller's :class:`Scope`: a unit outside it does not exist for the caller (404, so
nothing leaks), and changes need a writable scope.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, String, func, literal, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.errors import BadRequest, Conflict, Forbidden, NotFound
from garrison.server.units.models import Unit, UnitKind

S = TypeVar("S", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True, slots=True)
class UnitFields:
    name: str
    kind: UnitKind
    parent_id: int | None = None
    code: str | None = None
    declared_servers: int = 0
    declared_workstations: int = 0
    declared_other: int = 0


def get(session: Session, scope: Scope, unit_id: int) -> Unit:
    unit = session.get(Unit, unit_id)
    if unit is None or not scope.contains(unit.path):
        raise NotFound(f"no unit {unit_id}")
    return unit


def narrow(session: Session, scope: Scope, unit_id: int | None) -> Scope:
    """``scope`` narrowed to ``unit_id``'s subtree (404 outside it); ``scope`` itself when ``unit_id`` is None."""
    if unit_id is None:
        return scope
    return Scope(get(session, scope, unit_id).path, writable=scope.writable)


def within(query: S, scope: Scope, unit_column: InstrumentedAttribute[int]) -> S:
    """``query`` limited to rows whose ``unit_column`` is a unit inside ``scope``."""
    if scope.everything:
        return query
    return query.join(Unit, Unit.id == unit_column).where(Unit.path.startswith(scope.path))


def tree_order(unit: Unit) -> list[int]:
    """Sort key putting parents before their children (and siblings in creation order).

    Not the path as a string: database collations (PostgreSQL's en_US, for one) ignore the slashes when they
    compare, which would mix subtrees up.
    """
    return [int(part) for part in unit.path.strip("/").split("/") if part]


def subtree(session: Session, scope: Scope, root_id: int | None = None) -> list[Unit]:
    """Units under ``root_id`` (or the whole scope), parents before children."""
    path = get(session, scope, root_id).path if root_id is not None else scope.path
    query = select(Unit)
    if path != "/":
        query = query.where(Unit.path.startswith(path))
    return sorted(session.scalars(query), key=tree_order)


def _writable(scope: Scope) -> None:
    if not scope.writable:
        raise Forbidden("read-only access")


def create(session: Session, scope: Scope, actor: Actor, fields: UnitFields) -> Unit:
    _writable(scope)
    parent = get(session, scope, fields.parent_id) if fields.parent_id is not None else None
    if parent is None:
        if not scope.everything:
            raise Forbidden("only an administrator can add a top-level unit")
        if session.scalar(select(func.count()).select_from(Unit).where(Unit.parent_id.is_(None))):
            raise Conflict("the tree already has its root (the province); add units under it")
    _check_unique(session, fields.name, fields.parent_id, fields.code)
    unit = Unit(
        name=fields.name,
        kind=fields.kind,
        parent_id=fields.parent_id,
        code=fields.code,
        declared_servers=fields.declared_servers,
        declared_workstations=fields.declared_workstations,
        declared_other=fields.declared_other,
    )
    session.add(unit)
    session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    session.flush()
    record(session, actor, "unit.create", "unit", unit.id, unit_id=unit.id, name=unit.name, parent_id=unit.parent_id)
    return unit


def _check_unique(
    session: Session, name: str, parent_id: int | None, code: str | None, skip: int | None = None
) -> None:
    same_name = select(Unit.id).where(
        Unit.name == name, Unit.parent_id.is_(parent_id) if parent_id is None else Unit.parent_id == parent_id
    )
    if skip is not None:
        same_name = same_name.where(Unit.id != skip)
    if session.scalar(same_name) is not None:
        raise Conflict(f"a unit named {name!r} already exists there")
    if code:
        same_code = select(Unit.id).where(Unit.code == code)
        if skip is not None:
            same_code = same_code.where(Unit.id != skip)
        if session.scalar(same_code) is not None:
            raise Conflict(f"the code {code!r} is already used")


def update_unit(session: Session, scope: Scope, actor: Actor, unit_id: int, fields: UnitFields) -> Unit:
    """Rename, re-declare or move a unit (with its subtree)."""
    _writable(scope)
    unit = get(session, scope, unit_id)
    changes: dict[str, object] = {}
    if fields.parent_id != unit.parent_id:
        changes["parent_id"] = fields.parent_id
        _move(session, scope, unit, fields.parent_id)
    _check_unique(session, fields.name, unit.parent_id, fields.code, skip=unit.id)
    for name in ("name", "kind", "code", "declared_servers", "declared_workstations", "declared_other"):
        value = getattr(fields, name)
        if getattr(unit, name) != value:
            changes[name] = value.value if isinstance(value, UnitKind) else value
            setattr(unit, name, value)
    session.flush()
    if changes:
        record(session, actor, "unit.update", "unit", unit.id, unit_id=unit.id, changes=changes)
    return unit


def _move(session: Session, scope: Scope, unit: Unit, parent_id: int | None) -> None:
    if parent_id is None:
        raise BadRequest("a unit cannot become a second root")
    parent = get(session, scope, parent_id)
    if parent.path.startswith(unit.path):
        raise BadRequest("a unit cannot move under itself or its own subtree")
    if unit.path == scope.path:
        raise Forbidden("you cannot move the root of your own scope")
    old, new = unit.path, f"{parent.path}{unit.id}/"
    # Every descendant's path changes prefix in one statement.
    session.execute(
        update(Unit)
        .where(Unit.path.startswith(old))
        .values(path=literal(new, String) + func.substr(Unit.path, len(old) + 1))
        .execution_options(synchronize_session=False)
    )
    unit.parent_id = parent.id
    session.flush()
    session.expire_all()


def delete(session: Session, scope: Scope, actor: Actor, unit_id: int) -> None:
    _writable(scope)
    unit = get(session, scope, unit_id)
    if unit.path == scope.path and not scope.everything:
        raise Forbidden("you cannot delete the root of your own scope")
    if session.scalar(select(func.count()).select_from(Unit).where(Unit.parent_id == unit.id)):
        raise Conflict("the unit still has units under it; move or delete them first")
    record(session, actor, "unit.delete", "unit", unit.id, name=unit.name, parent_id=unit.parent_id)
    session.delete(unit)
    session.flush()


MAX_DECLARED = 1_000_000


def _count(value: str | None) -> int:
    """A declared endpoint count from the CSV, within the bounds the API accepts."""
    count = int(value or 0)
    if not 0 <= count <= MAX_DECLARED:
        raise ValueError(f"a count must be between 0 and {MAX_DECLARED}, not {count}")
    return count


CSV_COLUMNS = ("name", "kind", "parent", "code", "servers", "workstations", "other")


def import_csv(session: Session, scope: Scope, actor: Actor, text: str) -> list[Unit]:
    """Add units from CSV (``name,kind,parent,code,servers,workstations,other``; ``parent`` is a code or name).

    All or nothing: the first bad row stops the import with its line number, and nothing is added.
    """
    _writable(scope)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("name", "kind") if c not in (reader.fieldnames or [])]
    if missing:
        raise BadRequest(f"the CSV needs the columns {', '.join(CSV_COLUMNS)} (missing: {', '.join(missing)})")
    created: list[Unit] = []
    by_key: dict[str, int] = {}
    for unit in subtree(session, scope):
        by_key[unit.name] = unit.id
        if unit.code:
            by_key[unit.code] = unit.id
    for line, row in enumerate(reader, start=2):
        try:
            parent_key = (row.get("parent") or "").strip()
            if parent_key and parent_key not in by_key:
                raise BadRequest(f"unknown parent {parent_key!r}")
            fields = UnitFields(
                name=(row.get("name") or "").strip(),
                kind=UnitKind((row.get("kind") or "").strip()),
                parent_id=by_key[parent_key] if parent_key else None,
                code=(row.get("code") or "").strip() or None,
                declared_servers=_count(row.get("servers")),
                declared_workstations=_count(row.get("workstations")),
                declared_other=_count(row.get("other")),
            )
            if not fields.name:
                raise BadRequest("empty name")
            unit = create(session, scope, actor, fields)
        except (ValueError, BadRequest, Conflict, Forbidden, NotFound) as exc:
            message = exc.message if isinstance(exc, BadRequest | Conflict | Forbidden | NotFound) else str(exc)
            raise BadRequest(f"CSV line {line}: {message}") from None
        created.append(unit)
        by_key[unit.name] = unit.id
        if unit.code:
            by_key[unit.code] = unit.id
    return created
