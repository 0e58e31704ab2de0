"""Model-based isolation over the real app: random operations, colliding ids, two tenants."""

from __future__ import annotations

from typing import Any

import pytest

from eval.isolation_check import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEYS = {"acme": "isolation-key-acme", "beta": "isolation-key-beta"}


@pytest.mark.parametrize("seed", [0, 1])
def test_no_tenant_sees_another_and_no_deletion_comes_back(app_client, seed: int) -> None:
    with app_client(keys={k: t for t, k in KEYS.items()}) as client:

        def call(method: str, path: str, body: Any, key: str) -> tuple[int, Any]:
            resp = client.request(
                method, path, json=body, headers={"authorization": f"Bearer {key}"}
            )
            return resp.status_code, resp.json()

        tally = run(call, KEYS, n_ops=300, seed=seed)
    assert tally.errors == []
    assert tally.ops.get("search", 0) > 50 and tally.ops.get("delete_user", 0) > 3
    assert tally.cross_tenant == 0
    assert tally.resurrected == 0
    assert tally.missing == 0
