"""The console's catalogs: extracted text is up to date, every entry is translated to Vietnamese, errors explained."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from garrison.server.console import i18n
from garrison.server.errors import BadRequest, TooManyRequests

CONSOLE = Path(i18n.__file__).parent


def _catalog(name: str, locale: str | None = None) -> Catalog:
    with (CONSOLE / "locales" / name).open("rb") as po:
        return read_po(po, locale=locale)


def test_the_template_is_up_to_date() -> None:
    with (CONSOLE / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    extracted = {
        message for _file, _line, message, _comments, _context in extract_from_dir(CONSOLE, method_map, options_map)
    }
    committed = {m.id for m in _catalog("messages.pot") if m.id}
    assert extracted == committed, "run `make messages` and translate the new entries"


@pytest.mark.parametrize("language", ["vi", "en"])
def test_catalogs_follow_the_template(language: str) -> None:
    template = {m.id for m in _catalog("messages.pot") if m.id}
    catalog = _catalog(f"{language}/LC_MESSAGES/messages.po", language)
    assert {m.id for m in catalog if m.id} == template, "run `make messages`"
    problems = [(m.id, errors) for m, errors in catalog.check() if errors]
    assert not problems  # e.g. a %(name)s placeholder lost in translation


def test_every_entry_has_a_vietnamese_translation() -> None:
    catalog = _catalog("vi/LC_MESSAGES/messages.po", "vi")
    untranslated = [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]
    assert not untranslated


@pytest.mark.parametrize(
    ("message", "vietnamese"),
    [
        ("wrong username, password or one-time code", "Tên đăng nhập, mật khẩu hoặc mã xác thực không đúng."),
        ("the username 'an' is taken", "Tên đăng nhập “an” đã có người dùng."),
        ("CSV line 7: 'tinh' is not a valid UnitKind", "Dòng 7 của tệp: loại “tinh” không thuộc các loại"),
        (
            "CSV line 3: invalid literal for int() with base 10: 'mười'",
            "Dòng 3 của tệp: “mười” không phải là số nguyên",
        ),
        ("something new from a service", "something new from a service"),
    ],
)
def test_service_messages_are_explained_in_plain_words(message: str, vietnamese: str) -> None:
    assert vietnamese in i18n.explain(message, i18n.translations("vi").gettext)


def test_errors_are_explained() -> None:
    vi = i18n.translations("vi").gettext
    assert "đợi 2 phút" in i18n.explain_error(TooManyRequests("too many failed logins", retry_after=61), vi)
    assert i18n.explain_error(BadRequest("empty name"), i18n.translations("en").gettext) == "the name is empty"


def test_numbers_and_times_read_the_local_way() -> None:
    assert i18n.number(1234567, "vi") == "1.234.567"
    assert i18n.number(1234567, "en") == "1,234,567"
    assert i18n.moment(datetime(2026, 11, 25, 17, 30, tzinfo=UTC)) == "26/11/2026 00:30"
    assert i18n.moment(None) == "—"
