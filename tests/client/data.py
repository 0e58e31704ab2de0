"""Small conversations for the client tests, as the client's own ``Utterance`` values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from convmem_client import Utterance

T0 = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)

MAYA = [
    ("Maya", "user", "Can you remind me what I need for the trip to Lisbon?"),
    ("Agent", "agent", "Sure. You wanted to pack sunscreen and the travel adapter."),
    ("Maya", "user", "Also I am allergic to peanuts, so please tell the hotel."),
    ("Agent", "agent", "Noted, I will let the hotel know about the peanut allergy."),
    ("Maya", "user", "My dog Biscuit stays with my sister Ana while I am away."),
]


def conversation(
    conv: str, user: str, turns: list[tuple[str, str, str]] = MAYA, day: int = 0
) -> list[Utterance]:
    start = T0 + timedelta(days=day)
    return [
        Utterance(
            id=f"{conv}-{i}",
            conversation_id=conv,
            user_id=user,
            agent_id="concierge",
            speaker=speaker,
            role=role,
            text=text,
            started_at=start + timedelta(seconds=20 * i),
        )
        for i, (speaker, role, text) in enumerate(turns)
    ]
