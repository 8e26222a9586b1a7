"""Sorting the console's lists by a column: the ``sort`` and ``dir`` query parameters, read against each list's
whitelist of sortable keys, and turned into SQL ``ORDER BY`` clauses or into a Python sort.

Nothing of the request reaches the SQL: an unknown key or direction gives the list's default order. SQL orders end
with a tie-breaker (the rows' ids) so that pages are deterministic on SQLite and PostgreSQL alike; text columns are
compared by the database's collation (PostgreSQL's is case-insensitive, SQLite's is not), which only changes where
two names that differ by their case fall, never which rows a page holds.

The templates show the headers with the ``sort_header`` macro of ``templates/sorting.html``; the pager and the CSV
links carry ``Sort.query_string()`` so that the pages and the export follow the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, TypeVar
from urllib.parse import urlencode

from fastapi import Query
from sqlalchemy import ColumnElement
from sqlalchemy.orm import QueryableAttribute

ASCENDING = "asc"
DESCENDING = "desc"

T = TypeVar("T")
#: What a list can be sorted by: a mapped column or an SQL expression.
Orderable = ColumnElement[Any] | QueryableAttribute[Any]


class HasQueryString(Protocol):
    def query_string(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Sortable:
    """The sortable columns of one list: their keys, the default order, and the keys first sorted descending
    (times and sizes: newest and biggest first)."""

    keys: tuple[str, ...]
    default: str
    default_descending: bool = False
    descending_first: frozenset[str] = field(default_factory=frozenset)

    def chosen(self, sort: str = "", direction: Annotated[str, Query(alias="dir")] = "") -> Sort:
        """The order a list page asks for, as a request dependency (``Depends(SORTABLE.chosen)``)."""
        return self.parse(sort, direction)

    def parse(self, sort: str, direction: str) -> Sort:
        """The order asked for by the ``sort`` and ``dir`` parameters; the default for anything unknown."""
        if sort not in self.keys or direction not in (ASCENDING, DESCENDING):
            return Sort(self, self.default, self.default_descending)
        return Sort(self, sort, direction == DESCENDING)


@dataclass(frozen=True, slots=True)
class Sort:
    """The order a list is shown in."""

    options: Sortable
    key: str
    descending: bool

    @property
    def direction(self) -> str:
        return DESCENDING if self.descending else ASCENDING

    @property
    def is_default(self) -> bool:
        return self.key == self.options.default and self.descending == self.options.default_descending

    def params(self) -> dict[str, str]:
        """The query parameters of this order (none for the default one)."""
        return {} if self.is_default else {"sort": self.key, "dir": self.direction}

    def query_string(self, filters: HasQueryString | None = None) -> str:
        """The filters' query string followed by this order's parameters (for the pager and the CSV link)."""
        parts = [filters.query_string() if filters is not None else "", urlencode(self.params())]
        return "&".join(part for part in parts if part)

    def toggle(self, key: str, filters: HasQueryString | None = None) -> str:
        """The query string of a column header's link: the filters, and ``key`` in the other direction if the list
        is sorted by it, else in its first direction. The page goes back to the first one (no ``page``)."""
        descending = not self.descending if key == self.key else key in self.options.descending_first
        return Sort(self.options, key, descending).query_string(filters)

    def aria(self, key: str) -> str:
        """``aria-sort`` of a column header: ``ascending``/``descending`` for the sorted column, else empty."""
        if key != self.key:
            return ""
        return "descending" if self.descending else "ascending"


def order_by(
    sort: Sort, columns: Mapping[str, Sequence[Orderable]], tie_breaker: Sequence[Orderable]
) -> list[ColumnElement[Any]]:
    """SQL ``ORDER BY`` clauses for ``sort``: the key's columns then the tie-breaker, all in the same direction
    (so that the other direction is exactly the reverse order)."""
    chosen = [*columns[sort.key], *tie_breaker]
    return [column.desc() if sort.descending else column.asc() for column in chosen]


def sort_rows(
    rows: Iterable[T], sort: Sort, keys: Mapping[str, Callable[[T], Any]], tie_breaker: Callable[[T], Any]
) -> list[T]:
    """``rows`` sorted in Python (lists computed outside the database); the key functions should return values
    that compare with each other, see :func:`nullable`."""
    key = keys[sort.key]
    return sorted(rows, key=lambda row: (key(row), tie_breaker(row)), reverse=sort.descending)


def nullable(value: Any) -> tuple[bool, Any]:
    """A sort key putting missing values (``None``) before every other one: "never" is the oldest date."""
    return (value is not None, value)


def text(value: str | None) -> str:
    """A sort key for names: case-insensitive."""
    return (value or "").casefold()
