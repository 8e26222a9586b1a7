"""The message a recipient receives: every alert record raised since its previous message, grouped by kind, in
the rule's language (Vietnamese by default), in plain words, with links to the console pages that show the
evidence. The same content as text (e-mail) and as JSON (webhook, schema ``garrison.alerts/1``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from garrison import __version__
from garrison.server.agents.service import aware
from garrison.server.alerts.models import AlertKind, AlertRecord, AlertRule
from garrison.server.reports.statistics import ZONE

SCHEMA = "garrison.alerts/1"
#: Lines per kind in the text; items in the JSON. The rest is counted and on the console's alerts page.
TEXT_ITEMS, JSON_ITEMS = 20, 200

_WORDS: dict[str, dict[str, str]] = {
    "vi": {
        "title": "Garrison – {unit}: {summary}",
        "test_title": "Garrison – {unit}: tin nhắn thử",
        "test_body": "Đây là tin nhắn thử của Garrison cho {unit}. Nếu bạn nhận được tin này, cảnh báo sẽ đến được "
        "địa chỉ này.",
        "intro": "Garrison – cảnh báo cho {unit} và các đơn vị trực thuộc.",
        "period": "Từ {start} đến {end} (giờ Việt Nam).",
        "more": "… và {count} mục khác: xem {link}",
        "footer": "Tin nhắn được gom lại, nhiều nhất một tin mỗi {minutes} phút. Xem và thay đổi cảnh báo: {link}",
        "never": "chưa báo",
        AlertKind.NEW_DETECTION: "{count} phát hiện mã độc mới trên {computers} máy",
        AlertKind.OUTBREAK: "{count} đợt lây lan",
        AlertKind.OFFLINE: "{count} máy mất liên lạc quá {hours} giờ",
        AlertKind.OUTDATED: "{count} máy có mẫu nhận diện cũ hơn {days} ngày",
        AlertKind.UPDATE_FAILING: "{count} sự cố cập nhật",
        AlertKind.DEADLINE: "{count} đơn vị sắp hết hạn nộp báo cáo quý",
        "item_" + AlertKind.NEW_DETECTION: "{hostname}: {name} ({count} lần)",
        "item_" + AlertKind.OUTBREAK: "{name}: {computers} máy, {detections} phát hiện trong {minutes} phút ({hosts})",
        "item_" + AlertKind.OFFLINE: "{hostname}: liên lạc lần cuối {when}",
        "item_" + AlertKind.OUTDATED: "{hostname}: mẫu nhận diện ngày {when}",
        "item_" + AlertKind.UPDATE_FAILING: "{hostname}: {error}",
        "item_notice": "Máy chủ: {message}",
        "item_" + AlertKind.DEADLINE: "{unit}: báo cáo quý {quarter}/{year}, hạn {deadline}, còn {days_left} ngày",
    },
    "en": {
        "title": "Garrison – {unit}: {summary}",
        "test_title": "Garrison – {unit}: test message",
        "test_body": "This is a test message from Garrison for {unit}. If you received it, alerts reach this address.",
        "intro": "Garrison alerts for {unit} and the units under it.",
        "period": "From {start} to {end} (Vietnam time).",
        "more": "… and {count} more: see {link}",
        "footer": "Alerts are grouped: at most one message every {minutes} minutes. See and change the alerts: {link}",
        "never": "never reported",
        AlertKind.NEW_DETECTION: "{count} new malware detections on {computers} computers",
        AlertKind.OUTBREAK: "{count} outbreaks",
        AlertKind.OFFLINE: "{count} computers not heard from for more than {hours} hours",
        AlertKind.OUTDATED: "{count} computers with signatures older than {days} days",
        AlertKind.UPDATE_FAILING: "{count} update problems",
        AlertKind.DEADLINE: "{count} units whose quarterly report is due soon",
        "item_" + AlertKind.NEW_DETECTION: "{hostname}: {name} ({count} times)",
        "item_" + AlertKind.OUTBREAK: "{name}: {computers} computers, {detections} detections within {minutes} "
        "minutes ({hosts})",
        "item_" + AlertKind.OFFLINE: "{hostname}: last heard from {when}",
        "item_" + AlertKind.OUTDATED: "{hostname}: signatures of {when}",
        "item_" + AlertKind.UPDATE_FAILING: "{hostname}: {error}",
        "item_notice": "Server: {message}",
        "item_" + AlertKind.DEADLINE: "{unit}: report of quarter {quarter}/{year}, due {deadline}, {days_left} "
        "days left",
    },
}


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    text: str
    payload: dict[str, Any]


def _when(moment: datetime | str | None, words: dict[str, str]) -> str:
    if moment is None:
        return words["never"]
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(ZONE).strftime("%H:%M %d/%m/%Y")


def link(base: str, path: str, **query: object) -> str:
    """A console link: ``base`` (the console's address as people reach it, may be empty) and a path."""
    shown = {name: value for name, value in query.items() if value not in (None, "")}
    return base.rstrip("/") + path + (f"?{urlencode(shown)}" if shown else "")


def evidence(record: AlertRecord, base: str) -> str:
    """The console page that shows what the record is about."""
    details = record.details
    if record.kind == AlertKind.NEW_DETECTION:
        return link(base, f"/detections/{details.get('detection_id', '')}")
    if record.kind == AlertKind.OUTBREAK:
        return link(base, "/detections", name=details.get("name"))
    if record.kind == AlertKind.DEADLINE:
        details = record.details
        return link(base, "/reporting", unit=record.unit_id, year=details.get("year"), quarter=details.get("quarter"))
    if "agent_id" in details:
        return link(base, f"/agents/{details['agent_id']}")
    return link(base, "/updates")


def _item(record: AlertRecord, rule: AlertRule, words: dict[str, str]) -> str:
    try:
        return _describe(record, rule, words)
    except (KeyError, ValueError, TypeError):  # details of an older shape must not stop the whole message
        return record.subject


def _describe(record: AlertRecord, rule: AlertRule, words: dict[str, str]) -> str:
    details = record.details
    if record.kind == AlertKind.UPDATE_FAILING and "code" in details:
        return words["item_notice"].format(message=details["message"])
    values: dict[str, Any] = {**details, "count": record.count, "minutes": rule.outbreak_minutes}
    if record.kind == AlertKind.OUTBREAK:
        values["hosts"] = ", ".join(details.get("hosts", []))
        values["name"] = details.get("name") or record.subject
    elif record.kind == AlertKind.OFFLINE:
        values["when"] = _when(details.get("last_seen"), words)
    elif record.kind == AlertKind.OUTDATED:
        values["when"] = _when(details.get("signature_date"), words)
    elif record.kind == AlertKind.DEADLINE:
        values["deadline"] = _when(details["deadline"], words).split(" ")[1]
    return words["item_" + record.kind].format(**values)


def _summary(kind: str, records: Sequence[AlertRecord], rule: AlertRule, words: dict[str, str]) -> str:
    if kind == AlertKind.NEW_DETECTION:
        computers = len({r.details.get("agent_id") for r in records})
        return words[kind].format(count=sum(r.count for r in records), computers=computers)
    return words[kind].format(count=len(records), hours=rule.offline_hours, days=rule.outdated_days)


def build(
    rule: AlertRule, unit_name: str, records: Sequence[AlertRecord], start: datetime, end: datetime, base: str
) -> Message:
    """The digest of ``records`` (raised in (start, end]) for ``rule``'s recipients."""
    words = _WORDS.get(rule.language, _WORDS["vi"])
    by_kind: dict[str, list[AlertRecord]] = {}
    for record in sorted(records, key=lambda r: (r.raised_at, r.id)):
        by_kind.setdefault(record.kind, []).append(record)
    kinds = [kind.value for kind in AlertKind if kind.value in by_kind]
    summaries = {kind: _summary(kind, by_kind[kind], rule, words) for kind in kinds}
    page = link(base, "/alerts", unit=rule.unit_id)
    lines = [
        words["intro"].format(unit=unit_name),
        words["period"].format(start=_when(start, words), end=_when(end, words)),
    ]
    items: list[dict[str, Any]] = []
    for kind in kinds:
        lines += ["", summaries[kind][:1].upper() + summaries[kind][1:] + ":"]
        for record in by_kind[kind][:TEXT_ITEMS]:
            lines.append(f"- {_item(record, rule, words)} — {evidence(record, base)}")
        if len(by_kind[kind]) > TEXT_ITEMS:
            lines.append(words["more"].format(count=len(by_kind[kind]) - TEXT_ITEMS, link=page))
        for record in by_kind[kind]:
            if len(items) < JSON_ITEMS:
                items.append(_json_item(record, rule, words, base))
    lines += ["", words["footer"].format(minutes=rule.quiet_minutes, link=page)]
    subject = words["title"].format(unit=unit_name, summary=", ".join(summaries[k] for k in kinds))
    payload = {
        "schema": SCHEMA,
        "test": False,
        "sender": f"Garrison {__version__}",
        "unit": {"id": rule.unit_id, "name": unit_name},
        "language": rule.language,
        "title": subject,
        "text": "\n".join(lines),
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "summary": {kind: _counts(kind, by_kind[kind]) for kind in kinds},
        "alerts": items,
        "omitted": max(0, len(records) - len(items)),
        "link": page,
    }
    return Message(subject[:255], "\n".join(lines), payload)


def _counts(kind: str, records: Sequence[AlertRecord]) -> dict[str, int]:
    counts = {"alerts": len(records)}
    if kind == AlertKind.NEW_DETECTION:
        counts["detections"] = sum(r.count for r in records)
        counts["computers"] = len({r.details.get("agent_id") for r in records})
    return counts


def _json_item(record: AlertRecord, rule: AlertRule, words: dict[str, str], base: str) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": record.kind,
        "unit_id": record.unit_id,
        "subject": record.subject,
        "text": _item(record, rule, words),
        "count": record.count,
        "first_seen": aware(record.first_seen).isoformat(),
        "raised_at": aware(record.raised_at).isoformat(),
        "details": record.details,
        "link": evidence(record, base),
    }


def trial_message(rule: AlertRule, unit_name: str, now: datetime, base: str) -> Message:
    words = _WORDS.get(rule.language, _WORDS["vi"])
    subject = words["test_title"].format(unit=unit_name)
    text = words["test_body"].format(unit=unit_name)
    page = link(base, "/alerts", unit=rule.unit_id)
    payload = {
        "schema": SCHEMA,
        "test": True,
        "sender": f"Garrison {__version__}",
        "unit": {"id": rule.unit_id, "name": unit_name},
        "language": rule.language,
        "title": subject,
        "text": text,
        "period": {"start": now.isoformat(), "end": now.isoformat()},
        "summary": {},
        "alerts": [],
        "omitted": 0,
        "link": page,
    }
    return Message(subject[:255], text, payload)
