"""Scheduled scans: cron expressions from the policy, each run after a random delay, missed runs made up.

Each schedule's next run is planned as the next time its cron expression matches (in the computer's local time,
as cron does), plus a random delay of up to ``random_delay_minutes``, so that the computers of a province do not
all start reading their disks at the same minute. Plans are saved (``schedule.json``): a computer that was off at
the planned time runs the scan when the agent next starts, once, however many runs it missed.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from croniter import croniter

from garrison.atomicfile import write_atomic
from garrison.protocol.policy import ScheduledScan

log = logging.getLogger(__name__)


def key_of(schedule: ScheduledScan) -> str:
    return json.dumps([schedule.cron, schedule.paths, schedule.random_delay_minutes])


@dataclass
class Plan:
    schedule: ScheduledScan
    due: datetime


class Scheduler:
    """The planned runs of the policy's schedules.

    Args:
        path: where plans are saved.
        rng: the source of the random delays.
    """

    def __init__(self, path: Path, rng: random.Random | None = None) -> None:
        self.path = path
        self._rng = rng or random.Random()  # noqa: S311 - spreading load, not secrets
        self.plans: dict[str, Plan] = {}
        self._saved: dict[str, str] = {}
        try:
            saved = json.loads(path.read_text())
            self._saved = {str(k): str(v) for k, v in saved.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring the saved schedule in %s: %s", path, exc)

    def plan_next(self, schedule: ScheduledScan, after: datetime) -> datetime:
        fire: datetime = croniter(schedule.cron, after).get_next(datetime)
        return fire + timedelta(seconds=self._rng.uniform(0, schedule.random_delay_minutes * 60))

    def set(self, schedules: list[ScheduledScan], now: datetime) -> None:
        """Follow the policy's schedules; plans of schedules that stay are kept (a saved plan in the past means a
        missed run: it is due now)."""
        plans: dict[str, Plan] = {}
        for schedule in schedules:
            key = key_of(schedule)
            if key in self.plans:
                plans[key] = self.plans[key]
                continue
            saved = self._saved.get(key)
            try:
                due = datetime.fromisoformat(saved) if saved else self.plan_next(schedule, now)
            except ValueError:
                due = self.plan_next(schedule, now)
            plans[key] = Plan(schedule, due)
        self.plans = plans
        self._save()

    def due(self, now: datetime) -> list[ScheduledScan]:
        """The schedules due now; each is planned again from ``now`` (so missed runs happen once)."""
        ready = [plan for plan in self.plans.values() if plan.due <= now]
        for plan in ready:
            plan.due = self.plan_next(plan.schedule, now)
        if ready:
            self._save()
        return [plan.schedule for plan in ready]

    def seconds_until_next(self, now: datetime) -> float | None:
        if not self.plans:
            return None
        return max(0.0, min((plan.due - now).total_seconds() for plan in self.plans.values()))

    def _save(self) -> None:
        self._saved = {key: plan.due.isoformat() for key, plan in self.plans.items()}
        try:
            write_atomic(self.path, json.dumps(self._saved, indent=1).encode(), 0o600)
        except OSError as exc:
            log.warning("cannot save the schedule to %s: %s", self.path, exc.strerror or exc)
