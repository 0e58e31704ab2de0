"""`MemoryService`: the transport-neutral operations, over the running services.

Every transport (REST, gRPC, the WebSockets) validates its wire format into the API models of
``api_models`` and calls this; it maps them to the domain, calls the store, the ingestor or
the searcher, pokes the tailer after a write, and maps the result back. Nothing here knows a
transport. The calls block (database, CPU): ``gateway.Gateway`` runs them off the event loop
under admission control.
"""

from __future__ import annotations

from indexer.errors import InvalidInput
from indexer.models import ConversationIn, Filters, UtteranceIn, as_tuple
from indexer.records import DocRecord
from query_service.api_models import (
    ConversationBody,
    ConversationResponse,
    DeleteResponse,
    IngestBody,
    IngestResponse,
    SearchBody,
    SearchFilters,
    SearchHit,
    SearchResponse,
    TranscriptTurn,
    Turn,
    UtteranceBody,
    storable,
)
from query_service.deadline import Deadline
from query_service.searcher import SearchResult
from query_service.services import Services


class MemoryService:
    def __init__(self, *, services: Services) -> None:
        self._services = services

    @property
    def services(self) -> Services:
        return self._services

    def ingest(self, tenant: str, body: IngestBody) -> IngestResponse:
        """Store a batch durably; the answer's ``seq`` covers it in the change feed."""
        result = self._services.ingestor.ingest(tenant, [to_utterance(u) for u in body.utterances])
        return IngestResponse(accepted=result.accepted, seq=result.seq)

    def search(self, tenant: str, body: SearchBody, deadline: Deadline) -> SearchResponse:
        result = self._services.searcher.search(
            body.query,
            k=body.k,
            mode=body.mode,
            filters=to_filters(tenant, body.filters),
            deadline=deadline,
            min_seq=body.min_seq,
            now=body.reference_time,
        )
        return to_search_response(result)

    def put_conversation(
        self, tenant: str, conversation_id: str, body: ConversationBody
    ) -> DeleteResponse:
        seq = self._services.store.put_conversation(
            tenant,
            ConversationIn(
                id=checked_id(conversation_id, "conversation_id"),
                user_id=body.user_id,
                agent_id=body.agent_id,
                started_at=body.started_at,
                metadata=body.metadata,
            ),
        )
        self._services.tailer.poke(seq)
        return DeleteResponse(seq=seq)

    def get_conversation(self, tenant: str, conversation_id: str) -> ConversationResponse:
        """The conversation and its transcript in turn order (NotFound across tenants too)."""
        store = self._services.store
        conversation_id = checked_id(conversation_id, "conversation_id")
        conv = store.get_conversation(tenant, conversation_id)
        turns = store.transcript(tenant, conversation_id)
        return ConversationResponse(
            id=conv.id,
            user_id=conv.user_id,
            agent_id=conv.agent_id,
            started_at=conv.started_at,
            metadata=conv.metadata,
            turns=[
                TranscriptTurn(
                    utterance_id=u.id,
                    conversation_id=u.conversation_id,
                    speaker=u.speaker,
                    role=u.role,
                    text=u.text,
                    started_at=u.started_at,
                    turn=u.turn,
                    ended_at=u.ended_at,
                    source=u.source,
                    asr_confidence=u.asr_confidence,
                )
                for u in turns
            ],
        )

    def delete_conversation(self, tenant: str, conversation_id: str) -> DeleteResponse:
        seq = self._services.store.delete_conversation(
            tenant, checked_id(conversation_id, "conversation_id")
        )
        self._services.tailer.poke(seq)
        return DeleteResponse(seq=seq)

    def delete_utterance(self, tenant: str, utterance_id: str) -> DeleteResponse:
        seq = self._services.store.delete_utterance(
            tenant, checked_id(utterance_id, "utterance_id")
        )
        self._services.tailer.poke(seq)
        return DeleteResponse(seq=seq)

    def delete_user(self, tenant: str, user_id: str) -> DeleteResponse:
        """Forget a user's whole memory (idempotent)."""
        seq = self._services.store.delete_user(tenant, checked_id(user_id, "user_id"))
        self._services.tailer.poke(seq)
        return DeleteResponse(seq=seq)


def checked_id(value: str, name: str) -> str:
    """An id that came outside a model (a URL path, a proto field), checked as the models
    check theirs: one the store cannot hold (a NUL) is the client's mistake, not a 503."""
    try:
        return storable(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from exc


def to_utterance(u: UtteranceBody) -> UtteranceIn:
    return UtteranceIn(
        id=u.id,
        conversation_id=u.conversation_id,
        speaker=u.speaker,
        role=u.role,
        text=u.text,
        started_at=u.started_at,
        ended_at=u.ended_at,
        user_id=u.user_id,
        agent_id=u.agent_id,
        source=u.source,
        asr_confidence=u.asr_confidence,
        metadata=u.metadata,
    )


def to_filters(tenant: str, f: SearchFilters) -> Filters:
    """The search scope: the tenant from the credential, the rest from the request."""
    return Filters(
        tenant=tenant,
        user_id=f.user_id,
        conversation_ids=as_tuple(f.conversation_id),
        speakers=as_tuple(f.speaker),
        roles=tuple(as_tuple(f.role)),  # type: ignore[arg-type]  # Role is a str enum
        since=None if f.since is None else f.since.timestamp(),
        until=None if f.until is None else f.until.timestamp(),
    )


def to_search_response(result: SearchResult) -> SearchResponse:
    return SearchResponse(
        hits=[
            SearchHit(
                **to_turn(h.record).model_dump(),
                score=h.score,
                user_id=h.record.user_id,
                context=[to_turn(c) for c in h.context],
            )
            for h in result.hits
        ],
        timings_ms=result.timings_ms,
        degraded=result.degraded,
        index_seq=result.index_seq,
    )


def to_turn(r: DocRecord) -> Turn:
    return Turn(
        utterance_id=r.id,
        conversation_id=r.conversation_id,
        speaker=r.speaker,
        role=r.role,
        text=r.text,
        started_at=r.started_at,
        turn=r.turn,
    )
