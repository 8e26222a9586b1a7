"""The update channel: bytes per agent, server publish time, agent apply time and memory, a fleet taking a release.

Run it (PostgreSQL on 127.0.0.1:5432 with trust authentication for the fleet part, as for ``bench/fleet.py``)::

    .venv/bin/python bench/updates.py --help
    .venv/bin/python bench/updates.py                             # 1M signatures, 1 % change; 10,000 agents on 100k
    .venv/bin/python bench/updates.py --signatures 200000 --agents 2000 --runs 1   # a quick run
    .venv/bin/python bench/updates.py --parts bytes,publish,agent # no server, no PostgreSQL
    .venv/bin/python bench/updates.py --parts fleet --agents 10000 --fleet-signatures 100000

What it measures, for a synthetic ClamAV-shaped database (``--signatures``, default 1,000,000: MD5 ``.hdb`` and
SHA-256 ``.hsb`` hash lines, 0.5 % ``.ndb`` body signatures and 0.05 % ``.ldb`` logical ones, ClamAV-style names;
body and logical signatures come from ``bench/sigset.py``, the generator the engine benchmark validates) and a
change of ``--change`` of it (default 1 %: 60 % of the changed signatures added at the end of their file, 20 %
removed, 20 % changed in place, spread over the files in proportion):

1. **bytes** — what one agent downloads: Garrison's delta (``bundle.make_delta``) against the full compressed release
   (``bundle.compress(bundle.pack(...))``), ClamAV's ``.cdiff`` for the same change (``cdiff.make_cdiff``, gzip
   inside as ClamAV ships it, *unsigned*: a real one carries a signature of a few hundred bytes more) and the
   whole ``.cvd`` equivalent (``cvd.build_cvd``, unsigned, i.e. a ``.cud``). ClamAV's files keep ClamAV's order
   (append-mostly); Garrison's are canonical (sorted), as ``publish`` makes them.
2. **publish** — ``releases.publish`` on a fresh SQLite database in a temporary directory with the previous release
   present: the whole call and its parts (canonical form and digest, the compile check, pack, compress, reading
   the previous release back, the delta, TUF signing and storing); medians of ``--runs``.
3. **agent** — in a fresh subprocess each (peak RSS is the process's own ``VmHWM``): applying the delta to the
   previous release's files and checking the digest; the same from the full release instead; the delta plus writing
   and installing the release with the updater's own ``SignatureUpdater.install`` (write, compile where the engine
   loads it, swap); the daemon's ``load_engine`` that follows (which finds the compiled form in the cache); and one
   more load. Reference: ClamAV's ``sigtool --run-cdiff`` on the same change, and
   ``clamscan`` loading the result (freshclam test-loads a new database the same way).
4. **fleet** — a real ``garrison server run`` (``--workers``, HTTPS, PostgreSQL; ``bench/fleet.py``'s helpers),
   ``--agents`` agents (a few enrolled through the API, the rest inserted into the database with the server's own
   model and secret hash, which is what enrolling stores), release 1 and then release 2 (the change) published with
   ``releases.publish`` into the server's database and data directory (``--fleet-signatures``, default 100,000).
   Then every agent at once (``--in-flight`` of them, 64, going through their update at a time; the others wait
   their turn) does what the updater does: a heartbeat (answered with ``updates.release``), the TUF
   refresh (``N+1.root.json``, 404 expected; ``timestamp.json``; the snapshot and targets versions it names) and
   the delta target by its hash-prefixed URL, checked against the signed hash. Time from publication to the last
   delta, requests/s, latency, errors and bytes served. A sample of agents (``--verify-agents``) runs the real
   python-tuf client (``SignatureUpdater.check``): release 1 in full before, release 2 by delta after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gzip
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from sigset import body_sig, logical_sig  # noqa: E402

MiB = 1024 * 1024
SEED = 20261126
_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------------------------------------------
# A synthetic ClamAV-shaped database and a change of it

PLATFORMS = ("Win", "Win", "Win", "Win", "Unix", "Doc", "Xls", "Html", "Js", "Pdf", "Andr", "Osx", "Email", "Txt")
CATEGORIES = ("Trojan", "Trojan", "Malware", "Downloader", "Dropper", "Exploit", "Adware", "Ransomware",
              "Coinminer", "Phishing", "Packed", "Worm", "Virus", "Spyware")  # fmt: skip
FAMILIES = ("Agent", "Generic", "Emotet", "Zbot", "Qakbot", "AgentTesla", "Formbook", "Lokibot", "Remcos", "Nanocore",
            "Mirai", "Gafgyt", "Tsunami", "Xmrig", "Ursnif", "Dridex", "Trickbot", "IcedID", "Cobaltstrike", "Njrat",
            "Redline", "Vidar", "Raccoon", "Sality", "Virut", "Ramnit", "Expiro", "Lockbit", "Conti", "Wannacry",
            "Hiddad", "Joker", "Triada", "Shlayer", "Pirrit", "Valyria", "Donoff", "Sload", "Kryptik",
            "Razy")  # fmt: skip
KINDS = ("hdb", "hsb", "ndb", "ldb")
FILE_NAMES = {kind: f"bench.{kind}" for kind in KINDS}


@dataclass(frozen=True)
class Shape:
    """How many signatures of each kind; ``change`` of each is changed."""

    counts: dict[str, int]
    change: float

    @classmethod
    def of(cls, total: int, change: float) -> Shape:
        ndb = max(1, round(total * 0.005))
        ldb = max(1, round(total * 0.0005))
        hashes = total - ndb - ldb
        hsb = round(hashes * 0.4)
        return cls({"hdb": hashes - hsb, "hsb": hsb, "ndb": ndb, "ldb": ldb}, change)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def changes(self, kind: str) -> tuple[int, int, int]:
        """(added, removed, changed) signatures of a kind."""
        n = round(self.counts[kind] * self.change)
        removed = round(n * 0.2)
        changed = round(n * 0.2)
        return n - removed - changed, removed, changed


class Names:
    """ClamAV-style names, ``Platform.Category.Family-<id>-<revision>``: ids grow as ClamAV's do."""

    def __init__(self, kind: str, count: int, seed: int) -> None:
        gen = np.random.default_rng([seed, KINDS.index(kind), 0x6E61])
        self.platform = gen.integers(0, len(PLATFORMS), count)
        self.category = gen.integers(0, len(CATEGORIES), count)
        self.family = gen.integers(0, len(FAMILIES), count)
        self.base = 1_000_000 + 7_000_000 * KINDS.index(kind)

    def __call__(self, i: int, revision: int = 0) -> str:
        return (
            f"{PLATFORMS[self.platform[i]]}.{CATEGORIES[self.category[i]]}.{FAMILIES[self.family[i]]}"
            f"-{self.base + i}-{revision}"
        )


def _hash_lines(kind: str, count: int, seed: int) -> list[bytes]:
    """``count`` hash lines (index order); index ``i`` is the same whatever ``count``."""
    nbytes = 16 if kind == "hdb" else 32
    gen = np.random.default_rng([seed, nbytes, 0x4A5])
    digests = gen.integers(0, 256, size=(count, nbytes), dtype=np.uint8)
    sizes = gen.integers(1024, 10 * MiB, size=count)
    wild = gen.random(count) < 0.01
    names = Names(kind, count, seed)
    lines = []
    for i in range(count):
        hexd = digests[i].tobytes().hex()
        if wild[i]:
            lines.append(f"{hexd}:*:{names(i)}:73".encode())
        else:
            lines.append(f"{hexd}:{int(sizes[i])}:{names(i)}".encode())
    return lines


def _body_line(i: int, seed: int, names: Names, revision: int = 0) -> bytes:
    sig = body_sig(seed + revision, i)
    return replace(sig, name=names(i, revision)).clamav_line().encode()


def _logical_line(i: int, seed: int, names: Names, revision: int = 0) -> bytes:
    sig = logical_sig(seed + revision, i)
    return replace(sig, name=names(i, revision)).clamav_line().encode()


@dataclass
class ReleasePair:
    """The database before and after the change, each file in ClamAV's order (append-mostly), and the counts."""

    old: dict[str, bytes]
    new: dict[str, bytes]
    shape: Shape
    summary: dict[str, dict[str, int]] = field(default_factory=dict)


def make_pair(total: int, change: float, seed: int = SEED) -> ReleasePair:
    """The old database and the new one: per kind, ``added`` lines appended (ClamAV adds new signatures at the
    end), ``removed`` lines dropped where they were, ``changed`` lines replaced in place (a new revision: hashes get
    a new name, body and logical signatures a new pattern under the new name)."""
    shape = Shape.of(total, change)
    pair = ReleasePair({}, {}, shape)
    for kind in KINDS:
        count = shape.counts[kind]
        added, removed, changed = shape.changes(kind)
        rng = random.Random(f"{seed}/{kind}/change")
        touched = rng.sample(range(count), removed + changed)
        gone, edited = set(touched[:removed]), set(touched[removed:])
        names = Names(kind, count + added, seed)
        if kind in ("hdb", "hsb"):
            lines = _hash_lines(kind, count + added, seed)

            def revise(i: int, line: bytes, names: Names = names, make: Callable[..., bytes] = _body_line) -> bytes:
                fields = line.split(b":")
                fields[2] = names(i, 1).encode()  # a new revision of the signature, same hash
                return b":".join(fields)
        else:
            make = _body_line if kind == "ndb" else _logical_line
            lines = [make(i, seed, names) for i in range(count + added)]

            def revise(i: int, line: bytes, names: Names = names, make: Callable[..., bytes] = make) -> bytes:
                return make(i, seed, names, 1)

        old = lines[:count]
        new = [revise(i, line) if i in edited else line for i, line in enumerate(old) if i not in gone]
        new += lines[count:]
        pair.old[FILE_NAMES[kind]] = b"\n".join(old) + b"\n"
        pair.new[FILE_NAMES[kind]] = b"\n".join(new) + b"\n"
        pair.summary[kind] = {"signatures": count, "added": added, "removed": removed, "changed": changed}
    return pair


# ---------------------------------------------------------------------------------------------------------------
# Timing helpers


class Timers:
    """Inclusive wall time of the outermost call of each wrapped function (nested wrapped calls count in their
    caller), accumulated by label."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.depth = 0

    @contextlib.contextmanager
    def patch(self, owner: object, attribute: str, label: str) -> Iterator[None]:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return original(*args, **kwargs)
            self.depth += 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.depth -= 1

        setattr(owner, attribute, timed)
        try:
            yield
        finally:
            setattr(owner, attribute, original)


TIME = "/usr/bin/time"


def run_measured(command: list[str], cwd: Path | None = None) -> dict[str, Any]:
    """Run a command; its wall time, peak RSS and output.

    The peak comes from GNU time (``%M``) run as a small intermediate process: Linux carries the RSS high-water
    mark of the process that forks across ``exec``, so ``wait4`` straight from this (large) process would report
    this process's size for a small child.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "time"
        prefix = [TIME, "-o", str(report), "-f", "%M %U %S"] if os.path.exists(TIME) else []
        started = time.perf_counter()
        done = subprocess.run([*prefix, *command], cwd=cwd, capture_output=True, check=False)
        seconds = time.perf_counter() - started
        peak = cpu = float("nan")
        if prefix and report.exists():
            fields = report.read_text().split()[-3:]
            with contextlib.suppress(ValueError, IndexError):
                peak, cpu = int(fields[0]) / 1024, float(fields[1]) + float(fields[2])
        return {
            "seconds": seconds,
            "peak_mib": peak,
            "cpu_seconds": cpu,
            "returncode": done.returncode,
            "stdout": done.stdout.decode(errors="replace"),
            "stderr": done.stderr.decode(errors="replace"),
        }


def vm_hwm_mib() -> float:
    """This process's peak resident memory (``VmHWM``: since its ``exec``, unlike ``ru_maxrss``)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fmt_bytes(n: float) -> str:
    if n >= MiB:
        return f"{n / MiB:,.2f} MiB"
    if n >= 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n:,.0f} B"


def table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


# ---------------------------------------------------------------------------------------------------------------
# 1. Bytes per agent


def part_bytes(pair: ReleasePair, work: Path) -> dict[str, Any]:
    from garrison.engine.signatures import bundle, cdiff, cvd

    timings: dict[str, float] = {}

    def timed(label: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = fn()
        timings[label] = time.perf_counter() - started
        return value

    old, new = bundle.canonical(pair.old), bundle.canonical(pair.new)
    full = timed("full release (pack + compress)", lambda: bundle.compress(bundle.pack(new)))
    delta = timed("Garrison delta (make_delta)", lambda: bundle.make_delta(old, new))
    patch = timed("ClamAV cdiff (make_cdiff)", lambda: cdiff.make_cdiff(pair.old, pair.new, 2))
    cud = timed(
        "ClamAV .cvd equivalent (build_cvd)",
        lambda: cvd.build_cvd("daily", 2, pair.new, flevel=200, builder="bench", sign=None, build_time=0),
    )
    (work / "release-2.tar.gz").write_bytes(full)
    (work / "1-to-2.delta").write_bytes(delta)
    (work / "daily-2.cdiff").write_bytes(patch)
    changed_lines = len(gzip.decompress(delta))
    raw_new = sum(map(len, new.values()))
    rows = {
        "Garrison delta": len(delta),
        "ClamAV .cdiff (unsigned)": len(patch),
        "Garrison full release (.tar.gz)": len(full),
        "ClamAV .cvd equivalent (unsigned .cud)": len(cud),
        "uncompressed database": raw_new,
    }
    print(f"\n## 1. Bytes per agent: {pair.shape.total:,} signatures, {pair.shape.change:.1%} changed")
    print(f"change: {json.dumps(pair.summary)}")
    table(
        ["what one agent downloads", "bytes", "", "vs Garrison delta", "build s"],
        [
            [name, f"{size:,}", fmt_bytes(size), f"{size / len(delta):,.1f}x",
             f"{timings[label]:.2f}" if (label := _build_label(name)) in timings else ""]
            for name, size in rows.items()
        ],
    )  # fmt: skip
    print(
        f"ratios: full / delta = {len(full) / len(delta):.1f}x; cdiff / delta = {len(patch) / len(delta):.2f}x; "
        f"delta = {len(delta) / len(full):.2%} of the full release (decompressed delta: {fmt_bytes(changed_lines)})"
    )
    return {
        "bytes": rows,
        "build_seconds": timings,
        "ratios": {
            "full_over_delta": len(full) / len(delta),
            "cdiff_over_delta": len(patch) / len(delta),
            "cvd_over_delta": len(cud) / len(delta),
        },
        "delta_uncompressed": changed_lines,
        "change": pair.summary,
    }


def _build_label(row: str) -> str:
    return {
        "Garrison delta": "Garrison delta (make_delta)",
        "ClamAV .cdiff (unsigned)": "ClamAV cdiff (make_cdiff)",
        "Garrison full release (.tar.gz)": "full release (pack + compress)",
        "ClamAV .cvd equivalent (unsigned .cud)": "ClamAV .cvd equivalent (build_cvd)",
    }.get(row, "")


# ---------------------------------------------------------------------------------------------------------------
# 2. Server publish time


PUBLISH_PARTS = (
    "canonical form",
    "digest",
    "compile check",
    "pack",
    "compress",
    "read previous release",
    "delta",
    "store targets",
    "TUF signing + metadata",
    "commit",
)


def _sqlite_database(directory: Path) -> Any:
    from garrison.server.db import Database, make_engine, migrate

    engine = make_engine(f"sqlite:///{directory / 'garrison.sqlite3'}")
    migrate(engine)
    return Database(engine)


def publish_first(pair: ReleasePair, directory: Path) -> float:
    """A fresh SQLite database and repository holding release 1; the seconds its publication took."""
    from garrison.server.audit.service import SYSTEM
    from garrison.server.updates import releases
    from garrison.server.updates.repository import UpdateRepository

    database = _sqlite_database(directory)
    repo = UpdateRepository(directory / "data")
    with database.session() as session:
        repo.initialise(session)
    started = time.perf_counter()
    with database.session() as session:
        first = releases.publish(session, repo, pair.old, actor=SYSTEM, reason="bench: release 1")
    seconds = time.perf_counter() - started
    database.engine.dispose()
    if first is None or first.number != 1:
        raise RuntimeError(f"release 1 was not published: {first}")
    return seconds


def publish_once(pair: ReleasePair, directory: Path) -> dict[str, Any]:
    """Release 2 on top of the release 1 in ``directory``, timed part by part."""
    from garrison.engine.signatures import bundle
    from garrison.server.audit.service import SYSTEM
    from garrison.server.db import Database, make_engine
    from garrison.server.updates import releases
    from garrison.server.updates.repository import UpdateRepository

    database = Database(make_engine(f"sqlite:///{directory / 'garrison.sqlite3'}"))
    repo = UpdateRepository(directory / "data")
    timers = Timers()
    patches = [
        (bundle, "canonical", "canonical form"),
        (bundle, "digest", "digest"),
        (releases, "compile_check", "compile check"),
        (bundle, "pack", "pack"),
        (bundle, "compress", "compress"),
        (releases, "content_of", "read previous release"),
        (bundle, "make_delta", "delta"),
        (UpdateRepository, "put_target", "store targets"),
        (UpdateRepository, "publish", "TUF signing + metadata"),
    ]
    with contextlib.ExitStack() as stack:
        for owner, attribute, label in patches:
            stack.enter_context(timers.patch(owner, attribute, label))
        started = time.perf_counter()
        with database.session() as session:
            second = releases.publish(session, repo, pair.new, actor=SYSTEM, reason="bench: release 2")
            before_commit = time.perf_counter()
        total = time.perf_counter() - started
    timers.seconds["commit"] = total - (before_commit - started)
    if second is None or second.number != 2:
        raise RuntimeError(f"release 2 was not published: {second}")
    with database.session() as session:
        from garrison.server.updates.models import UpdateTarget

        targets = {t.path: t.length for t in session.query(UpdateTarget)}
    database.engine.dispose()
    return {"total": total, "parts": dict(timers.seconds), "targets": targets}


def part_publish(pair: ReleasePair, runs: int, work: Path) -> dict[str, Any]:
    results = []
    base = work / "publish-base"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    log("publishing release 1 ...")
    first_seconds = publish_first(pair, base)
    for run in range(runs):  # each run starts from a copy of the database and repository holding release 1
        directory = work / f"publish-{run}"
        shutil.rmtree(directory, ignore_errors=True)
        shutil.copytree(base, directory)
        log(f"publish run {run + 1}/{runs} ...")
        results.append(publish_once(pair, directory))
        shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)
    total = median([r["total"] for r in results])
    parts = {label: median([r["parts"].get(label, 0.0) for r in results]) for label in PUBLISH_PARTS}
    parts["other (queries, audit, pruning)"] = max(0.0, total - sum(parts.values()))
    print(f"\n## 2. Server publish time: release 2 ({pair.shape.total:,} signatures) on top of release 1, "
          f"SQLite, median of {runs}")  # fmt: skip
    table(
        ["step", "seconds", "share"],
        [[label, f"{s:.2f}", f"{s / total:.0%}"] for label, s in parts.items()]
        + [["**total publish**", f"{total:.2f}", "100%"]],
    )
    run_list = ", ".join(f"{r['total']:.2f}" for r in results)
    print(f"runs: {run_list} s; release 1 (no delta, one run) took {first_seconds:.2f} s; "
          f"targets: {results[0]['targets']}")  # fmt: skip
    return {"runs": results, "median_total": total, "median_parts": parts, "first_release_s": first_seconds}


# ---------------------------------------------------------------------------------------------------------------
# 3. The agent applying the update (each measurement in a fresh process)


def agent_child(mode: str, work: Path) -> int:
    """Runs in the child: ``python bench/updates.py _agent MODE WORK``; prints JSON (times, peak RSS)."""
    out: dict[str, Any] = {"mode": mode}
    started = time.perf_counter()
    from garrison.engine.signatures import bundle

    out["import"] = time.perf_counter() - started
    expected = (work / "digest-2").read_text().strip()

    def read_dir(directory: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}

    def lap(label: str, since: float) -> float:
        now = time.perf_counter()
        out[label] = now - since
        return now

    if mode in ("apply", "install"):
        t = time.perf_counter()
        old = read_dir(work / "release-1")
        delta = (work / "1-to-2.delta").read_bytes()
        t = lap("read", t)
        files = bundle.apply_delta(old, delta)
        t = lap("apply_delta", t)
        if bundle.digest(files) != expected:
            raise SystemExit("digest mismatch after the delta")
        t = lap("digest", t)
        out["peak_mib_before_compile"] = vm_hwm_mib()
        if mode == "install":
            # The updater's own install: write releases/2, compile it where the engine will load it, swap.
            from garrison.agent.settings import AgentSettings
            from garrison.agent.updater import SignatureUpdater
            from garrison.protocol.updates import TargetInfo

            state = work / "agent-state"
            shutil.rmtree(state, ignore_errors=True)
            installer = SignatureUpdater(AgentSettings(state_dir=state), client=None)  # type: ignore[arg-type]
            info = TargetInfo(kind="signatures", release=2, content_sha256=expected)
            del old
            installer.install(2, files, info)
            t = lap("write + compile", t)
            del files
    elif mode == "full":
        t = time.perf_counter()
        data = (work / "release-2.tar.gz").read_bytes()
        t = lap("read", t)
        files = bundle.unpack(bundle.decompress(data, 2 << 30))
        t = lap("decompress + unpack", t)
        if bundle.digest(files) != expected:
            raise SystemExit("digest mismatch")
        t = lap("digest", t)
    elif mode in ("reload", "cached"):
        # What the daemon does next: load_engine over the installed release.
        from garrison.agent.daemon import load_engine
        from garrison.agent.settings import AgentSettings

        t = time.perf_counter()
        engine, problem = load_engine(AgentSettings(state_dir=work / "agent-state"))
        if problem:
            raise SystemExit(problem)
        t = lap("load from cache", t)
        out["signatures"] = engine.database.report.signatures
    elif mode == "baseline":
        pass
    out["peak_mib"] = vm_hwm_mib()
    out["total"] = time.perf_counter() - started
    print(json.dumps(out))
    return 0


def part_agent(pair: ReleasePair, runs: int, work: Path, clamav: bool) -> dict[str, Any]:
    from garrison.engine.signatures import bundle

    agent = work / "agent"
    shutil.rmtree(agent, ignore_errors=True)
    (agent / "release-1").mkdir(parents=True)
    old, new = bundle.canonical(pair.old), bundle.canonical(pair.new)
    for name, data in old.items():  # as the updater stores a release: its canonical files
        (agent / "release-1" / name).write_bytes(data)
    (agent / "1-to-2.delta").write_bytes(bundle.make_delta(old, new))
    (agent / "release-2.tar.gz").write_bytes(bundle.compress(bundle.pack(new)))
    (agent / "digest-2").write_text(bundle.digest(new))
    del old, new
    results: dict[str, list[dict[str, Any]]] = {}
    for run in range(runs):
        for mode in ("baseline", "apply", "full", "install", "reload", "cached"):
            if mode == "install":
                shutil.rmtree(agent / "agent-cache", ignore_errors=True)
            log(f"agent {mode}, run {run + 1}/{runs} ...")
            done = run_measured([sys.executable, str(Path(__file__).resolve()), "_agent", mode, str(agent)])
            if done["returncode"]:
                raise RuntimeError(f"agent {mode} failed: {done['stderr'][-2000:]}")
            measured = json.loads(done["stdout"].strip().splitlines()[-1])
            measured["wall"] = done["seconds"]
            measured["peak_mib_wait4"] = done["peak_mib"]
            results.setdefault(mode, []).append(measured)

    def med(mode: str, key: str) -> float:
        return median([r[key] for r in results[mode] if key in r])

    print(f"\n## 3. Agent: release 1 -> 2 ({pair.shape.total:,} signatures), a fresh process each, median of {runs}")
    rows = [
        ["Python + imports only (baseline)", "", f"{med('baseline', 'wall'):.2f}",
         f"{med('baseline', 'peak_mib'):.0f}"],
        ["apply delta + digest check", f"read {med('apply', 'read'):.2f}, apply {med('apply', 'apply_delta'):.2f}, "
         f"digest {med('apply', 'digest'):.2f}", f"{med('apply', 'wall'):.2f}", f"{med('apply', 'peak_mib'):.0f}"],
        ["(full release instead: decompress + unpack + digest)", f"read {med('full', 'read'):.2f}, unpack "
         f"{med('full', 'decompress + unpack'):.2f}, digest {med('full', 'digest'):.2f}", f"{med('full', 'wall'):.2f}",
         f"{med('full', 'peak_mib'):.0f}"],
        ["apply + digest + install (SignatureUpdater.install: write, compile, swap)",
         f"apply {med('install', 'apply_delta'):.2f}, digest {med('install', 'digest'):.2f}, write + compile "
         f"{med('install', 'write + compile'):.2f}", f"{med('install', 'wall'):.2f}",
         f"{med('install', 'peak_mib'):.0f} (before compile {med('install', 'peak_mib_before_compile'):.0f})"],
        ["the daemon's reload after the swap (load_engine)", f"load {med('reload', 'load from cache'):.2f}",
         f"{med('reload', 'wall'):.2f}", f"{med('reload', 'peak_mib'):.0f}"],
        ["the next load (from the compiled cache)", f"load {med('cached', 'load from cache'):.2f}",
         f"{med('cached', 'wall'):.2f}", f"{med('cached', 'peak_mib'):.0f}"],
    ]  # fmt: skip
    reference: dict[str, Any] = {}
    recompiled = med("reload", "load from cache") > 3 * med("cached", "load from cache")
    if clamav:
        reference = clamav_reference(pair, work, runs)
        if reference.get("sigtool"):
            rows.append(["ClamAV: sigtool --run-cdiff (the same change)", "", f"{reference['sigtool']['seconds']:.2f}",
                         f"{reference['sigtool']['peak_mib']:.0f}"])  # fmt: skip
        if reference.get("clamscan_load"):
            rows.append(["ClamAV: clamscan loading the new database", "",
                         f"{reference['clamscan_load']['seconds']:.2f}",
                         f"{reference['clamscan_load']['peak_mib']:.0f}"])  # fmt: skip
    table(["agent step (own process)", "parts, s", "wall s", "peak RSS MiB"], rows)
    if recompiled:
        print("NOTE: the daemon's reload after the swap compiled the release again instead of loading the compiled "
              "form the install left in the cache")  # fmt: skip
    if reference.get("note"):
        print(f"ClamAV reference: {reference['note']}")
    summary = {
        mode: {key: med(mode, key) for key in results[mode][0] if isinstance(results[mode][0][key], (int, float))}
        for mode in results
    }
    if reference.get("sigtool"):
        sigtool_s = reference["sigtool"]["seconds"]
        ratio = summary["apply"]["wall"] / sigtool_s
        work_s = summary["apply"]["read"] + summary["apply"]["apply_delta"] + summary["apply"]["digest"]
        print(
            f"ratio to sigtool --run-cdiff ({sigtool_s:.2f} s): Garrison's apply + digest process {ratio:.1f}x "
            f"(with Python's start and imports), its work alone (read, apply, digest: {work_s:.2f} s) "
            f"{work_s / sigtool_s:.1f}x"
        )
        summary["ratio_apply_over_sigtool"] = ratio
        summary["ratio_apply_work_over_sigtool"] = work_s / sigtool_s
    return {"runs": results, "median": summary, "clamav": reference, "first_load_recompiles": recompiled}


def clamav_reference(pair: ReleasePair, work: Path, runs: int) -> dict[str, Any]:
    """``sigtool --run-cdiff`` on the same change in a directory holding the old files, and clamscan's load."""
    from garrison.engine.signatures import cdiff

    sigtool, clamscan = shutil.which("sigtool"), shutil.which("clamscan")
    if sigtool is None:
        return {"note": "sigtool not installed (./scripts/system-deps.sh clamav)"}
    # sigtool checks the result against the SHA-256 list of <name>.info after applying, as ClamAV's own cdiffs
    # update daily.info along with the signatures: the same here.
    old_files = {**pair.old, "daily.info": _info(pair.old, 1)}
    new_files = {**pair.new, "daily.info": _info(pair.new, 2)}
    patch = cdiff.make_cdiff(old_files, new_files, 2)
    # The signed .cdiff is refused without a Talos signature; sigtool runs a plain .script (the same commands,
    # uncompressed and unsigned) with the same code.
    script = gzip.decompress(patch.split(b":", 3)[3].rsplit(b":", 1)[0])
    out: dict[str, Any] = {}
    times, peaks, notes = [], [], []
    for run in range(runs):
        directory = work / "clamav" / f"run-{run}"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, data in old_files.items():
            (directory / name).write_bytes(data)
        signed = directory.parent / "daily-2.cdiff"
        signed.write_bytes(patch)
        (directory.parent / "daily-2.script").write_bytes(script)
        if run == 0:
            tried = run_measured([sigtool, f"--run-cdiff={signed}"], cwd=directory)
            notes.append(f"the unsigned .cdiff: exit {tried['returncode']}: "
                         f"{(tried['stderr'] or tried['stdout']).strip().splitlines()[-1:] or ''}")  # fmt: skip
            for name, data in old_files.items():  # whatever it did, start again from the old files
                (directory / name).write_bytes(data)
        done = run_measured([sigtool, f"--run-cdiff={directory.parent / 'daily-2.script'}"], cwd=directory)
        if done["returncode"]:
            notes.append(f".script: exit {done['returncode']}: {done['stderr'][-500:]}")
            break
        same = all((directory / name).read_bytes() == data for name, data in new_files.items())
        if not same:
            notes.append("sigtool's result differs from the new database")
            break
        times.append(done["seconds"])
        peaks.append(done["peak_mib"])
    if times:
        out["sigtool"] = {"seconds": median(times), "peak_mib": median(peaks), "runs": times}
        notes.append("sigtool --run-cdiff on the .script form (the same commands, not gzip-compressed, no signature "
                     "check) gives exactly the new files")  # fmt: skip
    if clamscan and times:
        directory = work / "clamav" / "run-0"
        tiny = work / "clamav" / "tiny.txt"
        tiny.write_text("hello\n")
        loads = [run_measured([clamscan, "--no-summary", "-d", str(directory), str(tiny)]) for _ in range(runs)]
        good = [r for r in loads if r["returncode"] in (0, 1)]
        if good:
            out["clamscan_load"] = {
                "seconds": median([r["seconds"] for r in good]),
                "peak_mib": median([r["peak_mib"] for r in good]),
            }
        else:
            notes.append(f"clamscan failed to load it: {loads[0]['stderr'][-300:]}")
    out["note"] = "; ".join(notes)
    return out


def _info(files: Mapping[str, bytes], version: int) -> bytes:
    """A ``daily.info`` manifest as in a CVD: header line, then ``name:size:sha256`` per file."""
    count = sum(data.count(b"\n") for data in files.values())
    lines = [f"ClamAV-VDB:26 Nov 2026 00-00 +0000:{version}:{count}:200:X:X:bench:0"]
    lines += [f"{name}:{len(data)}:{hashlib.sha256(data).hexdigest()}" for name, data in sorted(files.items())]
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------------------------------------------------------
# 4. A fleet picking up the release through a real server


@dataclass
class Agent:
    index: int
    agent_id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Agent {self.agent_id}:{self.secret}"}


@dataclass
class Rush:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    done_at: list[float] = field(default_factory=list)
    bytes_in: Counter[str] = field(default_factory=Counter)

    def ok(self, kind: str, seconds: float, size: int) -> None:
        self.latencies.setdefault(kind, []).append(seconds)
        self.bytes_in[kind] += size


def _fleet_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(
        http=False,
        postgres=args.postgres,
        interval=60.0,
        server_env=["GARRISON_UPDATES_CHECK_SECONDS=0", *args.server_env],
        profile=None,
        workers=args.workers,
    )


def insert_agents(database_url: str, count: int, first: int) -> list[Agent]:
    """What enrolling stores, written straight into the database (enrolling 10,000 through the API takes minutes)."""
    from sqlalchemy import insert, select

    import garrison.server.models  # noqa: F401 - every table, for the foreign keys
    from garrison.server.agents.models import Agent as AgentRow
    from garrison.server.agents.models import EnrollmentToken
    from garrison.server.auth.tokens import token_hash
    from garrison.server.db import Database, make_engine, utcnow

    database = Database(make_engine(database_url))
    agents, rows = [], []
    now = utcnow()
    with database.session() as session:
        token = session.scalars(select(EnrollmentToken).limit(1)).one()
        for i in range(first, first + count):
            agent = Agent(i, str(uuid.uuid4()), uuid.uuid4().hex + uuid.uuid4().hex)
            agents.append(agent)
            rows.append(
                {
                    "id": agent.agent_id,
                    "unit_id": token.unit_id,
                    "secret_hash": token_hash(agent.secret),
                    "hostname": f"pc-{i:06d}.so-yte.bn.gov.vn",
                    "os": "Windows",
                    "os_version": "10.0.19045",
                    "agent_version": "0.9.0",
                    "enrolled_with": token.id,
                    "last_seen_at": now,
                    "last_address": "127.0.0.1",
                }
            )
        for start in range(0, len(rows), 2000):
            session.execute(insert(AgentRow), rows[start : start + 2000])
    database.engine.dispose()
    return agents


def enroll_api(server: Any, token: str, count: int) -> list[Agent]:
    import httpx2

    agents = []
    with httpx2.Client(base_url=server.url, verify=server.ssl_context(), timeout=60) as client:
        for i in range(count):
            body = {"token": token, "hostname": f"verify-{i}.bench", "os": "Linux", "os_version": "Debian 12",
                    "agent_version": "0.9.0"}  # fmt: skip
            answer = client.post("/api/v1/agent/enroll", json=body)
            answer.raise_for_status()
            agents.append(Agent(-1 - i, answer.json()["agent_id"], answer.json()["secret"]))
    return agents


def publish_into(server: Any, content: Mapping[str, bytes], reason: str) -> tuple[int, float]:
    """``releases.publish`` into the server's own database and data directory (what ``POST /api/v1/releases`` and
    the maintenance loop call with the sources' content); the release number and seconds."""
    from garrison.server.audit.service import SYSTEM
    from garrison.server.db import Database, make_engine
    from garrison.server.updates import releases
    from garrison.server.updates.repository import UpdateRepository

    database = Database(make_engine(server.database_url))
    repo = UpdateRepository(server.work / "server")
    started = time.perf_counter()
    with database.session() as session:
        release = releases.publish(session, repo, content, actor=SYSTEM, reason=reason)
    seconds = time.perf_counter() - started
    database.engine.dispose()
    if release is None:
        raise RuntimeError("publish returned None (nothing changed?)")
    return release.number, seconds


def make_updater(server: Any, agent: Agent, directory: Path) -> Any:
    from garrison.agent.client import AgentClient
    from garrison.agent.settings import AgentSettings
    from garrison.agent.updater import SignatureUpdater

    settings = AgentSettings(state_dir=directory, heartbeat_seconds=60)
    client = AgentClient(server.url, server.ssl_context(), credential=(agent.agent_id, agent.secret), timeout=120)
    return SignatureUpdater(settings, client)


async def agent_update(client: Any, agent: Agent, rush: Rush, t0: float, want: int, inventory: dict[str, Any]) -> None:
    """What the updater does for one agent, as raw requests: heartbeat, TUF refresh, the delta by its hashed URL."""
    import httpx2

    from garrison.protocol.updates import METADATA_PATH, TARGETS_PATH, delta_target

    async def get(kind: str, url: str, expect: tuple[int, ...] = (200,)) -> Any:
        started = time.perf_counter()
        try:
            answer = await client.get(url, headers=agent.headers)
        except httpx2.HTTPError as exc:
            rush.errors[f"{kind}: {type(exc).__name__}"] += 1
            return None
        if answer.status_code not in expect:
            rush.errors[f"{kind}: HTTP {answer.status_code}"] += 1
            return None
        rush.ok(kind, time.perf_counter() - started, len(answer.content))
        return answer

    # The heartbeat names the release; until this server process's offer cache (5 s) sees it, try again in 1 s.
    for _attempt in range(30):
        started = time.perf_counter()
        try:
            answer = await client.post("/api/v1/agent/heartbeat", json={"inventory": inventory},
                                       headers=agent.headers)  # fmt: skip
        except httpx2.HTTPError as exc:
            rush.errors[f"heartbeat: {type(exc).__name__}"] += 1
            await asyncio.sleep(1)
            continue
        if answer.status_code != 200:
            rush.errors[f"heartbeat: HTTP {answer.status_code}"] += 1
            await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
            continue
        rush.ok("heartbeat", time.perf_counter() - started, len(answer.content))
        order = (answer.json().get("updates") or {}).get("release")
        if order == want:
            break
        rush.counts["heartbeats still naming the old release"] += 1
        await asyncio.sleep(1)
    else:
        rush.errors["heartbeat: never named the new release"] += 1
        return
    # python-tuf's refresh: the next root version (404: none), timestamp, then the snapshot and targets it names.
    if await get("root probe (404)", f"{METADATA_PATH}2.root.json", (404,)) is None:
        return
    stamp = await get("timestamp", f"{METADATA_PATH}timestamp.json")
    if stamp is None:
        return
    snapshot_version = stamp.json()["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = await get("snapshot", f"{METADATA_PATH}{snapshot_version}.snapshot.json")
    if snapshot is None:
        return
    targets_version = snapshot.json()["signed"]["meta"]["targets.json"]["version"]
    targets = await get("targets", f"{METADATA_PATH}{targets_version}.targets.json")
    if targets is None:
        return
    path = delta_target(want - 1, want)
    listed = targets.json()["signed"]["targets"].get(path)
    if listed is None:
        rush.errors["targets: the delta is not listed"] += 1
        return
    digest = listed["hashes"]["sha256"]
    directory, _, leaf = path.rpartition("/")
    delta = await get("delta", f"{TARGETS_PATH}{directory}/{digest}.{leaf}")
    if delta is None:
        return
    if hashlib.sha256(delta.content).hexdigest() != digest or len(delta.content) != listed["length"]:
        rush.errors["delta: hash or length mismatch"] += 1
        return
    rush.done_at.append(time.monotonic() - t0)


async def run_rush(server: Any, agents: list[Agent], connections: int, in_flight: int, want: int, t0: float) -> Rush:
    """Every agent at once; ``in_flight`` of them (0: all) go through their sequence at a time, the others wait for
    a turn, so latencies are the server's under that load rather than time queued for one of the connections."""
    import httpx2

    rush = Rush()
    gate = asyncio.Semaphore(in_flight or len(agents))

    async def one(agent: Agent) -> None:
        async with gate:
            await agent_update(client, agent, rush, t0, want, inventory)

    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    client = httpx2.AsyncClient(
        base_url=server.url, verify=server.ssl_context(), limits=limits, timeout=httpx2.Timeout(120.0, pool=600.0)
    )
    inventory = {
        "hostname": "pc.bench", "os": "Windows", "os_version": "10.0.19045", "ips": ["10.0.0.1"],
        "macs": ["02:00:00:00:00:01"], "agent_version": "0.9.0", "engine_version": "0.9.0",
        "signature_version": "1", "signature_date": None, "realtime_enabled": True, "firewall_enabled": True,
        "last_scan_at": None, "errors": [], "events_dropped": 0, "policy_revision": "",
        "updates": {"release": want - 1},
    }  # fmt: skip
    try:
        await asyncio.gather(*(one(agent) for agent in agents))
    finally:
        await client.aclose()
    return rush


def part_fleet(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import psutil

    from fleet import CpuWatch, Phase, Server, percentile, setup_server
    from garrison.engine.signatures import bundle
    from garrison.protocol.updates import UpdateOrder

    pair = make_pair(args.fleet_signatures, args.change)
    fleet_work = work / "fleet"
    shutil.rmtree(fleet_work, ignore_errors=True)
    fleet_work.mkdir(parents=True)
    server = Server(_fleet_args(args), fleet_work)
    print(f"\n## 4. {args.agents:,} agents pick up release 2 ({args.fleet_signatures:,} signatures, "
          f"{args.change:.1%} changed) through garrison server run --workers {args.workers} "
          "(HTTPS, PostgreSQL)")  # fmt: skip
    out: dict[str, Any] = {"signatures": args.fleet_signatures, "agents": args.agents, "workers": args.workers}
    server.create_database()
    try:
        server.start()
        token = setup_server(server)
        verify = enroll_api(server, token, args.verify_agents)
        log(f"inserting {args.agents - len(verify):,} agents into the database ...")
        agents = verify + insert_agents(server.database_url, args.agents - len(verify), 0)
        number, seconds = publish_into(server, pair.old, "bench: release 1")
        log(f"release {number} published in {seconds:.1f} s")
        out["publish_release_1_s"] = seconds
        updaters = []
        for i, agent in enumerate(verify):  # the real client, release 1 in full
            updater = make_updater(server, agent, fleet_work / f"verify-{i}")
            outcome = updater.check(UpdateOrder(release=1))
            updaters.append(updater)
            log(f"verify agent {i}: release {outcome.installed} via {outcome.via}, {outcome.bytes_downloaded:,} bytes")
        watch = CpuWatch(psutil.Process(server.process.pid))  # type: ignore[union-attr]
        phase = Phase("rush")
        number, seconds = publish_into(server, pair.new, "bench: release 2 (the change)")
        t0 = time.monotonic()
        wall0 = datetime.now(UTC)
        out["publish_release_2_s"] = seconds
        log(f"release {number} published in {seconds:.1f} s; {len(agents):,} agents ask at once ...")
        with watch.measure(phase):
            rush = asyncio.run(run_rush(server, agents, args.connections, args.in_flight, number, t0))
        elapsed = phase.elapsed
        requests = sum(map(len, rush.latencies.values())) + sum(rush.errors.values())
        all_latencies = [x for values in rush.latencies.values() for x in values]
        last = max(rush.done_at) if rush.done_at else float("nan")
        served = sum(rush.bytes_in.values())
        rows = []
        for kind, values in rush.latencies.items():
            errors = sum(n for key, n in rush.errors.items() if key.startswith(f"{kind}:"))
            rows.append([kind, f"{len(values):,}", f"{errors:,}", f"{statistics.median(values) * 1000:.0f}",
                         f"{percentile(values, 0.99) * 1000:.0f}", f"{max(values) * 1000:.0f}",
                         fmt_bytes(rush.bytes_in[kind])])  # fmt: skip
        table(["request", "ok", "errors", "median ms", "p99 ms", "max ms", "bytes served"], rows)
        server_side = server_latencies(server.log_path, wall0)
        if server_side:
            print("time in the server (its access log, duration_ms), same requests:")
            table(
                ["request", "answered", "median ms", "p99 ms", "max ms", "statuses"],
                [[kind, f"{len(v['ms']):,}", f"{statistics.median(v['ms']):.1f}", f"{percentile(v['ms'], 0.99):.1f}",
                  f"{max(v['ms']):.1f}", ", ".join(f"{k}: {n:,}" for k, n in sorted(v["status"].items()))]
                 for kind, v in server_side.items()],
            )  # fmt: skip
        for reason, n in sorted(rush.errors.items()):
            print(f"  error  {reason}: {n:,}")
        for name, n in sorted(rush.counts.items()):
            print(f"  count  {name}: {n:,}")
        cpu = ", ".join(f"{who} {s:.0f} s ({s / elapsed:.0%})" for who, s in phase.cpu.items())
        print(f"agents with the delta: {len(rush.done_at):,} of {len(agents):,}; last one {last:.1f} s after "
              f"publication; {requests:,} requests in {elapsed:.1f} s = {requests / elapsed:.0f}/s; all requests "
              f"p50 {statistics.median(all_latencies) * 1000:.0f} ms, p99 {percentile(all_latencies, 0.99) * 1000:.0f} "
              f"ms; served {fmt_bytes(served)} ({fmt_bytes(rush.bytes_in['delta'])} of deltas)")  # fmt: skip
        if rush.done_at:
            print("agents with the delta, seconds after publication: " + ", ".join(
                f"{int(q * 100)} % by {percentile(rush.done_at, q):.1f}"
                for q in (0.01, 0.5, 0.9, 0.99, 1.0)))  # fmt: skip
        print(f"CPU during the rush (% of one core): {cpu}; server CPU per request "
              f"{phase.cpu.get('server', 0.0) / max(1, requests) * 1000:.1f} ms")  # fmt: skip
        print(f"real-world bound: agents learn of a release at their next heartbeat (60 s, spread), so the last "
              f"agent has it about 60 s + {last:.0f} s after publication at this load")  # fmt: skip
        out.update(
            rush_seconds=elapsed,
            last_agent_s=last,
            agents_done=len(rush.done_at),
            requests=requests,
            requests_per_s=requests / elapsed,
            p50_ms=statistics.median(all_latencies) * 1000,
            p99_ms=percentile(all_latencies, 0.99) * 1000,
            by_kind={
                kind: {
                    "ok": len(values),
                    "median_ms": statistics.median(values) * 1000,
                    "p99_ms": percentile(values, 0.99) * 1000,
                    "max_ms": max(values) * 1000,
                    "bytes": rush.bytes_in[kind],
                }
                for kind, values in rush.latencies.items()
            },
            errors=dict(rush.errors),
            counts=dict(rush.counts),
            bytes_served=served,
            cpu_seconds=phase.cpu,
            server_cpu_ms_per_request=phase.cpu.get("server", 0.0) / max(1, requests) * 1000,
            in_flight=args.in_flight,
            server_side={
                kind: {
                    "answered": len(v["ms"]),
                    "median_ms": statistics.median(v["ms"]),
                    "p99_ms": percentile(v["ms"], 0.99),
                    "status": dict(v["status"]),
                }
                for kind, v in server_side.items()
            },
            done_percentiles_s={q: percentile(rush.done_at, q) for q in (0.5, 0.9, 0.99)} if rush.done_at else {},
        )
        verified = []
        for i, updater in enumerate(updaters):  # the real client again: release 2 must come by delta
            outcome = updater.check(UpdateOrder(release=number))
            files = {p.name: p.read_bytes() for p in (updater.release_dir() or Path("/nonexistent")).iterdir()}
            ok = (
                outcome.installed == number
                and outcome.via == "delta"
                and bundle.digest(files) == bundle.digest(bundle.canonical(pair.new))
            )
            verified.append({"installed": outcome.installed, "via": outcome.via, "bytes": outcome.bytes_downloaded,
                             "ok": ok})  # fmt: skip
            log(f"verify agent {i}: release {outcome.installed} via {outcome.via}, {outcome.bytes_downloaded:,} "
                f"bytes, content {'matches' if ok else 'DOES NOT MATCH'}")  # fmt: skip
        print(f"real python-tuf client (SignatureUpdater.check) on {len(verified)} agents: "
              + "; ".join(f"release {v['installed']} via {v['via']}, {v['bytes']:,} bytes, "
                          f"{'OK' if v['ok'] else 'FAILED'}" for v in verified))  # fmt: skip
        out["verified"] = verified
        out["server_log_errors"] = _log_errors(server.log_path)
        if out["server_log_errors"]:
            print(f"server log: {len(out['server_log_errors'])} error lines, first: {out['server_log_errors'][0]}")
    finally:
        server.stop()
        server.drop_database()
    return out


def _request_kind(path: str) -> str | None:
    if path == "/api/v1/agent/heartbeat":
        return "heartbeat"
    if path.startswith("/api/v1/updates/metadata/"):
        name = path.rsplit("/", 1)[1]
        if name == "timestamp.json":
            return "timestamp"
        return {"root": "root probe (404)", "snapshot": "snapshot", "targets": "targets"}.get(name.split(".")[1])
    if path.startswith("/api/v1/updates/targets/"):
        return "delta" if path.endswith(".delta") else "full release"
    return None


def server_latencies(path: Path, since: datetime) -> dict[str, dict[str, Any]]:
    """Per kind of request answered since ``since``: the server's own durations (ms) and statuses, from its log."""
    found: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if '"garrison.access"' not in line:
                continue
            try:
                entry = json.loads(line)
                moment = datetime.fromisoformat(entry["time"])
            except (ValueError, KeyError):
                continue
            kind = _request_kind(entry.get("path", ""))
            if kind is None or moment < since or "duration_ms" not in entry:
                continue
            slot = found.setdefault(kind, {"ms": [], "status": Counter()})
            slot["ms"].append(float(entry["duration_ms"]))
            slot["status"][str(entry.get("status"))] += 1
    return found


def _log_errors(path: Path) -> list[str]:
    found = []
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if '"level": "ERROR"' in line or '"level":"ERROR"' in line or "Traceback" in line:
                found.append(line[:400])
    return found


# ---------------------------------------------------------------------------------------------------------------
# The run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Garrison's update channel: bytes per agent, publish time, agent apply time and memory, and a "
        "fleet picking up a release through a real server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--signatures", type=int, default=1_000_000, help="signatures in the database (parts 1-3)")
    parser.add_argument("--change", type=float, default=0.01, help="fraction of the signatures changed")
    parser.add_argument("--runs", type=int, default=3, help="runs of publish and of each agent step (medians)")
    parser.add_argument("--parts", default="bytes,publish,agent,fleet", help="which parts to run (comma-separated)")
    parser.add_argument("--no-clamav", action="store_true", help="skip the sigtool / clamscan reference")
    parser.add_argument("--agents", type=int, default=10_000, help="agents picking up the release (part 4)")
    parser.add_argument("--fleet-signatures", type=int, default=100_000, help="signatures in the fleet's database")
    parser.add_argument("--verify-agents", type=int, default=3, help="agents checked with the real python-tuf client")
    parser.add_argument("--workers", type=int, default=2, help="server processes (garrison server run --workers)")
    parser.add_argument("--connections", type=int, default=64, help="the simulated fleet's connection pool")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=64,
        help="agents going through their update at a time (the rest wait for a turn); 0: all 10,000 at once, "
        "queueing for the connections (latencies then measure that queue)",
    )
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres", help="PostgreSQL server URL"
    )
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="extra GARRISON_* for the server"
    )
    parser.add_argument("--work", type=Path, help="work directory [default: a temporary one, removed at the end]")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"bytes", "publish", "agent", "fleet"}
    if unknown:
        raise SystemExit(f"unknown parts: {', '.join(sorted(unknown))}")
    work = args.work or Path(tempfile.mkdtemp(prefix="garrison-updates-"))
    work.mkdir(parents=True, exist_ok=True)
    print("# Garrison update channel benchmark")
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; work {work}")
    results: dict[str, Any] = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    started = time.monotonic()
    try:
        if parts & {"bytes", "publish", "agent"}:
            log(f"generating {args.signatures:,} signatures and the {args.change:.1%} change ...")
            pair = make_pair(args.signatures, args.change)
            shape = pair.shape
            print(f"database: {shape.total:,} signatures ({', '.join(f'{k} {n:,}' for k, n in shape.counts.items())}); "
                  f"{fmt_bytes(sum(map(len, pair.old.values())))} uncompressed")  # fmt: skip
            results["database"] = {"counts": shape.counts, "change": pair.summary}
            if "bytes" in parts:
                results["bytes"] = part_bytes(pair, work)
            if "publish" in parts:
                results["publish"] = part_publish(pair, args.runs, work)
            if "agent" in parts:
                results["agent"] = part_agent(pair, args.runs, work, not args.no_clamav)
            del pair
        if "fleet" in parts:
            results["fleet"] = part_fleet(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = time.monotonic() - started
    print(f"\ntotal {results['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_agent"]:
        sys.exit(agent_child(sys.argv[2], Path(sys.argv[3])))
    sys.exit(main())
