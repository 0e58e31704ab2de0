"""Credential → tenant, for every transport: a REST header, a WebSocket's, gRPC metadata.

The tenant comes from the credential alone, never from the request. ``KeyRing`` is the
built-in ``Authenticator``: a map of API keys to tenants, compared in constant time. With no
keys configured, every caller is the ``default`` tenant (a laptop or a test).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol

from query_service.errors import Unauthorized

DEFAULT_TENANT = "default"


class Authenticator(Protocol):
    def tenant_for(self, authorization: str | None) -> str:
        """The tenant of an ``Authorization`` value (``Bearer <key>``); raises Unauthorized."""
        ...


class KeyRing:
    def __init__(self, keys: Mapping[str, str] | None = None) -> None:
        self._keys = [(key.encode(), tenant) for key, tenant in (keys or {}).items()]

    @property
    def open(self) -> bool:
        """True when no keys are configured (everyone is ``default``)."""
        return not self._keys

    def tenant_for(self, authorization: str | None) -> str:
        if not self._keys:
            return DEFAULT_TENANT
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer API key (Authorization: Bearer <key>)")
        presented = token.encode()
        found: str | None = None
        for key, tenant in self._keys:  # no early exit: the time taken says nothing
            if hmac.compare_digest(key, presented):
                found = tenant
        if found is None:
            raise Unauthorized("invalid API key")
        return found
