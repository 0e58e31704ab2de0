"""`named_speakers`: which speakers of a scope a query names (hand-made cases)."""

from __future__ import annotations

import pytest

from query_service.query_analysis import first_person, named_speakers

PEOPLE = ["Melanie", "Caroline", "Ann", "Jo Ellen"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What does Melanie do to relax?", ("Melanie",)),
        ("What does Melanie's family like?", ("Melanie",)),  # a possessive
        ("what does melanie do", ("Melanie",)),  # case-insensitive
        ("Did Caroline and Melanie meet?", ("Caroline", "Melanie")),  # sorted
        ("What did Mel say?", ()),  # a nickname is not the name
        ("Where does Annabel live?", ()),  # nor is a longer word that starts with it
        ("What did Jo  Ellen bake?", ("Jo Ellen",)),  # both words, any spacing
        ("What did Jo bake?", ()),  # one word of a two-word name
        ("What do we know about the trip?", ()),
    ],
)
def test_named_speakers(query: str, expected: tuple[str, ...]) -> None:
    assert named_speakers(query, PEOPLE) == expected


def test_blank_and_repeated_names_are_harmless() -> None:
    assert named_speakers("anything at all", ["", "  "]) == ()
    assert named_speakers("ask Ann", ["Ann", "Ann"]) == ("Ann",)


@pytest.mark.parametrize(
    ("query", "speaker", "expected"),
    [
        ("What does Melanie do to relax?", "Melanie", "What does I do to relax?"),
        ("What do Melanie's kids like?", "Melanie", "What do my kids like?"),
        ("What do Melanie’s kids like?", "Melanie", "What do my kids like?"),  # typographic
        ("when did melanie paint", "Melanie", "when did I paint"),  # case-insensitive
        ("Did Jo  Ellen bake?", "Jo Ellen", "Did I bake?"),
        ("What did Annabel say?", "Ann", "What did Annabel say?"),  # not a whole word
        ("What did Ann say?", "", "What did Ann say?"),  # a blank name changes nothing
    ],
)
def test_first_person(query: str, speaker: str, expected: str) -> None:
    assert first_person(query, speaker) == expected


def test_names_with_punctuation_and_many_speakers() -> None:
    many = [f"Person {i}" for i in range(5000)] + ["O'Brien", "Mary-Kate"]
    assert named_speakers("What did O'Brien say?", many) == ("O'Brien",)
    assert named_speakers("what does mary-kate like", many) == ("Mary-Kate",)
    assert named_speakers("what did person 42 say", many) == ("Person 42",)


def test_first_person_reads_names_as_named_speakers_does() -> None:
    assert first_person("What did O'Brien's team win?", "O'Brien") == "What did my team win?"
    assert first_person("what does mary kate like", "Mary-Kate") == "what does I like"
