"""Properties under interleaved operations, with restarts: a hypothesis state machine.

Two tenants whose conversation and utterance ids collide on purpose; rules ingest, edit (re-send
an utterance with new text), delete an utterance, forget a conversation or a user, and restart
the app (a clean stop writes the index snapshot; the next start loads it and resumes the feed).
After every step, for each tenant:

- a search over every word ever written finds exactly the tenant's live words: no other
  tenant's, no forgotten or edited-away word (never reappears), none missing (the index
  converged to the store);
- each conversation's transcript holds exactly its live utterances, with their current text.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from indexer.protocols import Embedder
from tests.conftest import app_settings, fresh_database
from tests.query_service.conftest import app_for, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = {"acme": "prop-key-acme", "beta": "prop-key-beta"}
TENANTS = tuple(KEYS)
CONVERSATIONS = ("c0", "c1", "c2")
USERS = ("ana", "bo")


def owner(conversation: str) -> str:
    return USERS[CONVERSATIONS.index(conversation) % len(USERS)]


class Forgetting(RuleBasedStateMachine):
    server_url: str = ""
    embedder: Embedder | None = None
    #: rule -> times run, over every example (the test checks each kind was exercised)
    ran: dict[str, int] = {}  # noqa: RUF012 - one tally per test run, reset by the test

    def __init__(self) -> None:
        super().__init__()
        self._resources = ExitStack()
        self.url = self._resources.enter_context(fresh_database(self.server_url, "p"))
        self.tmp = Path(self._resources.enter_context(TemporaryDirectory(prefix="convmem-prop-")))
        self.client: TestClient | None = None
        self.seq = 0
        self.counter = 0
        # tenant -> utterance id -> (conversation, word); and the words that must stay gone
        self.live: dict[str, dict[str, tuple[str, str]]] = {t: {} for t in TENANTS}
        self.gone: dict[str, set[str]] = {t: set() for t in TENANTS}
        self.restarts = 0
        self._start()

    # -- the app ---------------------------------------------------------------------------
    def _start(self) -> None:
        cfg = app_settings(self.url, self.tmp, {k: t for t, k in KEYS.items()})
        assert self.embedder is not None
        self.client = TestClient(app_for(cfg, self.embedder))
        self.client.__enter__()
        wait_ready(self.client)

    def _stop(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None

    def _count(self, rule_name: str) -> None:
        self.ran[rule_name] = self.ran.get(rule_name, 0) + 1

    def call(self, tenant: str, method: str, path: str, body: Any = None) -> Any:
        assert self.client is not None
        r = self.client.request(
            method, path, json=body, headers={"authorization": f"Bearer {KEYS[tenant]}"}
        )
        assert r.status_code in (200, 404), (method, path, r.status_code, r.text)
        if r.status_code == 200 and "seq" in r.json():
            self.seq = max(self.seq, int(r.json()["seq"]))
        return r.json() if r.status_code == 200 else None

    def _word(self) -> str:
        self.counter += 1
        return f"qx{self.counter:05d}"

    def _send(self, tenant: str, uid: str, conversation: str, word: str) -> None:
        body = {
            "utterances": [
                {
                    "id": uid,
                    "conversation_id": conversation,
                    "speaker": "Ana",
                    "role": "user",
                    "text": f"{word} remember this",
                    "started_at": "2026-05-01T09:00:00Z",
                    "user_id": owner(conversation),
                }
            ]
        }
        assert self.call(tenant, "POST", "/v1/utterances", body) is not None

    # -- rules -----------------------------------------------------------------------------
    @rule(tenant=st.sampled_from(TENANTS), conversation=st.sampled_from(CONVERSATIONS))
    def ingest(self, tenant: str, conversation: str) -> None:
        self._count("ingest")
        word = self._word()
        uid = f"{conversation}-{self.counter}"  # fresh ids, the same in both tenants' spaces
        self._send(tenant, uid, conversation, word)
        self.live[tenant][uid] = (conversation, word)

    @rule(data=st.data())
    def edit(self, data: st.DataObject) -> None:
        self._count("edit")
        tenant, uid = self._pick(data)
        conversation, old = self.live[tenant][uid]
        word = self._word()
        self._send(tenant, uid, conversation, word)
        self.live[tenant][uid] = (conversation, word)
        self.gone[tenant].add(old)

    @rule(data=st.data())
    def delete_utterance(self, data: st.DataObject) -> None:
        self._count("delete_utterance")
        tenant, uid = self._pick(data)
        self.call(tenant, "DELETE", f"/v1/utterances/{uid}")
        self.gone[tenant].add(self.live[tenant].pop(uid)[1])

    def _pick(self, data: st.DataObject) -> tuple[str, str]:
        """A held utterance; with none held (everything forgotten), one ingested first, so
        that edits and deletes run as often as the other rules."""
        if not self._held():
            self.ingest(
                data.draw(st.sampled_from(TENANTS)), data.draw(st.sampled_from(CONVERSATIONS))
            )
        return data.draw(st.sampled_from(self._held()))

    @rule(tenant=st.sampled_from(TENANTS), conversation=st.sampled_from(CONVERSATIONS))
    def forget_conversation(self, tenant: str, conversation: str) -> None:
        self._count("forget_conversation")
        self.call(tenant, "DELETE", f"/v1/conversations/{conversation}")
        self._forget(tenant, lambda c: c == conversation)

    @rule(tenant=st.sampled_from(TENANTS), user=st.sampled_from(USERS))
    def forget_user(self, tenant: str, user: str) -> None:
        self._count("forget_user")
        self.call(tenant, "DELETE", f"/v1/users/{user}")
        self._forget(tenant, lambda c: owner(c) == user)

    @rule()
    def restart(self) -> None:
        self._count("restart")
        self._stop()
        self._start()
        self.restarts += 1

    def _held(self) -> list[tuple[str, str]]:
        return sorted((t, uid) for t in TENANTS for uid in self.live[t])

    def _forget(self, tenant: str, matches: Any) -> None:
        for uid, (conversation, word) in list(self.live[tenant].items()):
            if matches(conversation):
                del self.live[tenant][uid]
                self.gone[tenant].add(word)

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def search_finds_exactly_the_live_words(self) -> None:
        every = {f"qx{n:05d}" for n in range(1, self.counter + 1)}
        if not every:
            return
        for tenant in TENANTS:
            body = {
                "query": " ".join(sorted(every)),
                "mode": "lexical",
                "k": 100,
                "budget_ms": 5000,
                "min_seq": self.seq,
            }
            found = self.call(tenant, "POST", "/v1/search", body)
            assert found is not None and "stale_index" not in found["degraded"]
            words = {h["text"].split()[0] for h in found["hits"]}
            live = {w for _, w in self.live[tenant].values()}
            assert not words & self.gone[tenant], "a forgotten or edited-away word came back"
            assert words <= live, "a word of another tenant (or never written) was found"
            assert words == live, "the index has not converged to the store"

    @invariant()
    def transcripts_hold_exactly_the_live_turns(self) -> None:
        for tenant in TENANTS:
            for conversation in CONVERSATIONS:
                got = self.call(tenant, "GET", f"/v1/conversations/{conversation}")
                turns = {} if got is None else {t["utterance_id"]: t["text"] for t in got["turns"]}
                want = {
                    uid: f"{word} remember this"
                    for uid, (c, word) in self.live[tenant].items()
                    if c == conversation
                }
                assert turns == want

    def teardown(self) -> None:
        self._stop()
        self._resources.close()


def test_forgotten_data_never_returns_and_tenants_never_mix(
    server_url: str, real_embedder: Embedder
) -> None:
    Forgetting.server_url = server_url
    Forgetting.embedder = real_embedder
    Forgetting.ran = {}
    machine = Forgetting.TestCase
    machine.settings = settings(
        max_examples=25,
        stateful_step_count=20,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine().runTest()
    kinds = ("ingest", "edit", "delete_utterance", "forget_conversation", "forget_user", "restart")
    assert all(Forgetting.ran.get(k, 0) >= 5 for k in kinds), Forgetting.ran
