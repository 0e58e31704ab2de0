"""`DocRecord`: what a search returns about one utterance, whichever tier holds it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from indexer.models import Change, IndexDoc, Role


@dataclass(frozen=True, slots=True)
class DocRecord:
    """What a search returns about one utterance."""

    uid: int
    tenant: str
    id: str
    conversation_id: str
    user_id: str | None
    turn: int
    speaker: str
    role: Role
    text: str
    started_at: datetime

    @property
    def order_key(self) -> tuple[float, int, int]:
        return (self.started_at.timestamp(), self.turn, self.uid)

    def index_doc(self, embedding: npt.NDArray[np.float32], context: str = "") -> IndexDoc:
        """This utterance as the indexes take it, with its vector and window context."""
        return IndexDoc(
            uid=self.uid,
            tenant=self.tenant,
            user_id=self.user_id,
            conversation_id=self.conversation_id,
            speaker=self.speaker,
            role=self.role,
            started_at=self.started_at.timestamp(),
            text=self.text,
            embedding=embedding,
            context=context,
        )


def record_of(change: Change) -> DocRecord:
    """The record of an upsert from the change feed."""
    u = change.utterance
    return DocRecord(
        uid=change.uid,
        tenant=u.tenant,
        id=u.id,
        conversation_id=u.conversation_id,
        user_id=u.user_id,
        turn=u.turn,
        speaker=u.speaker,
        role=u.role,
        text=u.text,
        started_at=u.started_at,
    )
