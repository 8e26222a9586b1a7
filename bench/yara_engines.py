"""yara-x against yara-python: the two maintained YARA engines callable from Python, on the same rules and files.

Garrison compiles the translated ClamAV signatures and the YARA rules with one of them; this measures both so the
choice rests on numbers. Run after ``bench/engine.py`` has built its corpus and signatures::

    .venv/bin/python bench/yara_engines.py                       # the default corpus and signature set
    .venv/bin/python bench/yara_engines.py --scale 0.1 --large

For each engine: compile time, the size of the compiled rules, scan throughput over the corpus files in one
process (files read first, so both see the same bytes from memory), per-call overhead on small buffers, and
peak memory of a child process that only compiles and scans. Both engines get the native YARA rules of the
signature set plus its body and logical signatures as YARA (the file the ``yara`` CLI uses).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

WORK = Path(__file__).resolve().parent / "work"


def _rules_source(work: Path, scale: float, large: bool) -> tuple[str, list[Path]]:
    kind = "large" if large else "normal"
    paths = sorted(work.glob(f"sigs-seed*-scale{scale:g}-{kind}/yara/*.yar"))
    if not paths:
        sys.exit(f"no YARA rules under {work} for scale {scale:g} ({kind}); run bench/engine.py --build-only")
    return "\n".join(p.read_text() for p in paths), paths


def _corpus_files(work: Path, scale: float, limit_mb: int) -> list[Path]:
    roots = sorted(work.glob(f"corpus-seed*-scale{scale:g}/files"))
    if not roots:
        sys.exit(f"no corpus under {work} for scale {scale:g}; run bench/engine.py --build-only first")
    files, total = [], 0
    for path in sorted(p for p in roots[0].rglob("*") if p.is_file()):
        files.append(path)
        total += path.stat().st_size
        if total > limit_mb * 1024 * 1024:
            break
    return files


def _measure(engine: str, source: str, files: list[Path], queue: Any) -> None:
    data = [p.read_bytes() for p in files]
    small = [os.urandom(2048) for _ in range(2000)]
    started = time.perf_counter()
    if engine == "yara-x":
        import yara_x

        rules = yara_x.compile(source)
        compile_s = time.perf_counter() - started
        buffer = io.BytesIO()
        rules.serialize_into(buffer)
        size = len(buffer.getvalue())
        scanner = yara_x.Scanner(rules)

        def scan(blob: bytes) -> int:
            return len(scanner.scan(blob).matching_rules)
    else:
        import yara

        compiled = yara.compile(source=source)
        compile_s = time.perf_counter() - started
        buffer = io.BytesIO()
        compiled.save(file=buffer)
        size = len(buffer.getvalue())

        def scan(blob: bytes) -> int:
            return len(compiled.match(data=blob))

    started = time.perf_counter()
    hits = sum(scan(blob) for blob in data)
    scan_s = time.perf_counter() - started
    started = time.perf_counter()
    for blob in small:
        scan(blob)
    per_call = (time.perf_counter() - started) / len(small)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"compile_s": compile_s, "rules_mb": size / 1e6, "scan_s": scan_s, "hits": hits,
               "per_call_us": per_call * 1e6, "peak_mib": peak})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--limit-mb", type=int, default=500, help="scan at most this much of the corpus")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    source, rule_paths = _rules_source(args.work, args.scale, args.large)
    files = _corpus_files(args.work, args.scale, args.limit_mb)
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    print(
        f"rules: {', '.join(map(str, rule_paths))}\nfiles: {len(files)} ({megabytes:,.1f} MB), "
        f"{args.runs} runs, medians\n"
    )
    context = multiprocessing.get_context("fork")
    rows = {}
    for engine in ("yara-x", "yara-python"):
        runs = []
        for _ in range(args.runs):
            queue = context.Queue()
            child = context.Process(target=_measure, args=(engine, source, files, queue))
            child.start()
            runs.append(queue.get())
            child.join()
        rows[engine] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(
        "{:12} {:>9} {:>8} {:>7} {:>7} {:>11} {:>8} {}".format(
            "engine", "compile s", "rules MB", "scan s", "MB/s", "per call us", "peak MiB", "hits"
        )
    )
    for engine, row in rows.items():
        print(
            f"{engine:12} {row['compile_s']:9.2f} {row['rules_mb']:8.1f} {row['scan_s']:7.2f} "
            f"{megabytes / row['scan_s']:7.0f} {row['per_call_us']:11.1f} {row['peak_mib']:8.0f} {int(row['hits'])}"
        )
    x, p = rows["yara-x"], rows["yara-python"]
    print(
        f"\nyara-x has {p['scan_s'] / x['scan_s']:.2f}x yara-python's throughput and compiles "
        f"{p['compile_s'] / x['compile_s']:.2f}x as fast"
    )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
