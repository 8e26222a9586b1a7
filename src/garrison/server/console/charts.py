"""Bar charts of detections over time, drawn by the server as inline SVG (no script, works offline).

A chart is a list of buckets — a day, a week or a month of Vietnam's calendar with its count — and the geometry of
their bars; the template macro ``charts.html`` draws it, each bar a link to the detections of its days. The counts
come from the database grouped by day (``detections.service.count_by_day``); buckets longer than a day add those
days up here (at most a few hundred numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

PLOT = 150  # the bars' height at the largest count
TOP = 16  # room above the plot for the largest value's label
AXIS = 22  # room under the plot for the labels
LEFT = 8
#: Column and bar widths by how many bars there are: wide bars for a month, thin ones for a quarter of days.
WIDTHS = ((31, 24, 16), (62, 12, 9), (10_000, 8, 6))

Step = Literal["day", "week", "month"]


@dataclass(frozen=True, slots=True)
class Bar:
    first: date  # the bucket's first day
    last: date  # and its last (the same for a day)
    count: int
    x: int
    y: int
    height: int
    label: str  # written under the axis; empty for most bars
    link: str  # the detections of these days


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    step: Step
    width: int
    height: int
    top: int
    base: int
    left: int
    column: int
    bar: int
    largest: int  # the count the top of the plot stands for (at least 1)
    total: int


def step_for(first: date, last: date) -> Step:
    """Days for up to a quarter, weeks for up to a year, months beyond."""
    days = (last - first).days + 1
    return "day" if days <= 92 else "week" if days <= 366 else "month"


def buckets(counts: dict[date, int], first: date, last: date, step: Step) -> list[tuple[date, date, int]]:
    """``[first, last]`` cut into days, weeks (7 days from ``first``) or calendar months, each with its count."""
    out = []
    start = first
    while start <= last:
        if step == "day":
            end = start
        elif step == "week":
            end = start + timedelta(days=6)
        else:
            end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        end = min(end, last)
        total = sum(counts.get(start + timedelta(days=n), 0) for n in range((end - start).days + 1))
        out.append((start, end, total))
        start = end + timedelta(days=1)
    return out


def bar_chart(
    found: Sequence[tuple[date, date, int]], step: Step, link: Callable[[date, date], str], labels: int = 6
) -> Chart:
    """The geometry of ``found``'s bars; about ``labels`` of them (and the last) get their first day written under
    the axis."""
    _most, column, width = next(w for w in WIDTHS if len(found) <= w[0])
    largest = max([1, *(n for _first, _last, n in found)])
    every = max(1, -(-len(found) // labels))
    bars = []
    for n, (first, last, count) in enumerate(found):
        height = round(count * PLOT / largest)
        if count and height < 2:
            height = 2  # a bucket with detections always shows
        x = LEFT + n * column + (column - width) // 2
        labelled = n % every == 0 or n == len(found) - 1
        label = (first.strftime("%m/%Y") if step == "month" else first.strftime("%d/%m")) if labelled else ""
        bars.append(Bar(first, last, count, x, TOP + PLOT - height, height, label, link(first, last)))
    return Chart(
        bars=bars,
        step=step,
        width=LEFT * 2 + len(found) * column,
        height=TOP + PLOT + AXIS,
        top=TOP,
        base=TOP + PLOT,
        left=LEFT,
        column=column,
        bar=width,
        largest=largest,
        total=sum(n for _first, _last, n in found),
    )
