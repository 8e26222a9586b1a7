"""Scan limits: how much work one scan may do before it stops and says so.

The defaults are ClamAV's (libclamav ``default.h``), so that an operator moving from clamscan keeps the same
behaviour. ``max_ratio`` has no ClamAV equivalent: it stops decompression bombs early, before the size limits
are reached, by refusing members that expand more than ``max_ratio`` times their compressed size.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """Limits for scanning one file and everything unpacked from it.

    Attributes:
        max_file_size: objects (root files or members) larger than this are not scanned.
        max_scan_size: total bytes scanned for one root file, members included.
        max_depth: how deeply containers may nest (the root file is depth 0).
        max_members: members extracted from one root file, at every depth together.
        max_ratio: largest allowed uncompressed/compressed ratio of one member (0 disables the check).
        max_scan_time: seconds one root file may take, unpacking included.
        alert_exceeds_max: report a ``Heuristics.Limits.Exceeded.*`` detection when a limit is hit,
            instead of only marking the result incomplete.
        alert_encrypted: report ``Heuristics.Encrypted.*`` for encrypted archive members.
        max_html_normalize: HTML objects larger than this are not normalised (raw matching still happens).
    """

    max_file_size: int = 100 * MiB
    max_scan_size: int = 400 * MiB
    max_depth: int = 17
    max_members: int = 10_000
    max_ratio: int = 250
    max_scan_time: float = 120.0
    alert_exceeds_max: bool = False
    alert_encrypted: bool = False
    max_html_normalize: int = 40 * MiB

    def __post_init__(self) -> None:
        for name in ("max_file_size", "max_scan_size", "max_depth", "max_members", "max_ratio"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_scan_time <= 0:
            raise ValueError("max_scan_time must be positive")


#: The ClamAV names of the limits, used in ``Heuristics.Limits.Exceeded.<name>`` detections.
LIMIT_NAMES = {
    "max_file_size": "MaxFileSize",
    "max_scan_size": "MaxScanSize",
    "max_depth": "MaxRecursion",
    "max_members": "MaxFiles",
    "max_ratio": "MaxCompressionRatio",
    "max_scan_time": "MaxScanTime",
}
