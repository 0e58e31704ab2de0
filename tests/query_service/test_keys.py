"""Hashed API keys: a key file (rotation without a restart) and read-only scope."""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import pytest
from pydantic import SecretStr

from query_service.auth import AnyOf, KeyRing, Principal, can_write
from query_service.errors import Unauthorized
from query_service.key_file import KeyFile, KeyFileError, hash_key, parse
from tests.query_service.helpers import MAYA, batch

PEPPER = "pepper-for-tests-0123456789"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def line(key: str, tenant: str, scope: str) -> str:
    return f"{hash_key(key, PEPPER)} {tenant} {scope}\n"


def write(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()  # a new mtime even within the file system's clock tick
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_the_file_holds_keyed_hashes_and_their_scope(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    write(path, "# comment\n" + line("key-rw-1", "acme", "rw") + line("key-ro-1", "acme", "ro"))
    assert "key-rw-1" not in path.read_text()
    keys = KeyFile(path, pepper=PEPPER)
    rw, ro = keys.tenant_for("Bearer key-rw-1"), keys.tenant_for("bearer key-ro-1")
    assert (rw, ro) == ("acme", "acme")
    assert can_write(rw) and not can_write(ro)
    for bad in ("Bearer nope", "Bearer ", None, "Basic key-rw-1"):
        with pytest.raises(Unauthorized):
            keys.tenant_for(bad)
    other = KeyFile(path, pepper="another-pepper-0123456789")
    with pytest.raises(Unauthorized):  # the hash is keyed: the file alone lets nobody in
        other.tenant_for("Bearer key-rw-1")


def test_keys_rotate_without_a_restart(tmp_path: Path) -> None:
    path, clock = tmp_path / "keys", Clock()
    write(path, line("old-key-1", "acme", "rw"))
    keys = KeyFile(path, pepper=PEPPER, reload_interval_s=1.0, clock=clock)
    write(path, line("old-key-1", "acme", "rw") + line("new-key-1", "acme", "rw"))
    with pytest.raises(Unauthorized):
        keys.tenant_for("Bearer new-key-1")  # not looked at again yet
    clock.t = 1.5
    assert keys.tenant_for("Bearer new-key-1") == "acme"  # the overlap: both work
    assert keys.tenant_for("Bearer old-key-1") == "acme"
    write(path, line("new-key-1", "acme", "rw"))
    clock.t = 3.0
    with pytest.raises(Unauthorized):
        keys.tenant_for("Bearer old-key-1")
    write(path, "garbage line\n")  # a broken edit keeps the keys in force
    clock.t = 4.5
    assert keys.tenant_for("Bearer new-key-1") == "acme"


def test_bad_files_and_peppers_fail_fast(tmp_path: Path) -> None:
    for text, message in [
        ("abc acme rw", "64 lowercase hex"),
        (f"{'a' * 64} acme admin", "scope"),
        (f"{'a' * 64} acme", "expected"),
    ]:
        with pytest.raises(KeyFileError, match=message):
            parse(text)
    path = tmp_path / "keys"
    write(path, "")
    with pytest.raises(KeyFileError, match="pepper"):
        KeyFile(path, pepper="short")


def test_principals_and_any_of() -> None:
    assert Principal("acme", writable=False) == "acme" and not can_write(
        Principal("acme", writable=False)
    )
    assert can_write("plain")
    both = AnyOf([KeyRing({"ring-key-123": "beta"}), KeyRing({"other-key-1": "gamma"})])
    assert both.tenant_for("Bearer other-key-1") == "gamma"
    with pytest.raises(Unauthorized):
        both.tenant_for("Bearer unknown-key")


@pytest.mark.integration
@pytest.mark.slow
def test_a_read_only_key_searches_but_cannot_write_and_keys_reload(
    app_client, tmp_path: Path
) -> None:
    path = tmp_path / "keys"
    write(path, line("writer-key-1", "acme", "rw") + line("reader-key-1", "acme", "ro"))
    settings = {"api_keys_file": path, "api_key_pepper": SecretStr(PEPPER)}
    writer = {"authorization": "Bearer writer-key-1"}
    reader = {"authorization": "Bearer reader-key-1"}
    with app_client(**settings) as client:
        stored = client.post("/v1/utterances", json=batch("c", "maya", MAYA), headers=writer)
        assert stored.status_code == 200
        denied = client.post("/v1/utterances", json=batch("d", "maya", MAYA), headers=reader)
        assert denied.status_code == 403
        assert denied.headers["content-type"] == "application/problem+json"
        assert "read-only" in denied.json()["detail"]
        assert client.delete("/v1/users/maya", headers=reader).status_code == 403
        found = client.post(
            "/v1/search", json={"query": "peanuts", "budget_ms": 2000}, headers=reader
        )
        assert found.status_code == 200
        assert client.get("/v1/conversations/c", headers=reader).status_code == 200
        assert client.get("/v1/conversations/d", headers=writer).status_code == 404
        with client.websocket_connect("/v1/context/stream", headers=reader) as ws:
            ws.send_json({"type": "start", "conversation_id": "live", "user_id": "maya"})
            ws.receive_json()
            ws.send_json({"type": "turn", "speaker": "Maya", "role": "user", "text": "hi"})
            error = ws.receive_json()
            assert error["code"] == "forbidden"
        rotated = line("writer-key-2", "acme", "rw") + line("reader-key-1", "acme", "ro")
        write(path, rotated)
        time.sleep(1.1)  # the file is looked at again at most once a second
        assert client.post("/v1/search", json={"query": "x"}, headers=writer).status_code == 401
        fresh = {"authorization": "Bearer writer-key-2"}
        assert client.delete("/v1/utterances/c-0", headers=fresh).status_code == 200


def test_grpc_maps_forbidden_to_permission_denied() -> None:
    from query_service.errors import Forbidden
    from query_service.grpc_mapping import status_of

    status = status_of(Forbidden("read-only"))
    assert status is not None and status[0] == grpc.StatusCode.PERMISSION_DENIED
