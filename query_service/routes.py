"""REST routes under ``/v1``: thin — validate, call a service, shape the response."""

from __future__ import annotations

from fastapi import APIRouter

from indexer.models import ConversationIn, Filters, UtteranceIn, as_tuple
from indexer.shard import DocRecord
from query_service.api_models import (
    ConversationBody,
    ConversationResponse,
    DeleteResponse,
    IngestBody,
    IngestResponse,
    SearchBody,
    SearchHit,
    SearchResponse,
    TranscriptTurn,
    Turn,
)
from query_service.deadline import Deadline
from query_service.deps import ServicesDep, TenantDep

router = APIRouter(prefix="/v1")


@router.post("/utterances", response_model=IngestResponse, tags=["ingest"])
def ingest(body: IngestBody, tenant: TenantDep, services: ServicesDep) -> IngestResponse:
    """Store a batch (≤ 1,000) durably; returns the change-feed ``seq`` that covers it."""
    utterances = [
        UtteranceIn(
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
        for u in body.utterances
    ]
    result = services.ingestor.ingest(tenant, utterances)
    return IngestResponse(accepted=result.accepted, seq=result.seq)


@router.post("/search", response_model=SearchResponse, tags=["search"])
def search(body: SearchBody, tenant: TenantDep, services: ServicesDep) -> SearchResponse:
    """Hybrid (or lexical / dense) search within ``budget_ms``; see ``degraded``."""
    deadline = Deadline.after_ms(body.budget_ms)
    f = body.filters
    filters = Filters(
        tenant=tenant,
        user_id=f.user_id,
        conversation_ids=as_tuple(f.conversation_id),
        speakers=as_tuple(f.speaker),
        roles=tuple(as_tuple(f.role)),  # type: ignore[arg-type]  # Role is a str enum
        since=None if f.since is None else f.since.timestamp(),
        until=None if f.until is None else f.until.timestamp(),
    )
    result = services.searcher.search(
        body.query,
        k=body.k,
        mode=body.mode,
        filters=filters,
        deadline=deadline,
        min_seq=body.min_seq,
        now=body.reference_time,
    )
    return SearchResponse(
        hits=[
            SearchHit(
                **_turn(h.record).model_dump(),
                score=h.score,
                user_id=h.record.user_id,
                context=[_turn(c) for c in h.context],
            )
            for h in result.hits
        ],
        timings_ms=result.timings_ms,
        degraded=result.degraded,
        index_seq=result.index_seq,
    )


@router.put("/conversations/{conversation_id}", response_model=DeleteResponse, tags=["ingest"])
def put_conversation(
    conversation_id: str, body: ConversationBody, tenant: TenantDep, services: ServicesDep
) -> DeleteResponse:
    """Create a conversation or set its owner (``user_id``) and agent explicitly."""
    seq = services.store.put_conversation(
        tenant,
        ConversationIn(
            id=conversation_id,
            user_id=body.user_id,
            agent_id=body.agent_id,
            started_at=body.started_at,
            metadata=body.metadata,
        ),
    )
    services.tailer.poke()
    return DeleteResponse(seq=seq)


@router.get("/conversations/{conversation_id}", response_model=ConversationResponse, tags=["read"])
def get_conversation(
    conversation_id: str, tenant: TenantDep, services: ServicesDep
) -> ConversationResponse:
    """The transcript of one conversation, in turn order."""
    conv = services.store.get_conversation(tenant, conversation_id)
    turns = services.store.transcript(tenant, conversation_id)
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


@router.delete("/conversations/{conversation_id}", response_model=DeleteResponse, tags=["delete"])
def delete_conversation(
    conversation_id: str, tenant: TenantDep, services: ServicesDep
) -> DeleteResponse:
    seq = services.store.delete_conversation(tenant, conversation_id)
    services.tailer.poke()
    return DeleteResponse(seq=seq)


@router.delete("/utterances/{utterance_id}", response_model=DeleteResponse, tags=["delete"])
def delete_utterance(utterance_id: str, tenant: TenantDep, services: ServicesDep) -> DeleteResponse:
    seq = services.store.delete_utterance(tenant, utterance_id)
    services.tailer.poke()
    return DeleteResponse(seq=seq)


@router.delete("/users/{user_id}", response_model=DeleteResponse, tags=["delete"])
def delete_user(user_id: str, tenant: TenantDep, services: ServicesDep) -> DeleteResponse:
    """Forget a user's whole memory (idempotent)."""
    seq = services.store.delete_user(tenant, user_id)
    services.tailer.poke()
    return DeleteResponse(seq=seq)


def _turn(r: DocRecord) -> Turn:
    return Turn(
        utterance_id=r.id,
        conversation_id=r.conversation_id,
        speaker=r.speaker,
        role=r.role,
        text=r.text,
        started_at=r.started_at,
        turn=r.turn,
    )
