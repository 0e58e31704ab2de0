"""The lexical ranking stages: query stop words and speaker-name routing (hand-made cases)."""

from __future__ import annotations

from indexer.bm25_index import TantivyBM25Index
from indexer.models import Filters
from indexer.models import LexicalOptions as Opt
from tests.indexer.test_bm25_index import make_doc

ACME = Filters(tenant="acme")


def index_of(*docs: tuple[int, str, str]) -> TantivyBM25Index:
    index = TantivyBM25Index()
    index.upsert([make_doc(uid, text, speaker=speaker) for uid, text, speaker in docs])
    index.refresh()
    return index


def test_stop_words_no_longer_outrank_the_topic() -> None:
    index = index_of(
        (1, "what did you do with the kids in the afternoon", "ann"),
        (2, "pottery class was fun", "ann"),
        (3, "we went to a museum", "ann"),
    )
    query = "what did you do in the pottery class"
    # every term counts: doc 1 shares six function words with the query and wins
    assert index.search(query, 3, filters=ACME, timeout_s=1).ids.tolist()[0] == 1
    # function words dropped: only "pottery" and "class" score, and only doc 2 has them
    hits = index.search(query, 3, filters=ACME, timeout_s=1, options=Opt(drop_stopwords=True))
    assert hits.ids.tolist() == [2]


def test_a_query_of_stop_words_only_keeps_them() -> None:
    index = index_of((1, "who are you", "ann"), (2, "pottery class", "ann"))
    hits = index.search(
        "who are you", 3, filters=ACME, timeout_s=1, options=Opt(drop_stopwords=True)
    )
    assert hits.ids.tolist() == [1]


def test_a_speakers_name_matches_who_spoke_not_who_was_addressed() -> None:
    index = index_of(
        (1, "thanks melanie that painting is lovely", "caroline"),
        (2, "i have been running to relax", "melanie"),
        (3, "i like running too", "caroline"),
    )
    query = "melanie running"
    # as plain text, "melanie" matches Caroline's turn that addresses her
    plain = index.search(query, 3, filters=ACME, timeout_s=1).ids.tolist()
    assert set(plain) == {1, 2, 3}
    # routed: "melanie" names a speaker in scope, so it matches Melanie's turns only
    routed = index.search(query, 3, filters=ACME, timeout_s=1, options=Opt(speaker_weight=1.0))
    assert routed.ids.tolist() == [2, 3]
    # the weight scales the name's part of the score
    light = index.search(query, 3, filters=ACME, timeout_s=1, options=Opt(speaker_weight=0.1))
    heavy = index.search(query, 3, filters=ACME, timeout_s=1, options=Opt(speaker_weight=2.0))
    assert heavy.scores[0] - heavy.scores[1] > light.scores[0] - light.scores[1] > 0


def test_name_routing_is_decided_within_the_tenant() -> None:
    index = TantivyBM25Index()
    index.upsert(
        [
            # in tenant "other", Paris is a speaker
            make_doc(1, "hello there", speaker="paris", tenant="other"),
            # in tenant "acme", paris is only a word in the text
            make_doc(2, "we flew to paris in may", speaker="ann"),
            make_doc(3, "we flew to rome in june", speaker="ann"),
        ]
    )
    index.refresh()
    hits = index.search("paris trip", 3, filters=ACME, timeout_s=1, options=Opt(speaker_weight=1.0))
    assert hits.ids.tolist() == [2]  # still matched as text: acme has no speaker Paris


def test_the_window_key_finds_a_reply_by_the_question_it_answers() -> None:
    from dataclasses import replace

    index = TantivyBM25Index()
    question = make_doc(1, "what do you do for fun", speaker="ann")
    answer = replace(make_doc(2, "painting mostly", speaker="bob"), context=question.text)
    other = replace(make_doc(3, "my car broke down", speaker="ann"), context=answer.text)
    index.upsert([question, answer, other])
    index.refresh()
    turn = index.search("fun", 3, filters=ACME, timeout_s=1)
    window = index.search("fun", 3, filters=ACME, timeout_s=1, options=Opt(key="window"))
    assert turn.ids.tolist() == [1]  # the turn key: only the question says "fun"
    assert sorted(window.ids.tolist()) == [1, 2]  # the window key: its reply too
    # the reply's window is longer ("what do you do for fun" + "painting mostly"), so BM25's
    # length normalisation ranks the question, whose window is itself, first
    assert window.ids.tolist() == [1, 2] and window.scores[0] > window.scores[1]
    # a name still matches who spoke, not the text of the window
    named = index.search(
        "bob fun", 3, filters=ACME, timeout_s=1, options=Opt(speaker_weight=1.0, key="window")
    )
    assert named.ids.tolist()[0] == 2


def test_lexical_options_are_checked() -> None:
    import pytest

    with pytest.raises(ValueError, match="key"):
        Opt(key="sentence")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="speaker_weight"):
        Opt(speaker_weight=float("nan"))
