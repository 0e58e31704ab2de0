"""Small hand-written conversations for API tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)

MAYA = [
    ("Maya", "user", "Can you remind me what I need for the trip to Lisbon?"),
    ("Agent", "agent", "Sure. You wanted to pack sunscreen and the travel adapter."),
    ("Maya", "user", "Also I am allergic to peanuts, so please tell the hotel."),
    ("Agent", "agent", "Noted, I will let the hotel know about the peanut allergy."),
    ("Maya", "user", "My dog Biscuit stays with my sister Ana while I am away."),
    ("Agent", "agent", "Got it: Biscuit stays with Ana."),
]
TOM = [
    ("Tom", "user", "Book the dentist for Thursday the twelfth at nine."),
    ("Agent", "agent", "Your dentist appointment is booked for Thursday at 9 am."),
    ("Tom", "user", "I also want to learn to play the cello this year."),
    ("Agent", "agent", "Great goal. I can look for cello teachers near you."),
]


def batch(
    conv: str, user: str, turns: list[tuple[str, str, str]], day: int = 0
) -> dict[str, object]:
    start = T0 + timedelta(days=day)
    return {
        "utterances": [
            {
                "id": f"{conv}-{i}",
                "conversation_id": conv,
                "user_id": user,
                "agent_id": "concierge",
                "speaker": speaker,
                "role": role,
                "text": text,
                "started_at": (start + timedelta(seconds=20 * i)).isoformat(),
            }
            for i, (speaker, role, text) in enumerate(turns)
        ]
    }
