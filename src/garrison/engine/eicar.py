"""The EICAR standard anti-virus test file, detected with no database loaded.

EICAR's definition: the file starts with the 68-byte string below, may be followed only by whitespace
(space, tab, LF, CR, CTRL-Z), and is at most 128 bytes long in total.
"""

from __future__ import annotations

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Eicar-Test-Signature"
MAX_EICAR_SIZE = 128
_TRAILER = b" \t\n\r\x1a"


def is_eicar(data: bytes | memoryview) -> bool:
    """True when ``data`` is the EICAR test file exactly as its definition allows."""
    if len(data) > MAX_EICAR_SIZE or len(data) < len(EICAR):
        return False
    raw = bytes(data)
    return raw.startswith(EICAR) and not raw[len(EICAR) :].strip(_TRAILER)
