"""A change of embedder: re-embed the store of record, and never index a mix of two models.

Every stored vector carries the name of what made it (``ingest.vector_id``: the model's id
and the embedding view), in ``utterances.embedding_model``. Two mechanisms follow from it:

- ``reembed_store`` rewrites, in uid order and in batches, the vectors of every live row that
  another model (or view) made, with a progress callback. Services run it at start-up, before
  the index is built, so a new model is served only over its own vectors; it resumes where it
  stopped, because what is done no longer matches.
- ``conform`` is the tailer's guard: a change whose vector another model made (a replica
  still on the old model, mid-rollout) is embedded again locally before it reaches the index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from indexer.ingest import EmbedView, embedding_text
from indexer.models import Change
from indexer.protocols import Embedder, VectorStore


def reembed_store(
    store: VectorStore,
    embedder: Embedder,
    *,
    vectors: str,
    view: EmbedView,
    batch_size: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Re-embed every live row whose vector is not ``vectors``; return how many were written.

    ``progress(done, total)`` is called once before the first batch (``done`` = 0) and after
    each one; never when there is nothing to do.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    total = store.count_stale_embeddings(vectors)
    done, after = 0, 0
    if total and progress is not None:
        progress(0, total)
    while total:
        rows = store.stale_embeddings(vectors, after_uid=after, limit=batch_size)
        if not rows:
            break
        embeddings = embedder.embed_batch([embedding_text(sp, tx, view) for _, sp, tx in rows])
        done += store.write_embeddings(vectors, [(uid, tx) for uid, _, tx in rows], embeddings)
        after = rows[-1][0]
        if progress is not None:
            progress(done, total)
    return done


def conform(
    changes: Sequence[Change], embedder: Embedder, *, vectors: str, view: EmbedView
) -> list[Change]:
    """``changes`` with every live vector made by ``vectors``: others are embedded again."""
    stale = [
        i
        for i, c in enumerate(changes)
        if not c.deleted and c.embedding is not None and c.embedding_model != vectors
    ]
    if not stale:
        return list(changes)
    fixed = list(changes)
    texts = [
        embedding_text(changes[i].utterance.speaker, changes[i].utterance.text, view) for i in stale
    ]
    for i, vector in zip(stale, embedder.embed_batch(texts), strict=True):
        fixed[i] = replace(changes[i], embedding=vector, embedding_model=vectors)
    return fixed
