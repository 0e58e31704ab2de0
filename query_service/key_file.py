"""`KeyFile`: hashed API keys in a file, reloaded when it changes.

One key per line, ``#`` starts a comment::

    # hmac-sha256 of the key under the server's pepper     tenant   scope
    4f1c...e9a0                                            acme     rw
    77b2...01cd                                            acme     ro

The file holds no key: only ``HMAC-SHA256(pepper, key)``, a keyed hash, so neither the file
nor a backup of it lets anyone in without the pepper (``CONVMEM_API_KEY_PEPPER``, a secret
kept apart). ``convmem keys new --tenant acme [--read-only]`` makes a key and its line.

Rotation: add the new key's line, hand the new key out, then delete the old line; the file is
looked at again at most every ``reload_interval_s`` and re-read when its modification time or
size changes. A file that fails to parse on reload is logged and ignored (the keys in force
stay in force); at start-up it is an error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from query_service.auth import Principal, bearer_token
from query_service.errors import Unauthorized

_log = logging.getLogger(__name__)
SCOPES = {"rw": True, "ro": False}


class KeyFileError(ValueError):
    pass


def hash_key(key: str, pepper: str) -> str:
    """The line's first field for ``key``: HMAC-SHA256 under ``pepper``, hex."""
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    tenant: str
    writable: bool


def parse(text: str) -> list[_Entry]:
    entries: list[_Entry] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3:
            raise KeyFileError(f"line {n}: expected '<hash> <tenant> <rw|ro>'")
        digest, tenant, scope = fields
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise KeyFileError(f"line {n}: the hash must be 64 lowercase hex digits")
        if scope not in SCOPES:
            raise KeyFileError(f"line {n}: scope must be rw or ro, got {scope!r}")
        entries.append(_Entry(bytes.fromhex(digest), tenant, SCOPES[scope]))
    return entries


class KeyFile:
    def __init__(
        self,
        path: Path,
        *,
        pepper: str,
        reload_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(pepper) < 16:
            raise KeyFileError("the API key pepper must be at least 16 characters")
        self._path = path
        self._pepper = pepper.encode()
        self._interval = reload_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = clock()
        self._stamp = self._stat()
        self._entries = parse(path.read_text("utf-8"))  # at start-up, an error is fatal

    def _stat(self) -> tuple[int, int]:
        st = os.stat(self._path)
        return st.st_mtime_ns, st.st_size

    def _maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked < self._interval:
            return
        with self._lock:
            self._checked = now
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return
                entries = parse(self._path.read_text("utf-8"))
            except (OSError, KeyFileError) as exc:
                _log.warning("API key file %s not reloaded: %s", self._path, exc)
                return
            self._entries, self._stamp = entries, stamp
            _log.info("API key file %s reloaded: %d keys", self._path, len(entries))

    def tenant_for(self, authorization: str | None) -> str:
        self._maybe_reload()
        token = bearer_token(authorization)
        digest = hmac.new(self._pepper, token.encode(), hashlib.sha256).digest()
        found: _Entry | None = None
        for entry in self._entries:  # every entry compared: the time says nothing
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        if found is None:
            raise Unauthorized("invalid API key")
        return Principal(found.tenant, writable=found.writable)
