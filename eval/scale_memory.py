"""Memory from ``/proc``: this process's resident set now, its peak and a reset; another's RSS."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_kb(key: str, status: Path = _STATUS) -> int:
    for line in status.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} is not in {status}")


def process_rss_bytes(pid: int) -> int | None:
    """Another process's resident set size, None if it is gone."""
    try:
        return _status_kb("VmRSS", Path(f"/proc/{pid}/status")) * 1024
    except (OSError, RuntimeError):
        return None


def find_process(arg: str) -> int | None:
    """The pid of a process with ``arg`` among its command-line arguments, if any."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in args:
            return int(entry.name)
    return None


def rss_bytes() -> int:
    """Resident set size now (``VmRSS``)."""
    return _status_kb("VmRSS") * 1024


def peak_bytes() -> int:
    """The highest resident set size since start or the last ``reset_peak`` (``VmHWM``)."""
    return _status_kb("VmHWM") * 1024


def reset_peak() -> None:
    """Start a new peak from the current RSS (``echo 5 > /proc/self/clear_refs``)."""
    Path("/proc/self/clear_refs").write_text("5")


def settle() -> int:
    """Collect garbage and give freed heap back to the OS (glibc ``malloc_trim``), then
    return the RSS: the steady state, without what a finished build left in free lists."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        ctypes.CDLL(name).malloc_trim(0)
    return rss_bytes()
