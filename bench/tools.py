"""Runners for the benchmarked tools: garrison, clamscan, clamd + clamdscan, yara; and the read-and-hash limit.

Every runner measures whole-process wall time. Peak memory is read with ``/usr/bin/time -f %M`` for command-line
tools and from ``VmHWM`` in ``/proc/PID/status`` for clamd (the daemon's high-water mark, database included).
Detections are returned as ``{path relative to the corpus: {canonical names}}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

from sigset import canonical_name

TIME = "/usr/bin/time"

Detections = dict[str, set[str]]


@dataclass
class Proc:
    wall: float
    peak_kib: int | None
    rc: int
    stdout: str
    stderr: str


def run_timed(cmd: list[str], timeout: float = 7200) -> Proc:
    """Run ``cmd`` under ``/usr/bin/time`` and return its wall time, peak RSS, exit code and output."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = [TIME, "-f", "%M", "-o", tf.name, *cmd] if os.path.exists(TIME) else cmd
        t0 = time.monotonic()
        p = subprocess.run(full, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
        wall = time.monotonic() - t0
        peak = None
        with contextlib.suppress(ValueError, IndexError):
            peak = int(Path(tf.name).read_text().strip().splitlines()[-1])
    return Proc(wall, peak, p.returncode, p.stdout, p.stderr)


@dataclass
class ScanOutcome:
    proc: Proc
    detections: Detections
    errors: list[str] = field(default_factory=list)
    peak_kib: int | None = None  # overrides proc.peak_kib (clamd)


class Tool:
    name = "tool"
    note = ""

    def available(self) -> str | None:
        """None when the tool can run, else the reason it cannot."""
        raise NotImplementedError

    def start(self) -> tuple[float, int | None]:
        """Prepare one run; returns (load seconds, peak KiB of the load)."""
        raise NotImplementedError

    def scan(self, corpus: Path) -> ScanOutcome:
        raise NotImplementedError

    def stop(self) -> None:
        """End one run (daemons)."""


def _rel(path: str, root: Path) -> str:
    return os.path.relpath(os.path.abspath(path), root)


def parse_clamav(stdout: str, root: Path) -> tuple[Detections, list[str]]:
    det: Detections = {}
    errors: list[str] = []
    for line in stdout.splitlines():
        if line.endswith(" FOUND"):
            path, _, name = line[: -len(" FOUND")].rpartition(": ")
            det.setdefault(_rel(path, root), set()).add(canonical_name(name))
        elif line.endswith(" ERROR"):
            errors.append(line)
    return det, errors


class ClamScan(Tool):
    name = "clamscan"

    def __init__(self, db: Path, tiny: Path) -> None:
        self.db, self.tiny = db, tiny

    def available(self) -> str | None:
        return None if shutil.which("clamscan") else "clamscan not installed (apt-get install clamav)"

    def start(self) -> tuple[float, int | None]:
        p = run_timed(["clamscan", "--no-summary", "-d", str(self.db), str(self.tiny)])
        if p.rc not in (0, 1):
            raise RuntimeError(f"clamscan failed to load {self.db}: {p.stderr.strip()[-2000:]}")
        return p.wall, p.peak_kib

    def scan(self, corpus: Path) -> ScanOutcome:
        p = run_timed(["clamscan", "-r", "--no-summary", "-d", str(self.db), str(corpus)])
        det, errors = parse_clamav(p.stdout, corpus)
        if p.rc not in (0, 1):
            errors.append(f"clamscan exit {p.rc}: {p.stderr.strip()[-500:]}")
        return ScanOutcome(p, det, errors)


class Clamd(Tool):
    name = "clamd"
    note = "clamdscan --multiscan --fdpass; clamd MaxThreads 3, DisableCache yes"

    def __init__(self, db: Path, workdir: Path) -> None:
        self.db = db
        self.dir = workdir
        self.sock = workdir / "clamd.sock"
        self.conf = workdir / "clamd.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def available(self) -> str | None:
        missing = [t for t in ("clamdscan",) if not shutil.which(t)]
        if not self._clamd():
            missing.append("clamd")
        return f"{', '.join(missing)} not installed (apt-get install clamav-daemon)" if missing else None

    @staticmethod
    def _clamd() -> str | None:
        return shutil.which("clamd") or (os.path.exists("/usr/sbin/clamd") and "/usr/sbin/clamd") or None

    def _write_conf(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        self.conf.write_text(
            "\n".join(
                [
                    f"LocalSocket {self.sock}",
                    f"DatabaseDirectory {self.db}",
                    f"TemporaryDirectory {self.dir / 'tmp'}",
                    f"LogFile {self.dir / 'clamd.log'}",
                    "LogTime yes",
                    "LogSyslog no",
                    "Foreground yes",
                    "MaxThreads 3",
                    "DisableCache yes",
                    "MaxQueue 200",
                    "ReadTimeout 600",
                    "CommandReadTimeout 60",
                    "SelfCheck 0",
                    "",
                ]
            )
        )

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.sock))
                s.sendall(b"zPING\0")
                return s.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def start(self) -> tuple[float, int | None]:
        self._write_conf()
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()
        clamd = self._clamd()
        assert clamd
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [clamd, "--config-file", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        while not self._ping():
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"clamd exited with {self.proc.returncode}: {err[-2000:]}")
            if time.monotonic() - t0 > 600:
                raise RuntimeError("clamd not ready after 600 s")
            time.sleep(0.01)
        return time.monotonic() - t0, self._hwm()

    def _hwm(self) -> int | None:
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def scan(self, corpus: Path) -> ScanOutcome:
        p = run_timed(
            ["clamdscan", f"--config-file={self.conf}", "--multiscan", "--fdpass", "--no-summary", str(corpus)]
        )
        det, errors = parse_clamav(p.stdout, corpus)
        if p.rc not in (0, 1):
            errors.append(f"clamdscan exit {p.rc}: {p.stderr.strip()[-500:]}")
        return ScanOutcome(p, det, errors, peak_kib=self._hwm())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


class Yara(Tool):
    name = "yara"
    note = "yara -p 2 -r: body + logical sigs as YARA hex rules + the native rules; no hashes, no unpacking"

    def __init__(self, rules: list[Path], tiny: Path) -> None:
        self.rules, self.tiny = [str(r) for r in rules], tiny

    def available(self) -> str | None:
        return None if shutil.which("yara") else "yara not installed (apt-get install yara)"

    def start(self) -> tuple[float, int | None]:
        p = run_timed(["yara", "-w", *self.rules, str(self.tiny)])
        if p.rc != 0:
            raise RuntimeError(f"yara failed to compile {self.rules}: {p.stderr.strip()[-2000:]}")
        return p.wall, p.peak_kib

    def scan(self, corpus: Path) -> ScanOutcome:
        p = run_timed(["yara", "-w", "-p", "2", "-r", *self.rules, str(corpus)])
        det: Detections = {}
        for line in p.stdout.splitlines():
            rule, _, path = line.partition(" ")
            if path:
                det.setdefault(_rel(path, corpus), set()).add(canonical_name(rule))
        errors = [ln for ln in p.stderr.splitlines() if ln.strip()]
        if p.rc != 0:
            errors.append(f"yara exit {p.rc}")
        return ScanOutcome(p, det, errors)


def garrison_command() -> list[str] | None:
    exe = Path(sys.executable).parent / "garrison"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("garrison")
    return [found] if found else None


class Garrison(Tool):
    name = "garrison"
    note = "garrison scan --db DB --jobs 2 --jsonl --quiet"

    def __init__(self, db: Path, tiny: Path, jobs: int = 2) -> None:
        self.db, self.tiny, self.jobs = db, tiny, jobs
        self.cmd = garrison_command()
        self.first_load: float | None = None

    def _args(self, target: Path) -> list[str]:
        assert self.cmd
        return [*self.cmd, "scan", "--db", str(self.db), "--jobs", str(self.jobs), "--jsonl", "--quiet", str(target)]

    def available(self) -> str | None:
        if not self.cmd:
            return "not available (no garrison executable)"
        try:
            p = subprocess.run([*self.cmd, "scan", "--help"], capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"not available ({e})"
        if p.returncode != 0 or "--jsonl" not in p.stdout:
            tail = (p.stderr.strip().splitlines() or ["no --jsonl option"])[-1]
            return f"not available (`garrison scan --help`: {tail})"
        return None

    def _tiny(self, *extra: str) -> Proc:
        p = run_timed([*self._args(self.tiny), *extra])
        if p.rc not in (0, 1):
            raise RuntimeError(f"garrison failed on a tiny file (exit {p.rc}): {p.stderr.strip()[-2000:]}")
        return p

    def start(self) -> tuple[float, int | None]:
        if self.first_load is None:
            # The first, uncached compile of the database; then one load that writes the cache (not timed).
            self.first_load = self._tiny("--no-cache").wall
            self._tiny()
        p = self._tiny()
        return p.wall, p.peak_kib

    def scan(self, corpus: Path) -> ScanOutcome:
        p = run_timed(self._args(corpus))
        det: Detections = {}
        errors: list[str] = []
        for line in p.stdout.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                errors.append(f"not JSON: {line[:200]}")
                continue
            path = rec.get("path")
            if not isinstance(path, str):
                continue
            status = rec.get("status")
            names = {canonical_name(str(d.get("name"))) for d in rec.get("detections") or [] if isinstance(d, dict)}
            if names:
                det.setdefault(_rel(path, corpus), set()).update(names)
            if status in ("error", "incomplete"):
                errors.append(f"{_rel(path, corpus)}: {status} {rec.get('reason') or rec.get('error') or ''}".strip())
        if p.rc not in (0, 1):
            errors.append(f"garrison exit {p.rc}: {p.stderr.strip()[-500:]}")
        return ScanOutcome(p, det, errors)


# ---------------------------------------------------------------------------------------------------------------
# Page cache and the read-and-hash limit


def list_files(root: Path) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        out.extend(Path(dirpath) / f for f in files)
    out.sort()
    return out


def warm(files: list[Path]) -> tuple[float, int]:
    """Read every file once (fills the page cache); returns (seconds, bytes)."""
    t0 = time.monotonic()
    total = 0
    for f in files:
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
    return time.monotonic() - t0, total


def _hash_files(paths: list[str]) -> int:
    total = 0
    for p in paths:
        with open(p, "rb") as fh:
            data = fh.read()
        hashlib.sha256(data).digest()
        total += len(data)
    return total


def read_and_hash(files: list[Path], procs: int = 2) -> tuple[float, int]:
    """Read and SHA-256 every file in ``procs`` processes (files dealt by size); returns (seconds, bytes)."""
    by_size = sorted(files, key=lambda p: p.stat().st_size, reverse=True)
    shares: list[list[str]] = [[] for _ in range(procs)]
    for i, f in enumerate(by_size):
        shares[i % procs].append(str(f))
    with Pool(procs) as pool:
        pool.map(_hash_files, [[]] * procs)  # start the workers before timing
        t0 = time.monotonic()
        total = sum(pool.map(_hash_files, shares))
        return time.monotonic() - t0, total


def make_tools(names: list[str], db: Path, yara_rules: list[Path], tiny: Path, workdir: Path) -> list[Tool]:
    makers: dict[str, Callable[[], Tool]] = {
        "garrison": lambda: Garrison(db, tiny),
        "clamscan": lambda: ClamScan(db, tiny),
        "clamd": lambda: Clamd(db, workdir / "clamd"),
        "yara": lambda: Yara(yara_rules, tiny),
    }
    return [makers[n]() for n in names]
