"""What the agent tells the server about its machine in each heartbeat.

Addresses come from psutil when it is installed (Linux, Windows, macOS), else from the standard library and, on
Linux, ``/sys/class/net``. Everything here reads the local machine only and never fails: a value that cannot be
found is left empty.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import platform
import socket
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from garrison import __version__
from garrison.agent.identity import write_private
from garrison.engine import Database
from garrison.protocol.heartbeat import Inventory

_NO_MAC = "00:00:00:00:00:00"
_SYS_NET = Path("/sys/class/net")
_MAX_ITEMS = 64


def _usable_ip(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if address.is_loopback or address.is_link_local or address.is_unspecified:
        return None
    return str(address)


def _addresses_psutil() -> tuple[list[str], list[str]] | None:
    try:
        psutil: Any = importlib.import_module("psutil")  # optional; imported by name so no type stubs are needed
    except ImportError:
        return None
    ips: list[str] = []
    macs: list[str] = []
    try:
        interfaces = psutil.net_if_addrs()
    except OSError:
        return None
    for addresses in interfaces.values():
        for address in addresses:
            if address.family == psutil.AF_LINK:
                mac = address.address.replace("-", ":").lower()
                if mac and mac != _NO_MAC and len(mac) == 17:
                    macs.append(mac)
            elif address.family in (socket.AF_INET, socket.AF_INET6):
                ip = _usable_ip(address.address)
                if ip:
                    ips.append(ip)
    return ips, macs


def _addresses_stdlib(sys_net: Path = _SYS_NET) -> tuple[list[str], list[str]]:
    ips: list[str] = []
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ip = _usable_ip(str(info[4][0]))
            if ip:
                ips.append(ip)
    macs: list[str] = []
    with contextlib.suppress(OSError):
        for interface in sorted(sys_net.iterdir()):
            with contextlib.suppress(OSError):
                mac = (interface / "address").read_text().strip().lower()
                if len(mac) == 17 and mac != _NO_MAC:
                    macs.append(mac)
    return ips, macs


def addresses() -> tuple[list[str], list[str]]:
    """This machine's IP addresses (no loopback or link-local) and MAC addresses, without duplicates."""
    found = _addresses_psutil() or _addresses_stdlib()
    return _unique(found[0]), _unique(found[1])


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))[:_MAX_ITEMS]


def os_name_and_version() -> tuple[str, str]:
    """``("Linux", "Debian GNU/Linux 12 (bookworm), kernel 6.1.0")``, ``("Windows", "10 10.0.19045")``, ..."""
    system = platform.system() or "unknown"
    if system == "Linux":
        pretty = ""
        with contextlib.suppress(OSError):
            pretty = platform.freedesktop_os_release().get("PRETTY_NAME", "")
        version = f"{pretty}, kernel {platform.release()}" if pretty else platform.release()
    elif system == "Windows":
        version = " ".join(part for part in platform.win32_ver()[:2] if part)
    else:
        version = platform.release()
    return system[:64], version[:128]


def signature_info(database: Database | None) -> tuple[str, datetime | None]:
    """The loaded databases' versions (``"daily 27471, main 62"``) and the newest build time."""
    if database is None:
        return "", None
    versions: list[str] = []
    newest: datetime | None = None
    for source in database.report.sources:
        if source.version is not None:
            versions.append(f"{Path(source.name).stem} {source.version}")
        if source.build_time:
            with contextlib.suppress(ValueError):
                built = datetime.strptime(source.build_time, "%d %b %Y %H-%M %z")
                newest = built if newest is None or built > newest else newest
    return ", ".join(versions)[:64], newest


class Status(BaseModel):
    """What the agent remembers between runs and processes (``status.json``): the last scan."""

    last_scan_at: datetime | None = None
    last_scan_files: int = 0
    last_scan_detections: int = 0
    last_scan_errors: int = 0


def collect(
    *,
    database: Database | None,
    status: Status,
    realtime_enabled: bool = False,
    errors: Iterable[str] = (),
    events_dropped: int = 0,
) -> Inventory:
    """The inventory of this machine for a heartbeat."""
    system, version = os_name_and_version()
    ips, macs = addresses()
    signature_version, signature_date = signature_info(database)
    return Inventory(
        hostname=(socket.gethostname() or "unknown")[:255],
        os=system,
        os_version=version,
        ips=ips,
        macs=macs,
        agent_version=__version__,
        engine_version=__version__,
        signature_version=signature_version,
        signature_date=signature_date,
        realtime_enabled=realtime_enabled,
        last_scan_at=status.last_scan_at,
        errors=[error[:500] for error in errors][:32],
        events_dropped=events_dropped,
    )


def load_status(path: Path) -> Status:
    """The saved status; an empty one when there is none yet or it cannot be read."""
    try:
        return Status.model_validate_json(Path(path).read_bytes())
    except (OSError, ValueError):
        return Status()


def save_status(path: Path, status: Status) -> None:
    write_private(path, status.model_dump_json().encode())
