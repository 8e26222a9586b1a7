"""Languages of the console: Vietnamese by default, English on request, through gettext catalogs.

The catalogs are the committed ``locales/<lang>/LC_MESSAGES/messages.po`` files, compiled in memory when first
used (so a clean clone needs no build step); ``locales/messages.pot`` is extracted from the templates and from
the ``N_``/``_`` calls of the console's Python code (``make messages`` refreshes both).

This module also turns the services' English error messages into plain words in the reader's language: the
services stay language-neutral and the console explains.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

from garrison.server.errors import ServerError, TooManyRequests

LOCALES = Path(__file__).resolve().parent / "locales"
LANGUAGES = {"vi": "Tiếng Việt", "en": "English"}
DEFAULT_LANGUAGE = "vi"
LANGUAGE_COOKIE = "garrison_lang"
# Times are stored in UTC and shown in Vietnam's time.
DISPLAY_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")

Gettext = Callable[[str], str]


def N_(message: str) -> str:
    return message


def language_of(cookie: str | None) -> str:
    return cookie if cookie in LANGUAGES else DEFAULT_LANGUAGE


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> Translations:
    """The compiled catalog of ``language`` (read from its ``.po`` file once per process)."""
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def number(value: int, language: str) -> str:
    """``1234`` as ``1.234`` in Vietnamese and ``1,234`` in English."""
    return format_decimal(value, locale=language)


def moment(value: datetime | None) -> str:
    """A stored time as Vietnam's local time, day first (the way Vietnamese documents write dates)."""
    if value is None:
        return "—"
    aware = value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))
    return aware.astimezone(DISPLAY_ZONE).strftime("%d/%m/%Y %H:%M")


# Labels of stored codes, translated where they are shown.
ROLE_LABELS = {
    "admin": N_("Administrator (whole province)"),
    "unit_admin": N_("Unit administrator"),
    "auditor": N_("Auditor (read only)"),
}
KIND_LABELS = {
    "province": N_("Province"),
    "department": N_("Department or agency"),
    "district": N_("District or commune"),
    "unit": N_("Unit"),
}
ACTION_LABELS = {
    "auth.login": N_("Logged in"),
    "auth.login_failed": N_("Failed login"),
    "user.create": N_("Created a user"),
    "api_token.create": N_("Created an API token"),
    "unit.create": N_("Created a unit"),
    "unit.update": N_("Changed a unit"),
    "unit.delete": N_("Deleted a unit"),
    "enrollment_token.create": N_("Made an enrollment token"),
    "enrollment_token.revoke": N_("Revoked an enrollment token"),
    "agent.enroll": N_("A computer enrolled"),
    "agent.revoke": N_("Revoked a computer"),
    "detection.triage": N_("Reviewed a detection"),
    "policy.create": N_("Created a policy"),
    "policy.update": N_("Changed a policy"),
    "policy.delete": N_("Deleted a policy"),
    "policy.assign": N_("Gave a unit a policy"),
    "policy.unassign": N_("Took a unit's policy away"),
    "group.create": N_("Created a group of computers"),
    "group.update": N_("Changed a group of computers"),
    "group.delete": N_("Deleted a group of computers"),
    "agent.group": N_("Moved a computer to a group"),
    "allowlist.add": N_("Allowed a file on every computer"),
    "allowlist.remove": N_("Removed a file from the allowed list"),
    "task.scan": N_("Asked computers to scan"),
    "task.update": N_("Asked computers to update"),
    "task.restore": N_("Asked to restore a quarantined file"),
    "task.delete": N_("Asked to delete a quarantined file"),
    "task.collect": N_("Asked to collect a file"),
    "task.cancel": N_("Cancelled a task"),
    "sample.download": N_("Downloaded a collected file"),
    "signature_source.create": N_("Added a signature source"),
    "signature_source.import": N_("Imported a new version of a signature source"),
    "signature_source.refused": N_("A signature file was refused"),
    "signature_source.update": N_("Changed a signature source"),
    "signature_source.enable": N_("Enabled a signature source"),
    "signature_source.disable": N_("Disabled a signature source"),
    "signature_source.delete": N_("Deleted a signature source"),
    "local_signature.add": N_("Added a local signature"),
    "local_signature.delete": N_("Deleted a local signature"),
    "release.publish": N_("Published a signature release"),
    "release.promote": N_("Sent a signature release to every computer"),
    "release.pull": N_("Took back a signature release"),
    "rollout.configure": N_("Changed how releases reach the computers"),
    "agent_release.add": N_("Added an agent version"),
    "agent_release.general": N_("Sent an agent version to every computer"),
    "agent_release.pulled": N_("Took back an agent version"),
    "sharing.stix_export": N_("Exported indicators (STIX 2.1)"),
    "sharing.avreport_export": N_("Exported the report to the national authority (AVReport)"),
    "report.quarterly_export": N_("Exported the quarterly report"),
}
STATE_LABELS = {
    "online": N_("Online"),
    "offline": N_("Offline"),
    "stale": N_("Not heard from for over 14 days"),
    "revoked": N_("Revoked"),
}
TRIAGE_LABELS = {
    "new": N_("To review"),
    "resolved": N_("Resolved"),
    "false_positive": N_("False alarm"),
}
# What the agent did with a detected file.
DETECTION_ACTION_LABELS = {
    "report": N_("Reported only"),
    "quarantine": N_("Moved to quarantine"),
    "delete": N_("Deleted"),
}


def label(table: dict[str, str], code: str, _: Gettext) -> str:
    """The translated label of ``code``, or the code itself when it is new to the console."""
    return _(table[code]) if code in table else code


# The services' messages (English, for the API) and what the console says instead. The first pattern that
# matches the whole message wins; its named groups fill the translation.
_EXPLAINED: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), m)
    for p, m in [
        (r"wrong username, password or one-time code", N_("The username, password or one-time code is wrong.")),
        (r"not logged in", N_("Please log in.")),
        # The national authority's export and outbox (sharing.avreport, sharing.outbox).
        (
            r"configure the national authority's address first: set (?P<settings>\S+)",
            N_("The national authority's address is not set yet (setting %(settings)s), so no report can be sent."),
        ),
        (
            r"configure the national authority export first: set (?P<settings>.+)",
            N_("The national authority export is not set up yet: the settings %(settings)s are missing."),
        ),
        (
            r"cannot read (?P<name>\S+) \((?P<path>[^)]*)\): (?P<reason>.+)",
            N_("The server cannot read the file of the setting %(name)s (%(path)s): %(reason)s."),
        ),
        # The update channel (updates.releases, updates.rollout, the agent-software form).
        (
            r"the signature set does not compile, so it was not published: (?P<detail>.*)",
            N_(
                "The signatures could not be checked, so nothing was published and the computers keep the current "
                "release. Correct or disable the source that is wrong. Reason given by the engine: %(detail)s"
            ),
        ),
        (
            r"the signature set is not valid, so it was not published: (?P<detail>.*)",
            N_(
                "The signatures are not valid, so nothing was published and the computers keep the current "
                "release. Reason given by the engine: %(detail)s"
            ),
        ),
        (
            r"release (?P<n>\d+) is (?P<stage>\w+), not a canary release",
            N_("Release %(n)s is not on trial any more: it cannot be promoted."),
        ),
        (r"release (?P<n>\d+) was already pulled back", N_("Release %(n)s was already taken back.")),
        (
            r"there is no release before (?P<n>\d+) to go back to",
            N_("There is no earlier release to go back to: release %(n)s cannot be taken back."),
        ),
        (
            r"release (?P<n>\d+) is no longer kept on this server",
            N_(
                "Release %(n)s is no longer kept on this server, so its content cannot be restored. Publish a "
                "corrected release instead."
            ),
        ),
        (r"no release (?P<n>\d+)", N_("There is no release %(n)s.")),
        (r"no agent group \d+", N_("This group does not exist any more. Choose another one.")),
        (
            r"the canary time must be between 0 and 720 hours",
            N_("The trial time must be a number of hours from 0 to 720."),
        ),
        (r"'(?P<version>.*)' is not a version", N_("“%(version)s” is not a version number (for example 1.4.2).")),
        (
            r"an agent release must be a wheel \(\.whl, a zip file\)",
            N_("The file must be a Garrison agent package (a .whl file)."),
        ),
        (r"agent version (?P<version>.*) was added already", N_("Agent version %(version)s was added already.")),
        (r"no agent version (?P<version>.*)", N_("There is no agent version %(version)s.")),
        (
            r"an agent wheel may be at most (?P<n>\d+) MiB",
            N_("The agent package may be at most %(n)s MiB."),
        ),
        (
            r"(?P<n>\d+) canary computers reported an update failure",
            N_("%(n)s computers of the trial group reported an update failure"),
        ),
        (
            r"(?P<n>\d+) false positives were allow-listed since it was published",
            N_("%(n)s files were allowed as false alarms since it was published"),
        ),
        (r"choose a file", N_("Choose a file.")),
        (r"the signature sources changed", N_("The signature sources changed.")),
        (r"published by an admin", N_("Published by an administrator.")),
        (r"published from the command line", N_("Published from the command line.")),
        (
            r"pull-back of release (?P<n>\d+): the content of release (?P<m>\d+)",
            N_("Release %(n)s was taken back: the content of release %(m)s again."),
        ),
        (r"no such page", N_("This page does not exist.")),
        (r"the form is not valid", N_("Some fields of the form are not valid (too long or in the wrong format).")),
        (r"the session expired; log in again", N_("Your session has ended. Please log in again.")),
        (r"the account is disabled", N_("This account is disabled. Ask an administrator.")),
        (
            r"the password must be at least (?P<n>\d+) characters long",
            N_("The password must have at least %(n)s characters."),
        ),
        (
            r"the password repeats too few different characters",
            N_("The password repeats the same few characters. Choose a longer, more varied one."),
        ),
        (
            r"a username uses letters, digits, '\.', '_' and '-'",
            N_("A username may only contain letters without accents, digits, '.', '_' and '-'."),
        ),
        (r"the username '(?P<name>.*)' is taken", N_("The username “%(name)s” is already taken.")),
        (
            r"only an administrator can create administrators",
            N_("Only a province administrator can create administrators."),
        ),
        (
            r"unit administrators and auditors belong to a unit",
            N_("Choose the unit this person belongs to."),
        ),
        (r"no unit \d+", N_("This unit does not exist or is outside your part of the organisation.")),
        (r"no user \d+", N_("This user does not exist or is outside your part of the organisation.")),
        (r"no enrollment token \d+", N_("This token does not exist or is outside your part of the organisation.")),
        (r"no agent .*", N_("This computer does not exist or is outside your part of the organisation.")),
        (r"no detection .*", N_("This detection does not exist or is outside your part of the organisation.")),
        (
            r"an enrollment token lasts between a few minutes and 365 days",
            N_("The number of days must be a whole number from 1 to 365."),
        ),
        (r"read-only access", N_("Your account can only read; it cannot make changes.")),
        # policies and groups
        (r"no policy \d+", N_("This policy does not exist or is outside your part of the organisation.")),
        (
            r"this policy belongs to a unit above yours: you may use it, not change it",
            N_("This policy belongs to a unit above yours: you may use it, but not change it."),
        ),
        (
            r"this policy is in use by (?P<units>\d+) units and (?P<groups>\d+) groups; assign them another first",
            N_(
                "This policy is still used by %(units)s units and %(groups)s groups. Give them another policy "
                "first, then delete it."
            ),
        ),
        (
            r"a policy named '(?P<name>.*)' in this unit already exists",
            N_("The unit already has a policy named “%(name)s”."),
        ),
        (
            r"a group named '(?P<name>.*)' in this unit already exists",
            N_("The unit already has a group named “%(name)s”."),
        ),
        (
            r"some computers of this group are outside the new unit; take them out first",
            N_("Some computers of this group are not in the new unit. Take them out of the group first."),
        ),
        (
            r"a computer can only join a group of its own unit or of a unit above it",
            N_("A computer can only join a group of its own unit or of a unit above it."),
        ),
        (
            r"only a province administrator may allow a file on every computer",
            N_("Only a province administrator can allow a file on every computer."),
        ),
        (
            r"only a whole file with a known SHA-256 can be allowed \(not a part of an archive\)",
            N_("Only a whole file whose SHA-256 is known can be allowed (not a file inside an archive)."),
        ),
        (r"(?P<sha>[0-9a-f]{64}) is not on the allow-list", N_("This file is not on the allow-list.")),
        # tasks and quarantine
        (
            r"a scan takes a list of paths.*",
            N_("Enter the folders or files to scan, one per line, or leave the box empty."),
        ),
        (r"a scan takes at most 256 paths", N_("A scan takes at most 256 folders or files.")),
        (
            r"collecting a file needs either its path on the computer or its quarantine id",
            N_("Enter the full path of the file to collect, as it is on the computer."),
        ),
        (
            r"restoring or deleting a quarantined file needs the file's quarantine id",
            N_("This file is not known to be in quarantine."),
        ),
        (
            r"no computer to run it: the unit or group has no enrolled computer",
            N_("There is no computer to run it: the unit or group has no enrolled computer."),
        ),
        (
            r"say which computers: a unit, a group or a list of computers",
            N_("Choose the computers: a unit, a group or one computer."),
        ),
        (
            r"a task waits for computers between a few minutes and (?P<days>\d+) days",
            N_("The waiting time must be a whole number of hours, at most %(days)s days."),
        ),
        (
            r"no computer .* \(or it was revoked\)",
            N_("This computer does not exist, was revoked, or is outside your part of the organisation."),
        ),
        (r"no group \d+", N_("This group does not exist or is outside your part of the organisation.")),
        (
            r"these computers are not all inside your part of the organisation",
            N_("These computers are not all inside your part of the organisation."),
        ),
        (
            r"a quarantined file lives on one computer: choose that computer alone",
            N_("A quarantined file is on one computer: choose that computer alone."),
        ),
        (r"no quarantined file .*", N_("This file is not (or no longer) in the quarantine of that computer.")),
        (r"this task was already cancelled", N_("This task was already cancelled.")),
        (r"at most \d+ computers per task", N_("A task can reach at most 100,000 computers.")),
        (r"administrators only", N_("Only a province administrator can do this.")),
        (
            r"only an administrator can add a top-level unit",
            N_("Only a province administrator can add a unit at the top of the tree."),
        ),
        (
            r"the tree already has its root \(the province\); add units under it",
            N_("The tree already has its top unit (the province). Choose it, or another unit, as the parent."),
        ),
        (r"a unit named '(?P<name>.*)' already exists there", N_("A unit named “%(name)s” already exists there.")),
        (r"the code '(?P<code>.*)' is already used", N_("The code “%(code)s” is already used by another unit.")),
        (r"a unit cannot become a second root", N_("Choose a parent unit.")),
        (
            r"a unit cannot move under itself or its own subtree",
            N_("A unit cannot be moved under itself or under one of its own units."),
        ),
        (r"you cannot move the root of your own scope", N_("You cannot move the unit your account is attached to.")),
        (
            r"you cannot delete the root of your own scope",
            N_("You cannot delete the unit your account is attached to."),
        ),
        (
            r"the unit still has units under it; move or delete them first",
            N_("This unit still has units under it. Move or delete them first."),
        ),
        (r"unknown parent '(?P<name>.*)'", N_("the parent unit “%(name)s” was not found")),
        (r"empty name", N_("the name is empty")),
        (r"'(?P<kind>.*)' is not a valid UnitKind", N_("the kind “%(kind)s” is not one of %(kinds)s")),
        (r"invalid literal for int\(\) with base 10: '(?P<value>.*)'", N_("“%(value)s” is not a whole number")),
        (r"the CSV needs the columns .*", N_("The file must start with the header line: %(columns)s")),
        (r"the CSV file is larger than 5 MiB", N_("The file is larger than 5 MiB.")),
        (
            r"the setup link is not valid \(already used, or replaced by a newer one\)",
            N_("This setup link no longer works: it was already used, or the server restarted and printed a new one."),
        ),
        (
            r"your account is not attached to a unit; ask an administrator",
            N_("Your account is not attached to a unit. Ask an administrator."),
        ),
    ]
]
_CSV_LINE = re.compile(r"CSV line (?P<line>\d+): (?P<rest>.*)", re.DOTALL)


def explain(message: str, _: Gettext) -> str:
    """``message`` from a service in plain words of the reader's language (unknown ones are passed through)."""
    csv_line = _CSV_LINE.fullmatch(message)
    if csv_line:
        return _("Line %(line)s of the file: %(problem)s. Nothing was imported; correct the file and try again.") % {
            "line": csv_line["line"],
            "problem": explain(csv_line["rest"], _).rstrip("."),
        }
    for pattern, translated in _EXPLAINED:
        found = pattern.fullmatch(message)
        if found:
            values = {
                **found.groupdict(),
                "columns": "name,kind,parent,code,servers,workstations,other",
                "kinds": ", ".join(KIND_LABELS),
            }
            return _(translated) % values
    return message


def explain_error(error: ServerError, _: Gettext) -> str:
    if isinstance(error, TooManyRequests):
        minutes = max(1, math.ceil(error.retry_after / 60))
        return _("Too many failed attempts. Please wait %(minutes)s minutes, then try again.") % {"minutes": minutes}
    return explain(error.message, _)


def day_start(day: date) -> datetime:
    """The first moment of ``day`` in Vietnam's time (the days of the console's lists, filters and charts), in
    UTC, because SQLite compares the stored UTC times as text."""
    return datetime.combine(day, time(), DISPLAY_ZONE).astimezone(UTC)


def iso_day(value: str) -> date | None:
    """A ``YYYY-MM-DD`` day of a query string, or None."""
    try:
        return date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None
