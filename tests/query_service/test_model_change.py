"""A change of embedder re-embeds the store of record, and the index never mixes two models."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest

from indexer.embedders import load_embedder
from indexer.ingest import vector_id
from indexer.models import Change, Role, Source, Utterance
from indexer.protocols import Embedder
from indexer.reembed import conform
from tests.query_service.conftest import CountingEmbedder
from tests.query_service.helpers import MAYA, TOM, batch
from tests.query_service.test_api import ids, ingest, search

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PEANUTS = {"maya-1-2", "maya-1-3"}  # the two turns about the peanut allergy


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    cache = Path(str(tmp_path_factory.getbasetemp())) / "models"
    cache.mkdir(exist_ok=True)
    return load_embedder("onnx", model_path=None, cache_dir=cache, query_cache=0)


def stored(database_url: str) -> list[tuple[str, int, str | None]]:
    """(id, vector dimension, embedding_model) of every live stored utterance."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, vector_dims(embedding), embedding_model FROM utterances"
            " WHERE NOT deleted ORDER BY id"
        ).fetchall()
    return [(str(i), int(d), m) for i, d, m in rows]


def test_switching_model_reembeds_everything_once(
    app_client, database_url: str, real_embedder: Embedder, minilm: Embedder
) -> None:
    with app_client(embedder=minilm) as client:
        ingest(client, batch("maya-1", "maya", MAYA))
        seq = ingest(client, batch("tom-1", "tom", TOM))
        seq = client.delete("/v1/utterances/tom-1-3").json()["seq"]
        assert set(ids(search(client, "peanut allergy", seq, mode="dense", k=2))) == PEANUTS
    old = vector_id(minilm.model_id, "text")
    assert {(d, m) for _, d, m in stored(database_url)} == {(384, old)}

    counting = CountingEmbedder(real_embedder)  # the static potion-base-8M, 256-d
    with app_client(embedder=counting) as client:
        live = len(MAYA) + len(TOM) - 1
        assert counting.documents == live  # every live row once; the tombstone not at all
        new = vector_id(real_embedder.model_id, "text")
        assert {(d, m) for _, d, m in stored(database_url)} == {(256, new)}
        hits = search(client, "peanut allergy", mode="dense", k=10)
        assert set(ids(hits)[:2]) == PEANUTS
        assert "tom-1-3" not in ids(hits)

    again = CountingEmbedder(real_embedder)
    with app_client(embedder=again) as client:
        assert set(ids(search(client, "peanut allergy", mode="dense", k=2))) == PEANUTS
    assert again.documents == 0  # nothing left to re-embed, and the snapshot matched


def test_changing_the_embedding_view_really_reembeds(
    app_client, database_url: str, real_embedder: Embedder
) -> None:
    with app_client() as client:
        ingest(client, batch("maya-1", "maya", MAYA))
    with app_client(index={"embed_view": "speaker_text"}) as client:
        search(client, "dog", mode="dense", k=1)
    want = vector_id(real_embedder.model_id, "speaker_text")
    assert {m for _, _, m in stored(database_url)} == {want}
    with psycopg.connect(database_url) as conn:
        (vec,) = conn.execute(
            "SELECT embedding::text FROM utterances WHERE id = 'maya-1-4'"
        ).fetchone()  # type: ignore[misc]
    expected = real_embedder.embed_batch([f"{MAYA[4][0]}: {MAYA[4][2]}"])[0]
    got = np.asarray([float(x) for x in str(vec).strip("[]").split(",")], dtype=np.float32)
    assert np.allclose(got, expected, atol=1e-5)


def _change(uid: int, text: str, model: str | None, *, deleted: bool = False) -> Change:
    utterance = Utterance(
        uid=uid,
        tenant="t",
        id=f"u{uid}",
        conversation_id="c",
        user_id="maya",
        turn=uid,
        speaker="Maya",
        role=Role.USER,
        text=text,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        ended_at=None,
        source=Source.TEXT,
        asr_confidence=None,
        seq=uid,
    )
    vector = None if deleted else np.zeros(384, dtype=np.float32)
    return Change(
        seq=uid,
        uid=uid,
        deleted=deleted,
        utterance=utterance,
        embedding=vector,
        embedding_model=model,
    )


def test_conform_reembeds_only_what_another_model_made(real_embedder: Embedder) -> None:
    mine = vector_id(real_embedder.model_id, "text")
    own = _change(1, "my dog Biscuit", mine)
    own = Change(
        own.seq, own.uid, own.deleted, own.utterance, real_embedder.embed_batch(["x"])[0], mine
    )
    changes = [
        own,
        _change(2, "peanut allergy", "minilm/text"),
        _change(3, "", None, deleted=True),
        _change(4, "old row", None),
    ]
    out = conform(changes, real_embedder, vectors=mine, view="text")
    assert out[0] is own
    assert out[2] is changes[2]
    for i, text in ((1, "peanut allergy"), (3, "old row")):
        vector = out[i].embedding
        assert out[i].embedding_model == mine
        assert vector is not None and vector.shape == (real_embedder.dim,)
        assert np.allclose(vector, real_embedder.embed_batch([text])[0])


def test_reembed_store_reports_progress_and_is_idempotent(
    database_url: str, real_embedder: Embedder
) -> None:
    from indexer.ingest import Ingestor
    from indexer.models import UtteranceIn
    from indexer.pg_store import PgStore
    from indexer.reembed import reembed_store

    store = PgStore.connect(database_url)
    try:
        Ingestor(store=store, embedder=real_embedder).ingest(
            "t",
            [
                UtteranceIn(
                    id=f"u{i}",
                    conversation_id="c",
                    speaker="Maya",
                    role=Role.USER,
                    text=text,
                    started_at=datetime(2026, 1, 1, 0, i, tzinfo=UTC),
                )
                for i, (_, _, text) in enumerate(MAYA)
            ],
        )
        calls: list[tuple[int, int]] = []
        target = vector_id(real_embedder.model_id, "speaker_text")
        done = reembed_store(
            store,
            real_embedder,
            vectors=target,
            view="speaker_text",
            batch_size=4,
            progress=lambda d, t: calls.append((d, t)),
        )
        n = len(MAYA)
        assert done == n and calls == [(0, n), (4, n), (n, n)]
        calls.clear()
        assert (
            reembed_store(
                store,
                real_embedder,
                vectors=target,
                view="speaker_text",
                progress=lambda d, t: calls.append((d, t)),
            )
            == 0
        )
        assert calls == []  # nothing to do: no progress bar at all
    finally:
        store.close()
