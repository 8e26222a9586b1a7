"""The organisation tree, through its service, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from garrison.server.audit.models import AuditEvent
from garrison.server.audit.service import SYSTEM
from garrison.server.auth.scope import Scope
from garrison.server.errors import BadRequest, Conflict, Forbidden, NotFound
from garrison.server.units import service
from garrison.server.units.models import Unit, UnitKind
from garrison.server.units.service import UnitFields

ALL = Scope.whole_tree()


def _tree(session: Session) -> dict[str, Unit]:
    province = service.create(session, ALL, SYSTEM, UnitFields("Tỉnh Bắc Ninh", UnitKind.PROVINCE, code="BN"))
    health = service.create(session, ALL, SYSTEM, UnitFields("Sở Y tế", UnitKind.DEPARTMENT, province.id, "BN-SYT"))
    hospital = service.create(
        session, ALL, SYSTEM, UnitFields("Bệnh viện Đa khoa", UnitKind.UNIT, health.id, declared_workstations=120)
    )
    district = service.create(session, ALL, SYSTEM, UnitFields("UBND huyện Gia Bình", UnitKind.DISTRICT, province.id))
    return {"province": province, "health": health, "hospital": hospital, "district": district}


def test_subtrees_follow_the_tree(session: Session) -> None:
    units = _tree(session)
    assert [u.name for u in service.subtree(session, ALL)] == [
        "Tỉnh Bắc Ninh",
        "Sở Y tế",
        "Bệnh viện Đa khoa",
        "UBND huyện Gia Bình",
    ]
    health_scope = Scope(units["health"].path)
    assert [u.name for u in service.subtree(session, health_scope)] == ["Sở Y tế", "Bệnh viện Đa khoa"]
    with pytest.raises(NotFound):
        service.get(session, health_scope, units["district"].id)
    assert units["hospital"].declared_total == 120


def test_only_one_root_and_unique_names(session: Session) -> None:
    units = _tree(session)
    with pytest.raises(Conflict, match="root"):
        service.create(session, ALL, SYSTEM, UnitFields("Tỉnh khác", UnitKind.PROVINCE))
    with pytest.raises(Conflict, match="already exists"):
        service.create(session, ALL, SYSTEM, UnitFields("Sở Y tế", UnitKind.DEPARTMENT, units["province"].id))
    with pytest.raises(Conflict, match="code"):
        service.create(session, ALL, SYSTEM, UnitFields("Sở Khác", UnitKind.DEPARTMENT, units["province"].id, "BN-SYT"))


def test_moving_a_unit_moves_its_subtree(session: Session) -> None:
    units = _tree(session)
    health = units["health"]
    fields = UnitFields(health.name, health.kind, units["district"].id, health.code)
    service.update_unit(session, ALL, SYSTEM, health.id, fields)
    hospital = service.get(session, ALL, units["hospital"].id)
    assert hospital.path == f"{units['district'].path}{health.id}/{hospital.id}/"
    with pytest.raises(BadRequest, match="under itself"):
        service.update_unit(session, ALL, SYSTEM, units["district"].id, UnitFields("x", UnitKind.DISTRICT, hospital.id))


def test_delete_needs_an_empty_unit(session: Session) -> None:
    units = _tree(session)
    with pytest.raises(Conflict, match="still has units"):
        service.delete(session, ALL, SYSTEM, units["health"].id)
    service.delete(session, ALL, SYSTEM, units["hospital"].id)
    service.delete(session, ALL, SYSTEM, units["health"].id)
    assert len(service.subtree(session, ALL)) == 2


def test_scoped_callers_stay_inside_their_subtree(session: Session) -> None:
    units = _tree(session)
    scope = Scope(units["health"].path)
    with pytest.raises(Forbidden):
        service.delete(session, scope, SYSTEM, units["health"].id)
    with pytest.raises(NotFound):
        service.create(session, scope, SYSTEM, UnitFields("Lạc", UnitKind.UNIT, units["district"].id))
    with pytest.raises(Forbidden, match="read-only"):
        service.create(
            session,
            Scope(units["health"].path, writable=False),
            SYSTEM,
            UnitFields("y", UnitKind.UNIT, units["health"].id),
        )
    added = service.create(session, scope, SYSTEM, UnitFields("Trạm Y tế", UnitKind.UNIT, units["health"].id))
    assert added.path.startswith(units["health"].path)


CSV = """name,kind,parent,code,servers,workstations,other
Tỉnh Bắc Ninh,province,,BN,2,10,1
Sở Giáo dục,department,BN,BN-SGD,1,40,3
Trường THPT Chuyên,unit,BN-SGD,,0,80,0
"""


def test_csv_import(session: Session) -> None:
    created = service.import_csv(session, ALL, SYSTEM, CSV)
    assert [u.name for u in created] == ["Tỉnh Bắc Ninh", "Sở Giáo dục", "Trường THPT Chuyên"]
    assert created[2].parent_id == created[1].id
    assert created[2].declared_workstations == 80
    assert session.query(AuditEvent).filter_by(action="unit.create").count() == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,kind\nA,planet\n", "CSV line 2: 'planet' is not a valid UnitKind"),
        ("name,kind,parent\nA,province\nB,unit,Nowhere\n", "CSV line 3: unknown parent 'Nowhere'"),
        ("title\nA\n", "needs the columns"),
        ("name,kind,servers\nA,province,many\n", "CSV line 2: invalid literal"),
    ],
)
def test_csv_import_errors_name_the_line_and_add_nothing(session: Session, text: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        service.import_csv(session, ALL, SYSTEM, text)
