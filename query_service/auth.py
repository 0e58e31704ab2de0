"""Credential → tenant, for every transport: a REST header, a WebSocket's, gRPC metadata.

The tenant comes from the credential alone, never from the request. What an authenticator
returns is a ``Principal``: the tenant's name (a ``str``, usable wherever a tenant is) that
also says whether the key may write. Two authenticators:

- ``KeyRing``: keys given in the configuration (``CONVMEM_API_KEYS``), read-write;
- ``KeyFile``: a file of *hashed* keys, each read-only or read-write, reloaded when it
  changes, so keys rotate without a restart (old and new both listed during the overlap).

Keys are compared in constant time and never logged. With no keys configured, every caller
is the ``default`` tenant, read-write (a laptop or a test).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Protocol

from query_service.errors import Unauthorized

DEFAULT_TENANT = "default"


class Principal(str):
    """A tenant's name, and whether its key may write (ingest, put, delete)."""

    writable: bool

    def __new__(cls, tenant: str, *, writable: bool = True) -> Principal:
        self = super().__new__(cls, tenant)
        self.writable = writable
        return self


def can_write(tenant: str) -> bool:
    """A plain ``str`` tenant (in-process callers, tests) may write."""
    return getattr(tenant, "writable", True)


class Authenticator(Protocol):
    def tenant_for(self, authorization: str | None) -> str:
        """The tenant of an ``Authorization`` value (``Bearer <key>``); raises Unauthorized."""
        ...


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer API key (Authorization: Bearer <key>)")
    return token


class KeyRing:
    def __init__(self, keys: Mapping[str, str] | None = None) -> None:
        self._keys = [(key.encode(), tenant) for key, tenant in (keys or {}).items()]

    @property
    def open(self) -> bool:
        """True when no keys are configured (everyone is ``default``)."""
        return not self._keys

    def tenant_for(self, authorization: str | None) -> str:
        if not self._keys:
            return Principal(DEFAULT_TENANT)
        presented = bearer_token(authorization).encode()
        found: str | None = None
        for key, tenant in self._keys:  # no early exit: the time taken says nothing
            if hmac.compare_digest(key, presented):
                found = tenant
        if found is None:
            raise Unauthorized("invalid API key")
        return Principal(found)


class AnyOf:
    """The first authenticator that knows the key (``KeyFile`` and ``KeyRing`` together)."""

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        if not authenticators:
            raise ValueError("AnyOf needs at least one authenticator")
        self._all = list(authenticators)

    def tenant_for(self, authorization: str | None) -> str:
        error: Unauthorized | None = None
        for auth in self._all:
            try:
                return auth.tenant_for(authorization)
            except Unauthorized as exc:
                error = exc
        assert error is not None
        raise error
