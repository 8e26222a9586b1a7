"""One HTTPS POST of a signed document to the national authority, and what its answer means for the outbox.

Knows nothing of the database: :func:`post` sends and reports what happened (never raises for network trouble),
:func:`judge` turns that into delivered / retry later / failed for good, :func:`backoff` says how much later.
"""

from __future__ import annotations

import random
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path

import httpx2

MEDIA_TYPE = "application/xml"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ANSWER_MAX = 4096  # characters of the receiver's answer kept per attempt
FIRST_DELAY = timedelta(minutes=1)
MAX_DELAY = timedelta(hours=6)
MAX_RETRY_AFTER = timedelta(hours=24)  # a Retry-After beyond this is taken as this
JITTER = 0.2  # ±20 %, so that servers that failed together do not retry together


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: an HTTP status and body, or the error that prevented one."""

    status: int | None
    body: str = ""
    error: str = ""
    retry_after: str = ""
    location: str = ""
    duration_ms: int = 0


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name verification against ``ca_file`` (PEM), else the system's authorities."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def post(
    url: str, document: bytes, message_id: str, *, timeout: float, context: ssl.SSLContext, product: str = "Garrison"
) -> Answer:
    """POST ``document`` to ``url`` once, ``message_id`` in the ``Idempotency-Key`` header.

    Redirects are not followed (a moved endpoint is a configuration matter, and a redirected POST may lose its
    body). The answer is read up to :data:`ANSWER_MAX` bytes more than kept; ``timeout`` bounds each step and
    the whole attempt.
    """
    started = time.monotonic()
    headers = {
        "Content-Type": MEDIA_TYPE,
        IDEMPOTENCY_HEADER: message_id,
        "User-Agent": f"{product} national outbox",
    }
    try:
        with (
            httpx2.Client(verify=context, timeout=httpx2.Timeout(timeout), follow_redirects=False) as client,
            client.stream("POST", url, content=document, headers=headers) as answer,
        ):
            chunks: list[bytes] = []
            size = 0
            for chunk in answer.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > ANSWER_MAX * 4:
                    break
                if time.monotonic() - started > timeout:  # a receiver that drips its answer
                    raise httpx2.ReadTimeout("the answer took longer than the timeout")
            body = b"".join(chunks).decode("utf-8", errors="replace")[:ANSWER_MAX]
            return Answer(
                answer.status_code,
                body,
                retry_after=answer.headers.get("Retry-After", ""),
                location=answer.headers.get("Location", "")[:500],
                duration_ms=_elapsed(started),
            )
    except httpx2.TimeoutException as error:
        return Answer(
            None, error=f"no answer within {timeout:g} s ({type(error).__name__})", duration_ms=_elapsed(started)
        )
    except httpx2.HTTPError as error:
        return Answer(None, error=_describe(error), duration_ms=_elapsed(started))
    except (OSError, ssl.SSLError) as error:
        return Answer(None, error=_describe(error), duration_ms=_elapsed(started))


def _elapsed(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        text = f"the receiver's certificate is not trusted (check GARRISON_NATIONAL_CA_FILE): {text}"
    return text[:1000]


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    reason: str
    wait: timedelta | None = None  # what the receiver asked for (Retry-After), if anything


def judge(answer: Answer, now: datetime) -> Judgement:
    """2xx: delivered. 5xx, 408, 429, timeouts and connection errors: try again (after ``Retry-After`` when the
    receiver says it). Any other status (4xx, a redirect): refused for good, a person must look."""
    status = answer.status
    if status is None:
        return Judgement(Verdict.RETRY, answer.error or "no answer")
    if 200 <= status < 300:
        return Judgement(Verdict.DELIVERED, f"HTTP {status}")
    wait = retry_after(answer.retry_after, now)
    if status >= 500 or status in {408, 429}:
        return Judgement(Verdict.RETRY, f"HTTP {status}", wait)
    if 300 <= status < 400:
        where = f" to {answer.location}" if answer.location else ""
        return Judgement(Verdict.FAILED, f"HTTP {status}: the receiver redirects{where}; check the endpoint URL")
    return Judgement(Verdict.FAILED, f"HTTP {status}: the receiver refused the document")


def retry_after(value: str, now: datetime) -> timedelta | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as a delay from ``now``, at most a day; None if absent
    or unreadable."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        delay = timedelta(seconds=int(value[:9]))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - now
    return max(timedelta(0), min(delay, MAX_RETRY_AFTER))


def backoff(attempt: int, rng: random.Random) -> timedelta:
    """The wait after the ``attempt``-th failed attempt (1, 2, ...): one minute doubling each time, at most six
    hours, ±20 % jitter."""
    base: timedelta = min(FIRST_DELAY * (2 ** min(max(attempt, 1) - 1, 20)), MAX_DELAY)
    return base * (1 + rng.uniform(-JITTER, JITTER))
