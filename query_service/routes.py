"""REST routes under ``/v1``: thin adapters over the ``Gateway`` (validate, call, return)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from query_service.api_models import (
    ConversationBody,
    ConversationResponse,
    DeleteResponse,
    IngestBody,
    IngestResponse,
    SearchBody,
    SearchResponse,
)
from query_service.deps import ArrivalDep, GatewayDep, TenantDep

router = APIRouter(prefix="/v1")
REST = "rest"


@router.post("/utterances", response_model=IngestResponse, tags=["ingest"])
async def ingest(
    body: IngestBody, tenant: TenantDep, gateway: GatewayDep, arrival: ArrivalDep
) -> IngestResponse:
    """Store a batch (≤ 1,000) durably; returns the change-feed ``seq`` that covers it.

    Idempotent by utterance ``id``: a retry after a timeout or a 429 stores nothing twice."""
    return await gateway.ingest(tenant, body, transport=REST, arrival=arrival)


@router.post("/search", response_model=SearchResponse, tags=["search"])
async def search(
    body: SearchBody, tenant: TenantDep, gateway: GatewayDep, arrival: ArrivalDep
) -> Response:
    """Hybrid (or lexical / dense) search within ``budget_ms`` of arrival; see ``degraded``.

    429 with ``Retry-After`` when the service is at capacity (nothing queues)."""
    raw = await gateway.search_as(
        tenant, body, SearchResponse.model_dump_json, arrival=arrival, transport=REST
    )
    return Response(raw, media_type="application/json")


@router.put("/conversations/{conversation_id}", response_model=DeleteResponse, tags=["ingest"])
async def put_conversation(
    conversation_id: str, body: ConversationBody, tenant: TenantDep, gateway: GatewayDep
) -> DeleteResponse:
    """Create a conversation or set its owner (``user_id``) and agent explicitly."""
    return await gateway.put_conversation(tenant, conversation_id, body, transport=REST)


@router.get("/conversations/{conversation_id}", response_model=ConversationResponse, tags=["read"])
async def get_conversation(
    conversation_id: str, tenant: TenantDep, gateway: GatewayDep
) -> ConversationResponse:
    """The transcript of one conversation, in turn order."""
    return await gateway.get_conversation(tenant, conversation_id, transport=REST)


@router.delete("/conversations/{conversation_id}", response_model=DeleteResponse, tags=["delete"])
async def delete_conversation(
    conversation_id: str, tenant: TenantDep, gateway: GatewayDep
) -> DeleteResponse:
    return await gateway.delete(tenant, "conversation", conversation_id, transport=REST)


@router.delete("/utterances/{utterance_id}", response_model=DeleteResponse, tags=["delete"])
async def delete_utterance(
    utterance_id: str, tenant: TenantDep, gateway: GatewayDep
) -> DeleteResponse:
    return await gateway.delete(tenant, "utterance", utterance_id, transport=REST)


@router.delete("/users/{user_id}", response_model=DeleteResponse, tags=["delete"])
async def delete_user(user_id: str, tenant: TenantDep, gateway: GatewayDep) -> DeleteResponse:
    """Forget a user's whole memory (idempotent)."""
    return await gateway.delete(tenant, "user", user_id, transport=REST)
