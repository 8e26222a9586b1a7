"""Policy settings in the console's words: labels and hints, what each value means in plain language, and the
policy form's fields parsed into a layer (only the settings marked "set here"), with the policy service's
validation messages put into plain words next to their field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from garrison.protocol.policy import SETTINGS, AgentPolicy
from garrison.server.console import i18n
from garrison.server.console.i18n import N_
from garrison.server.console.web import (
    ConsoleRoute,
    gettext,
)
from garrison.server.errors import ServerError

#: Rows of scheduled scans the form offers.
SCHEDULE_ROWS = 5
LIMITS = ("max_file_mb", "max_scan_mb", "max_depth", "max_members", "max_scan_seconds")
LIST_SETTINGS = ("scan_paths", "exclude", "realtime_paths")
ACTION_SETTINGS = ("action", "realtime_action")
NUMBER_SETTINGS = ("heartbeat_seconds", "update_seconds")
#: What the form proposes for a setting not set here (a starting point when someone switches it to "set here"; an
#: inherited setting is not stored, so these apply to no computer).
SUGGESTED: dict[str, Any] = {
    "scan_paths": ["/"],
    "exclude": ["/proc/*", "/sys/*", "/dev/*", "/run/*"],
    "realtime_enabled": True,
    "realtime_paths": ["/home", "/tmp"],  # noqa: S108 (paths to watch, not to write)
    "realtime_action": "quarantine",
}
MAX_NAME = 128
MAX_DESCRIPTION = 4000

SETTING_LABELS = {
    "scan_paths": N_("What a scan covers"),
    "exclude": N_("Never scanned"),
    "action": N_("When a scan finds a threat"),
    "schedules": N_("Scheduled scans"),
    "realtime_enabled": N_("Real-time protection"),
    "realtime_paths": N_("Folders watched in real time"),
    "realtime_action": N_("When real-time protection finds a threat"),
    "heartbeat_seconds": N_("Report to the server every"),
    "update_seconds": N_("Look for new signatures every"),
    "limits": N_("Scan limits"),
}
SETTING_HINTS = {
    "scan_paths": N_("The folders a scan reads when it names none (scheduled scans, “scan now”). One per line."),
    "exclude": N_(
        "Files and folders no scan ever reads, one per line. * stands for any name, for example /proc/* or "
        "C:\\Backup\\*"
    ),
    "action": N_("For scheduled scans and scans started from this console."),
    "schedules": N_(
        "When scans run by themselves. The time is written as five fields: minute, hour, day of the month, month, "
        "day of the week. “0 12 * * 1-5” = 12 noon on weekdays; “30 7 * * *” = 7:30 every day; “0 22 * * 5” = "
        "10 p.m. on Fridays. Each computer waits a random number of minutes (at most the delay) so that they do "
        "not all start together. An empty list means: no scheduled scans."
    ),
    "realtime_enabled": N_("Checks files as soon as they are written or opened."),
    "realtime_paths": N_("Where downloads and attachments land. One folder per line."),
    "realtime_action": N_("Quarantine is the safe choice: the file can be restored if it was a false alarm."),
    "heartbeat_seconds": N_("In seconds, from 10 to 86,400. The computer's state on this console is as fresh as this."),
    "update_seconds": N_("In seconds, from 60 to 604,800 (7 days)."),
    "limits": N_("Leave a box empty to keep the engine's own limit. Larger limits find more, but scan slower."),
}
LIMIT_LABELS = {
    "max_file_mb": N_("Largest file scanned (MB)"),
    "max_scan_mb": N_("Most data read from one file, archives unpacked (MB)"),
    "max_depth": N_("Archives inside archives: deepest level"),
    "max_members": N_("Most files read inside one archive"),
    "max_scan_seconds": N_("Longest time spent on one file (seconds)"),
}
ACTION_CHOICES = {
    "report": N_("Report only"),
    "quarantine": N_("Quarantine the file"),
    "delete": N_("Delete the file"),
}

# Pydantic's words about one setting, in plain words.
_PROBLEMS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), m)
    for p, m in [
        (
            r"Value error, a schedule has five fields.*",
            N_("a time has five fields: minute, hour, day of the month, month, day of the week (e.g. 0 12 * * 1-5)"),
        ),
        (r"Value error, not a valid schedule: '(?P<value>.*)'", N_("“%(value)s” is not a valid time")),
        (r"Input should be greater than or equal to (?P<n>\d+)", N_("it must be at least %(n)s")),
        (r"Input should be less than or equal to (?P<n>\d+)", N_("it must be at most %(n)s")),
        (r"Input should be 'report', 'quarantine' or 'delete'", N_("choose what to do")),
        (r"List should have at most (?P<n>\d+) items.*", N_("at most %(n)s lines")),
        (r"String should have at most (?P<n>\d+) characters", N_("at most %(n)s characters")),
    ]
]
_INVALID = re.compile(r"invalid policy: (?P<problems>.*)", re.DOTALL)
_PROBLEM = re.compile(r"(?P<loc>[\w.]+): (?P<msg>.*)", re.DOTALL)


def explain(message: str, _: i18n.Gettext) -> str | None:
    """An invalid policy's problems in plain words, or ``None`` when the message is not about one (the other
    messages of the policy service are in ``i18n.explain``)."""
    if _INVALID.fullmatch(message):
        return invalid_policy(message, _, [])[0]
    return None


def _problem(text: str, _: i18n.Gettext) -> str:
    for pattern, translated in _PROBLEMS:
        found = pattern.fullmatch(text)
        if found:
            return _(translated) % found.groupdict()
    return text


def invalid_policy(message: str, _: i18n.Gettext, rows: Sequence[int]) -> tuple[str, dict[str, str]]:
    """The service's "invalid policy: …" as one sentence and as problems by form field (``rows``: the form row
    of each scheduled scan sent)."""
    found = _INVALID.fullmatch(message)
    if not found:
        return message, {}
    parts, fields = [], {}
    for item in found["problems"].split("; "):
        problem = _PROBLEM.fullmatch(item)
        if not problem:
            parts.append(item)
            continue
        loc = problem["loc"].split(".")
        text = _problem(problem["msg"], _)
        setting = loc[0]
        label = _(SETTING_LABELS[setting]) if setting in SETTING_LABELS else setting
        field = setting
        if setting == "schedules" and len(loc) >= 2 and loc[1].isdigit():
            index = int(loc[1])
            row = rows[index] if index < len(rows) else index
            label = _("Scheduled scan %(n)s") % {"n": row + 1}
            field = f"schedule_{'delay' if loc[-1] == 'random_delay_minutes' else loc[-1]}_{row}"
        elif setting == "limits" and len(loc) >= 2 and loc[1] in LIMIT_LABELS:
            label, field = _(LIMIT_LABELS[loc[1]]), loc[1]
        parts.append(f"{label}: {text}")
        fields[field] = text
    return _("The policy was not saved: %(problems)s.") % {"problems": "; ".join(parts)}, fields


def _explained(error: ServerError, request: Request) -> ServerError:
    """``error`` with its message in the reader's words when it is one of the policy service's."""
    words = explain(error.message, gettext(request))
    return error if words is None else type(error)(words)


class _Explaining(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def explaining_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ServerError as exc:
                raise _explained(exc, request) from exc

        return explaining_handler


class PolicyRoute(ConsoleRoute, _Explaining):
    """A console route (errors as pages) whose policy errors are put in plain words first."""


async def _form_fields(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


FormFields = Annotated[dict[str, str], Depends(_form_fields)]


# -- settings in plain words ----------------------------------------------------------------------------------


def _duration(seconds: int, _: i18n.Gettext) -> str:
    if seconds % 3600 == 0:
        return _("%(n)s hours") % {"n": seconds // 3600} if seconds != 3600 else _("1 hour")
    if seconds % 60 == 0:
        return _("%(n)s minutes") % {"n": seconds // 60}
    return _("%(n)s seconds") % {"n": seconds}


def _paths(values: Sequence[str], _: i18n.Gettext) -> str:
    return ", ".join(values) if values else _("(none)")


def describe(setting: str, value: Any, _: i18n.Gettext) -> str:
    """A setting's value as a civil servant would say it."""
    if setting in LIST_SETTINGS:
        return _paths(value, _)
    if setting in ACTION_SETTINGS:
        code = getattr(value, "value", value)
        return _(ACTION_CHOICES[code]) if code in ACTION_CHOICES else str(code)
    if setting == "realtime_enabled":
        return _("On") if value else _("Off")
    if setting in NUMBER_SETTINGS:
        return _duration(int(value), _)
    if setting == "schedules":
        if not value:
            return _("no scheduled scans")
        runs = []
        for item in value:
            scan = item if isinstance(item, dict) else item.model_dump()
            where = _paths(scan.get("paths") or [], _) if scan.get("paths") else _("the usual folders")
            delay = _("random delay up to %(n)s minutes") % {"n": scan.get("random_delay_minutes", 30)}
            runs.append(f"{scan['cron']} ({where}; {delay})")
        return "; ".join(runs)
    if setting == "limits":
        limits = value if isinstance(value, dict) else value.model_dump()
        chosen = [f"{_(LIMIT_LABELS[k])}: {limits[k]}" for k in LIMITS if limits.get(k) is not None]
        return "; ".join(chosen) if chosen else _("the engine's own limits")
    return str(value)


def setting_lines(settings: Mapping[str, Any], _: i18n.Gettext) -> list[tuple[str, str]]:
    """``(label, value)`` of each setting a layer sets, in the form's order."""
    return [(_(SETTING_LABELS[name]), describe(name, settings[name], _)) for name in SETTINGS if name in settings]


# -- the policy form ------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def form_values(settings: Mapping[str, Any]) -> dict[str, str]:
    """The form's fields for a layer: its settings marked "set here", the others showing a suggestion."""
    full = AgentPolicy.model_validate({**SUGGESTED, **settings}).model_dump(mode="json")
    values = {f"mode_{name}": "set" if name in settings else "inherit" for name in SETTINGS}
    for name in LIST_SETTINGS:
        values[name] = "\n".join(full[name])
    for name in ACTION_SETTINGS:
        values[name] = full[name]
    for name in NUMBER_SETTINGS:
        values[name] = str(full[name])
    values["realtime_enabled"] = "on" if full["realtime_enabled"] else "off"
    for key in LIMITS:
        values[key] = "" if full["limits"][key] is None else str(full["limits"][key])
    for row in range(SCHEDULE_ROWS):
        scan = full["schedules"][row] if row < len(full["schedules"]) else {}
        values[f"schedule_cron_{row}"] = scan.get("cron", "")
        values[f"schedule_paths_{row}"] = "\n".join(scan.get("paths", []))
        values[f"schedule_delay_{row}"] = str(scan.get("random_delay_minutes", 30))
    return values


def _whole(text: str, field: str, errors: dict[str, str], _: i18n.Gettext) -> int | None:
    text = text.strip()
    if re.fullmatch(r"-?\d{1,9}", text):
        return int(text)
    errors[field] = _("Enter a whole number.")
    return None


def parse_layer(values: Mapping[str, str], _: i18n.Gettext) -> tuple[dict[str, Any], dict[str, str], list[int]]:
    """The settings marked "set here", the problems by field, and the form row of each scheduled scan sent."""
    settings: dict[str, Any] = {}
    errors: dict[str, str] = {}
    rows: list[int] = []
    for name in SETTINGS:
        if values.get(f"mode_{name}") != "set":
            continue
        raw = values.get(name, "")
        if name in LIST_SETTINGS:
            settings[name] = _lines(raw)
        elif name in ACTION_SETTINGS:
            settings[name] = raw
        elif name in NUMBER_SETTINGS:
            settings[name] = _whole(raw, name, errors, _)
        elif name == "realtime_enabled":
            settings[name] = raw == "on"
        elif name == "limits":
            limits = {key: _whole(values[key], key, errors, _) for key in LIMITS if values.get(key, "").strip()}
            settings[name] = limits
        elif name == "schedules":
            scans = []
            for row in range(SCHEDULE_ROWS):
                cron = values.get(f"schedule_cron_{row}", "").strip()
                paths = _lines(values.get(f"schedule_paths_{row}", ""))
                if not cron:
                    if paths:
                        errors[f"schedule_cron_{row}"] = _("Enter when this scan runs.")
                    continue
                delay_text = values.get(f"schedule_delay_{row}", "").strip() or "30"
                delay = _whole(delay_text, f"schedule_delay_{row}", errors, _)
                scans.append({"cron": cron, "paths": paths, "random_delay_minutes": delay})
                rows.append(row)
            settings[name] = scans
    return settings, errors, rows


def name_problems(values: Mapping[str, str], _: i18n.Gettext) -> dict[str, str]:
    errors = {}
    if not values["name"] or len(values["name"]) > MAX_NAME:
        errors["name"] = _("Enter a name (at most %(n)s characters).") % {"n": MAX_NAME}
    if len(values["description"]) > MAX_DESCRIPTION:
        errors["description"] = _("The description is too long (at most %(n)s characters).") % {"n": MAX_DESCRIPTION}
    return errors


DONE = {
    "created": N_("The policy was added."),
    "saved": N_("The policy was saved. The computers it applies to receive it at their next report."),
    "deleted": N_("The policy was deleted."),
    "assigned": N_("The unit's policy was saved."),
    "group_saved": N_("The group was saved."),
    "group_deleted": N_("The group was deleted; its computers keep their unit's policy."),
    "removed": N_("The file was taken off the allow-list."),
}
