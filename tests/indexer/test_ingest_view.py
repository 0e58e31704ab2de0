"""The embedding view: what the embedder sees for an utterance, and what the store keeps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest

from indexer.ingest import Ingestor, embedding_input, vector_id
from indexer.models import Role, UtteranceIn
from indexer.pg_store import PgStore
from tests.indexer.test_shard import HashEmbedder

UTT = UtteranceIn(
    id="a1",
    conversation_id="c",
    speaker="Melanie",
    role=Role.USER,
    text="I went running to relax",
    started_at=datetime(2026, 5, 1, tzinfo=UTC),
    user_id="u",
)


def test_views() -> None:
    assert embedding_input(UTT, "speaker_text") == "Melanie: I went running to relax"
    assert embedding_input(UTT, "text") == "I went running to relax"
    assert vector_id("m", "text") != vector_id("m", "speaker_text")


class Recording(HashEmbedder):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.seen.extend(texts)
        out: npt.NDArray[np.float32] = super().embed_batch(texts)  # type: ignore[no-untyped-call]
        return out


@pytest.mark.integration
@pytest.mark.parametrize("view", ["speaker_text", "text"])
def test_the_store_keeps_the_vector_of_the_view_and_the_plain_text(
    database_url: str, view: str
) -> None:
    store = PgStore.connect(database_url)
    try:
        embedder = Recording()
        Ingestor(store=store, embedder=embedder, view=view).ingest("t", [UTT])  # type: ignore[arg-type]
        assert embedder.seen == [embedding_input(UTT, view)]  # type: ignore[arg-type]
        (saved,) = store.transcript("t", "c")
        assert saved.text == UTT.text  # the view changes the vector only, never the record
        (change,) = [c for c in store.changes_since(0, 10) if c.embedding is not None]
        assert change.utterance.text == UTT.text and change.embedding is not None
        want = embedder.embed_batch([embedder.seen[0]])[0]
        np.testing.assert_allclose(change.embedding, want)
    finally:
        store.close()


def test_an_unknown_view_is_refused() -> None:
    with pytest.raises(ValueError, match="embedding view"):
        Ingestor(store=None, embedder=HashEmbedder(), view="speaker")  # type: ignore[arg-type]
