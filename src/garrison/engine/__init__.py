"""Garrison's scanning engine: a pure library, bytes or a file in, a verdict out.

Typical use::

    from garrison.engine import Engine, ScanLimits, load_database

    engine = Engine(load_database(["/var/lib/garrison/db"]), ScanLimits(max_depth=10))
    result = engine.scan_file("invoice.zip")
    if result.status is Status.INFECTED:
        for obj, detection in result.detections:
            print(obj.display_name, detection.name)

The engine does no network, no database, no policy and no logging setup, and never raises on hostile scanned
input: a malformed or oversized file gives a result with a status and a reason.
"""

from garrison.engine.errors import DatabaseError, EngineError, SignatureError, UnpackError
from garrison.engine.limits import ScanLimits
from garrison.engine.results import Detection, DetectionKind, ObjectResult, ScanResult, Status
from garrison.engine.scanner import Engine
from garrison.engine.signatures.database import Database, LoadReport, SourceInfo, load_database

__all__ = [
    "Database",
    "DatabaseError",
    "Detection",
    "DetectionKind",
    "Engine",
    "EngineError",
    "LoadReport",
    "ObjectResult",
    "ScanLimits",
    "ScanResult",
    "SignatureError",
    "SourceInfo",
    "Status",
    "UnpackError",
    "load_database",
]
