"""Garrison's scanning benchmark: garrison scan against clamscan, clamd + clamdscan --multiscan and yara.

Run it with ``make bench`` (which installs yara and clamav-daemon first and runs ``python bench/engine.py``), or::

    .venv/bin/python bench/engine.py                 # ~2 GB / 20,000-file corpus, 100k hashes, 5k body sigs
    .venv/bin/python bench/engine.py --scale 0.1     # a 200 MB quick run
    .venv/bin/python bench/engine.py --large         # 1M hashes, 50k body sigs, 5k logical sigs, 5k YARA rules
    .venv/bin/python bench/engine.py --tools clamscan,yara --runs 1 --json results.json

What it does (issue 2, section 4):

1. Builds a deterministic corpus under ``--work`` (default ``bench/work/``, git-ignored) from ``--seed``:
   text, logs, source, HTML, binaries, PE and ELF executables, zip and tar.gz archives, PDF and OOXML documents,
   with known samples planted (see ``bench/corpus.py``). It is cached and rebuilt only when missing or when the
   seed, scale or generator version changes.
2. Builds a deterministic signature set (``bench/sigset.py``): .hdb (MD5) and .hsb (SHA256) hashes, .ndb body
   signatures with wildcards and offsets, .ldb logical signatures and native YARA rules, all in one ClamAV
   database directory; and one YARA file holding the body and logical signatures rewritten as YARA plus the native
   rules, for the ``yara`` CLI.
3. Reads the corpus once (warm page cache), measures the read-and-hash limit (SHA-256 of every file in two
   processes), then for each tool and each of ``--runs`` runs: database load time (a scan of one tiny file;
   clamd: start until it answers PING), a full scan (whole-process wall time), and peak RSS.
4. Prints a table per tool with the medians, Garrison's speed-up over each tool, and compares detections per file
   (against the planted ground truth and against Garrison). yara is compared only on plain files (it has no
   unpacking, so it cannot see inside archives, PDFs or OOXML) and without hash signatures (it has none).

Garrison is run as ``garrison scan --db DB --jobs 2 --jsonl --quiet CORPUS``; if that command is not available
yet the runner says "not available" and measures the other tools.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import Corpus, ensure_corpus
from sigset import LARGE, NORMAL, SetSize, write_sigset
from tools import Detections, Tool, list_files, make_tools, read_and_hash, warm

ALL_TOOLS = ("garrison", "clamscan", "clamd", "yara")
SIGSET_VERSION = 3
TARGETS = {"clamscan": 5.0, "clamd": 2.0, "yara": 1.0}

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Signatures


KINDS = ("hash", "ndb", "ldb", "yara")
DB_FILES = {"hash": ("bench.hdb", "bench.hsb"), "ndb": ("bench.ndb",), "ldb": ("bench.ldb",), "yara": ("bench.yar",)}
YARA_FILES = {"ndb": "ndb.yar", "ldb": "ldb.yar", "yara": "yara.yar"}


def ensure_sigset(
    work: Path, corpus: Corpus, seed: int, scale: float, size: SetSize, label: str, kinds: list[str]
) -> tuple[Path, list[Path]]:
    """The ClamAV database directory and the YARA rule files for ``kinds`` (built unless cached)."""
    out = work / f"sigs-seed{seed}-scale{scale:g}-{label}"
    stamp = out / "stamp.json"
    key = {
        "version": SIGSET_VERSION,
        "seed": seed,
        "scale": scale,
        "size": size.__dict__,
        "planted": hashlib.sha256(repr(corpus.planted_hashes).encode()).hexdigest(),
    }
    if stamp.exists() and json.loads(stamp.read_text()) == key:
        log(f"signatures: cached at {out}")
    else:
        log(
            f"signatures: writing {size.hashes:,} hashes, {size.ndb:,} body, {size.ldb:,} logical, "
            f"{size.yara:,} YARA rules to {out}"
        )
        t0 = time.monotonic()
        if out.exists():
            shutil.rmtree(out)
        write_sigset(seed, size, out, corpus.planted_hashes)
        stamp.write_text(json.dumps(key))
        log(f"signatures: written in {time.monotonic() - t0:.1f} s")
    yara_files = [out / "yara" / YARA_FILES[k] for k in kinds if k in YARA_FILES]
    if sorted(kinds) == sorted(KINDS):
        return out / "db", yara_files
    sub = out / ("db-" + "-".join(k for k in KINDS if k in kinds))
    if not sub.exists():
        sub.mkdir()
        for k in kinds:
            for f in DB_FILES[k]:
                (sub / f).symlink_to(out / "db" / f)
    log(f"signatures: using only {', '.join(kinds)} ({sub})")
    return sub, yara_files


# ---------------------------------------------------------------------------------------------------------------
# Measuring


@dataclass
class ToolResult:
    name: str
    status: str = "ok"  # ok | not available | failed
    reason: str = ""
    note: str = ""
    loads: list[float] = field(default_factory=list)
    scans: list[float] = field(default_factory=list)
    peaks_kib: list[int] = field(default_factory=list)
    first_load: float | None = None
    detections: Detections = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def med(self, xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    def summary(self, mb: float, files: int) -> dict[str, Any]:
        scan = self.med(self.scans)
        return {
            "status": self.status,
            "reason": self.reason,
            "note": self.note,
            "load_s": self.med(self.loads),
            "first_load_s": self.first_load,
            "scan_s": scan,
            "mb_per_s": mb / scan if scan else None,
            "files_per_s": files / scan if scan else None,
            "peak_mib": max(self.peaks_kib) / 1024 if self.peaks_kib else None,
            "runs": {"load_s": self.loads, "scan_s": self.scans, "peak_kib": self.peaks_kib},
            "errors": self.errors[:200],
            "infected_files": len(self.detections),
        }


def measure(tool: Tool, corpus: Path, runs: int) -> ToolResult:
    res = ToolResult(tool.name, note=tool.note)
    reason = tool.available()
    if reason:
        res.status, res.reason = "not available", reason
        log(f"{tool.name}: {reason}")
        return res
    for r in range(1, runs + 1):
        try:
            load, load_peak = tool.start()
            if res.first_load is None:
                res.first_load = load
            res.loads.append(load)
            log(f"{tool.name} run {r}/{runs}: loaded in {load:.2f} s; scanning ...")
            out = tool.scan(corpus)
        except Exception as e:  # a tool failure is a result, not a crash of the benchmark
            res.status, res.reason = "failed", f"{type(e).__name__}: {e}"
            log(f"{tool.name}: failed: {res.reason}")
            return res
        finally:
            tool.stop()
        res.scans.append(out.proc.wall)
        peak = out.peak_kib if out.peak_kib is not None else out.proc.peak_kib
        res.peaks_kib.extend(p for p in (peak, load_peak) if p is not None)
        res.detections = out.detections
        res.errors = out.errors
        log(
            f"{tool.name} run {r}/{runs}: {out.proc.wall:.2f} s, {len(out.detections)} infected files, "
            f"{len(out.errors)} errors, peak {(peak or 0) / 1024:.0f} MiB"
        )
    return res


# ---------------------------------------------------------------------------------------------------------------
# Comparing detections


def plant_kind(entry: dict[str, Any]) -> str:
    sig = str(entry["plant"]["sig"])
    return "hash" if sig in ("md5", "sha256") else sig


def expected_detections(corpus: Corpus, kinds: list[str]) -> Detections:
    return {
        rel: {str(e["expected"])} for rel, e in corpus.manifest.items() if "expected" in e and plant_kind(e) in kinds
    }


def yara_scope(corpus: Corpus, det: Detections) -> Detections:
    """Only plain files, and no hash-signature names (the YARA file has no hash rules)."""
    out: Detections = {}
    for rel, names in det.items():
        entry = corpus.manifest.get(rel)
        if entry is None or entry["container"]:
            continue
        kept = {n for n in names if not n.startswith(("Bench_Hdb_", "Bench_Hsb_"))}
        if kept:
            out[rel] = kept
    return out


def diff(a: Detections, b: Detections) -> list[dict[str, Any]]:
    out = []
    for rel in sorted(set(a) | set(b)):
        x, y = a.get(rel, set()), b.get(rel, set())
        if x != y:
            out.append({"path": rel, "a": sorted(x), "b": sorted(y)})
    return out


def compare(corpus: Corpus, results: list[ToolResult], kinds: list[str]) -> dict[str, Any]:
    truth = expected_detections(corpus, kinds)
    ok = {r.name: r for r in results if r.status == "ok"}
    out: dict[str, Any] = {"expected_infected_files": len(truth), "vs_expected": {}, "vs_garrison": {}}
    for name, r in ok.items():
        if name == "yara":
            d = diff(yara_scope(corpus, truth), yara_scope(corpus, r.detections))
        else:
            d = diff(truth, r.detections)
        out["vs_expected"][name] = d
    g = ok.get("garrison")
    if g is not None:
        for name, r in ok.items():
            if name == "garrison":
                continue
            if name == "yara":
                out["vs_garrison"][name] = diff(yara_scope(corpus, g.detections), yara_scope(corpus, r.detections))
            else:
                out["vs_garrison"][name] = diff(g.detections, r.detections)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Report


def fmt(v: float | None, spec: str) -> str:
    """``format(v, spec)``, or a dash padded to the same width."""
    return "-".rjust(int(spec.split(".", maxsplit=1)[0])) if v is None else format(v, spec)


def report(corpus: Corpus, summaries: dict[str, dict[str, Any]], limit: dict[str, float], cmp: dict[str, Any]) -> None:
    mb = corpus.bytes / 1e6
    print()
    print(f"Corpus: {corpus.files:,} files, {mb:,.1f} MB at {corpus.root}")
    print(
        f"Read (1 process, first pass): {limit['warm_s']:.2f} s; read + SHA-256 in 2 processes (the "
        f"read-and-hash limit): {limit['hash_s']:.2f} s = {mb / limit['hash_s']:,.0f} MB/s"
    )
    print()
    g = summaries.get("garrison", {})
    g_rate = g.get("mb_per_s")
    head = (
        f"{'tool':<10} {'load s':>8} {'scan s':>8} {'MB/s':>8} {'files/s':>8} {'peak MiB':>9} "
        f"{'tool/garrison':>13} {'garrison x':>10} {'target':>7}"
    )
    print(head)
    print("-" * len(head))
    for name, s in summaries.items():
        if s["status"] != "ok":
            print(f"{name:<10} {s['status']}: {s['reason']}")
            continue
        rate = s["mb_per_s"]
        ratio = rate / g_rate if rate and g_rate else None
        speedup = g_rate / rate if rate and g_rate else None
        target = TARGETS.get(name)
        print(
            f"{name:<10} {fmt(s['load_s'], '8.2f')} {fmt(s['scan_s'], '8.2f')} {fmt(rate, '8.1f')} "
            f"{fmt(s['files_per_s'], '8.0f')} {fmt(s['peak_mib'], '9.0f')} {fmt(ratio, '13.2f')} "
            f"{fmt(speedup, '10.2f')} {('>=' + format(target, 'g') + 'x') if target else '':>7}"
        )
    hash_rate = mb / limit["hash_s"]
    print(
        f"{'hash-limit':<10} {'':>8} {limit['hash_s']:8.2f} {hash_rate:8.1f}"
        + (f"   garrison is {hash_rate / g_rate:.2f}x slower than this (target <= 4x)" if g_rate else "")
    )
    if g.get("first_load_s") is not None:
        print(f"garrison first, uncached load (--no-cache, compiles the database): {g['first_load_s']:.2f} s")
    print()
    print("Scan s, MB/s and files/s are whole-process wall times (database load included), median of the runs.")
    print("tool/garrison = the tool's throughput divided by Garrison's; garrison x = Garrison's speed-up.")
    print()
    print(f"Detections: {cmp['expected_infected_files']} files carry a planted sample (one each).")
    print("yara is compared on plain files only (it has no archive/PDF/OOXML unpacking, so it cannot see members)")
    print("and without hash signatures (the YARA file has no hash rules); names are compared modulo .UNOFFICIAL,")
    print("the YARA. prefix and '.' vs '_'.")
    for title, key in (("against the planted samples", "vs_expected"), ("against garrison", "vs_garrison")):
        for name, d in cmp[key].items():
            if not d:
                print(f"  {name} {title}: identical")
                continue
            ref = "garrison" if key == "vs_garrison" else "expected"
            print(f"  {name} {title}: {len(d)} files differ ({ref} -> {name}):")
            for item in d[:15]:
                print(f"    {item['path']}: {item['a'] or '-'} -> {item['b'] or '-'}")
            if len(d) > 15:
                print(f"    ... {len(d) - 15} more (see --json)")
    for name, s in summaries.items():
        if s.get("errors"):
            print(f"  {name} reported {len(s['errors'])} errors, first: {s['errors'][0][:200]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Benchmark garrison scan against clamscan, clamd (clamdscan --multiscan) and yara.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "work", help="work directory")
    ap.add_argument("--seed", type=int, default=20240601, help="seed of the corpus and signatures")
    ap.add_argument("--scale", type=float, default=1.0, help="corpus size: 1 = ~2 GB / 20,000 files")
    ap.add_argument("--large", action="store_true", help="1M hashes, 50k body, 5k logical sigs, 5k YARA rules")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool (medians are reported)")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS), help="comma-separated subset of " + ",".join(ALL_TOOLS))
    ap.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="signature kinds to load: comma-separated subset of "
        + ",".join(KINDS)
        + " (hash,ndb matches the setup measured in docs/clamav-formats.md)",
    )
    ap.add_argument("--json", type=Path, help="write the results to this file")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the corpus even if cached")
    ap.add_argument("--build-only", action="store_true", help="build the corpus and signatures, then stop")
    args = ap.parse_args(argv)
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in names if t not in ALL_TOOLS]
    if bad:
        ap.error(f"unknown tools: {', '.join(bad)}")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not kinds or any(k not in KINDS for k in kinds):
        ap.error(f"--kinds takes a comma-separated subset of {','.join(KINDS)}")
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    corpus = ensure_corpus(work, args.seed, args.scale, log=log, rebuild=args.rebuild)
    size = LARGE if args.large else NORMAL
    label = "large" if args.large else "normal"
    db, yara_rules = ensure_sigset(work, corpus, args.seed, args.scale, size, label, kinds)
    if not yara_rules and "yara" in names:
        log("yara: no YARA rules for these signature kinds; skipping yara")
        names.remove("yara")
    tiny = work / "tiny.txt"
    tiny.write_text("garrison benchmark: one tiny clean file to time database loading\n")
    if args.build_only:
        return 0

    files = list_files(corpus.root)
    log(f"warming the page cache: reading {len(files):,} files ...")
    warm_s, nbytes = warm(files)
    log(f"read {nbytes / 1e6:,.1f} MB in {warm_s:.2f} s; measuring the read-and-hash limit ...")
    hash_runs = [read_and_hash(files)[0] for _ in range(args.runs)]
    limit = {"warm_s": warm_s, "hash_s": statistics.median(hash_runs), "hash_runs": hash_runs}  # type: ignore[dict-item]
    log(f"read + SHA-256 in 2 processes: {limit['hash_s']:.2f} s (median)")

    results = []
    for tool in make_tools(names, db, yara_rules, tiny, work):
        results.append(measure(tool, corpus.root, args.runs))
        if tool.name == "garrison" and results[-1].status == "ok":
            results[-1].first_load = tool.first_load  # type: ignore[attr-defined]
    mb = corpus.bytes / 1e6
    summaries = {r.name: r.summary(mb, corpus.files) for r in results}
    cmp = compare(corpus, results, kinds)
    report(corpus, summaries, limit, cmp)

    if args.json:
        doc = {
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count()},
            "config": {
                "seed": args.seed,
                "scale": args.scale,
                "large": args.large,
                "runs": args.runs,
                "kinds": kinds,
                "signatures": size.__dict__,
                "db": str(db),
                "yara_rules": [str(p) for p in yara_rules],
            },
            "corpus": {"root": str(corpus.root), "files": corpus.files, "bytes": corpus.bytes},
            "limit": limit,
            "tools": summaries,
            "detections": cmp,
        }
        args.json.write_text(json.dumps(doc, indent=1, default=str))
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
