"""One way to write a change-feed entry in the indexer's tests (the shard's, the tier
contract's, the remote tiers' window planning)."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from indexer.models import Change, Role, Source, Utterance


def utterance_change(
    seq: int,
    uid: int,
    text: str,
    *,
    turn: int,
    started_at: datetime,
    embedding: np.ndarray | None,
    tenant: str = "t",
    conv: str = "c1",
    user: str | None = "maya",
    speaker: str = "Maya",
    role: Role = Role.USER,
    deleted: bool = False,
) -> Change:
    """The change of utterance ``uid`` at ``seq``: an upsert, or with ``deleted`` a delete
    (its text emptied and no embedding, as the store's feed sends one)."""
    u = Utterance(
        uid=uid,
        tenant=tenant,
        id=f"u{uid}",
        conversation_id=conv,
        user_id=user,
        turn=turn,
        speaker=speaker,
        role=role,
        text="" if deleted else text,
        started_at=started_at,
        ended_at=None,
        source=Source.TEXT,
        asr_confidence=None,
        seq=seq,
    )
    return Change(
        seq=seq, uid=uid, deleted=deleted, utterance=u, embedding=None if deleted else embedding
    )
