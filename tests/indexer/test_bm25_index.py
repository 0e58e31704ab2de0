"""`TantivyBM25Index` on a real in-RAM tantivy index: BM25 oracle, filters, updates, input."""

from __future__ import annotations

import math
import re
import threading

import numpy as np
import pytest
import rank_bm25

from indexer.bm25_index import TantivyBM25Index
from indexer.models import Filters, IndexDoc, Role
from indexer.protocols import LexicalIndex

EMPTY_VECTOR = np.zeros(0, dtype=np.float32)

CORPUS = [
    "hi can you book a table for two tonight",
    "sure which restaurant would you like",
    "the italian place near the office please",
    "i booked a table at the italian restaurant for seven",
    "can you remind me to call my mother tomorrow",
    "i will remind you to call your mother at noon",
    "what is the weather like tomorrow",
    "tomorrow will be sunny with a light breeze",
    "my flight to berlin leaves on friday",
    "do you want me to book a taxi to the airport",
    "yes book a taxi for friday morning please",
    "your taxi to the airport is booked for six",
    "remind me what my mother said about the party",
    "she said the party starts at eight on saturday",
    "thanks that is all for now",
]

QUERIES = [
    "book a table",
    "taxi to the airport on friday",
    "remind me to call mother",
    "tomorrow tomorrow weather",  # a repeated query term counts twice, as in rank_bm25
    "italian restaurant",
    "party",
    "the",
]


def make_doc(
    uid: int,
    text: str,
    *,
    tenant: str = "acme",
    user_id: str | None = "u1",
    conversation_id: str = "c1",
    speaker: str = "alice",
    role: Role = Role.USER,
    started_at: float = 0.0,
) -> IndexDoc:
    return IndexDoc(
        uid=uid,
        tenant=tenant,
        user_id=user_id,
        conversation_id=conversation_id,
        speaker=speaker,
        role=role,
        started_at=started_at,
        text=text,
        embedding=EMPTY_VECTOR,
    )


def ids_of(index: TantivyBM25Index, query: str, filters: Filters, k: int = 1000) -> list[int]:
    return [int(uid) for uid in index.search(query, k, filters=filters, timeout_s=1.0).ids]


def default_tokenize(text: str) -> list[str]:
    """tantivy's "default" analyzer: split on non-alphanumerics, lowercase."""
    return re.findall(r"[^\W_]+", text.lower())


class LuceneBM25(rank_bm25.BM25Okapi):  # type: ignore[misc]  # rank_bm25 has no type hints
    """rank_bm25's Okapi BM25 with Lucene's (and tantivy's) always-positive idf."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        for word, n in nd.items():
            self.idf[word] = math.log(1.0 + (self.corpus_size - n + 0.5) / (n + 0.5))


def test_satisfies_lexical_index_protocol() -> None:
    index: LexicalIndex = TantivyBM25Index()
    assert len(index) == 0


@pytest.mark.parametrize("query", QUERIES)
def test_scores_agree_with_rank_bm25_oracle(query: str) -> None:
    index = TantivyBM25Index(tokenizer="default")
    index.bulk_load([make_doc(uid, text) for uid, text in enumerate(CORPUS)])
    tokenized = [default_tokenize(text) for text in CORPUS]
    oracle = LuceneBM25(tokenized, k1=1.2, b=0.75)
    query_tokens = default_tokenize(query)
    assert index.analyze(query) == query_tokens
    expected_scores = oracle.get_scores(query_tokens)
    matching = [uid for uid, tokens in enumerate(tokenized) if set(tokens) & set(query_tokens)]
    expected = sorted(matching, key=lambda uid: (-expected_scores[uid], uid))

    hits = index.search(query, 100, filters=Filters(tenant="acme"), timeout_s=1.0)

    assert hits.ids.tolist() == expected
    assert hits.ids.dtype == np.int64
    assert hits.scores.dtype == np.float32
    np.testing.assert_allclose(hits.scores, expected_scores[expected], rtol=1e-4)
    # Filter clauses do not score: a filter that keeps every document changes nothing.
    filtered = index.search(query, 100, filters=Filters("acme", user_id="u1"), timeout_s=1.0)
    np.testing.assert_array_equal(filtered.ids, hits.ids)
    np.testing.assert_array_equal(filtered.scores, hits.scores)


def test_top_k_is_a_prefix_of_the_full_ranking() -> None:
    index = TantivyBM25Index(tokenizer="default")
    index.bulk_load([make_doc(uid, text) for uid, text in enumerate(CORPUS)])
    full = ids_of(index, "book a taxi to the airport", Filters(tenant="acme"))
    assert ids_of(index, "book a taxi to the airport", Filters(tenant="acme"), k=3) == full[:3]


@pytest.mark.parametrize("uids", [list(range(20)), list(range(20))[::-1]], ids=["asc", "desc"])
def test_ties_break_by_uid_ascending(uids: list[int]) -> None:
    index = TantivyBM25Index()
    index.bulk_load([make_doc(uid, "same words here") for uid in uids])
    assert ids_of(index, "words", Filters(tenant="acme"), k=3) == [0, 1, 2]
    assert ids_of(index, "words", Filters(tenant="acme")) == list(range(20))


def test_ties_break_by_uid_ascending_across_segments() -> None:
    index = TantivyBM25Index()
    uids = [90, 12, 55, 3, 71, 40, 8, 66]
    for uid in uids:  # one segment each, so index order is not uid order
        index.upsert([make_doc(uid, "same words here")])
        index.refresh()
    index.upsert([make_doc(1, "unrelated")])
    index.refresh()
    assert ids_of(index, "words", Filters(tenant="acme")) == sorted(uids)
    assert ids_of(index, "words", Filters(tenant="acme"), k=3) == sorted(uids)[:3]


def filter_corpus() -> list[IndexDoc]:
    rng = np.random.default_rng(7)
    words = ["coffee", "meeting", "flight", "dentist", "birthday", "invoice"]
    docs = []
    for uid in range(300):
        chosen = rng.choice(words, size=int(rng.integers(1, 4)))
        docs.append(
            make_doc(
                uid,
                "note " + " ".join(str(w) for w in chosen),
                tenant=str(rng.choice(["acme", "globex"])),
                user_id=[None, "", "u1", "u2", "u3"][int(rng.integers(5))],
                conversation_id=f"c{int(rng.integers(6))}",
                speaker=str(rng.choice(["alice", "bob", "agent-7"])),
                role=list(Role)[int(rng.integers(3))],
                started_at=float(rng.integers(0, 20)) + float(rng.choice([0.0, 0.25, 0.5])),
            )
        )
    return docs


@pytest.fixture(scope="module")
def filtered() -> tuple[list[IndexDoc], TantivyBM25Index]:
    """300 docs spread over two tenants and every filter column (read-only: shared)."""
    docs = filter_corpus()
    index = TantivyBM25Index()
    index.bulk_load(docs)
    return docs, index


FILTERS = [
    Filters(tenant="acme"),
    Filters(tenant="globex"),
    Filters(tenant="nobody"),
    Filters(tenant="acme", user_id="u1"),
    Filters(tenant="acme", user_id=""),
    Filters(tenant="acme", conversation_ids=("c1",)),
    Filters(tenant="acme", conversation_ids=("c1", "c4", "missing")),
    Filters(tenant="acme", speakers=("bob",)),
    Filters(tenant="acme", speakers=("alice", "agent-7")),
    Filters(tenant="acme", roles=(Role.AGENT,)),
    Filters(tenant="acme", roles=(Role.USER, Role.OTHER)),
    Filters(tenant="acme", since=5.0),
    Filters(tenant="acme", until=5.25),
    Filters(tenant="acme", since=3.5, until=3.5),  # both bounds inclusive
    Filters(tenant="acme", since=7.25, until=12.5),
    Filters(tenant="acme", since=12.0, until=7.0),
    Filters(tenant="acme", since=math.nan, until=math.inf),
    Filters(tenant="globex", user_id="u2", conversation_ids=("c0", "c2"), roles=(Role.USER,)),
    Filters(
        tenant="acme",
        user_id="u3",
        conversation_ids=("c0", "c1", "c2", "c3"),
        speakers=("alice", "bob"),
        roles=(Role.USER, Role.AGENT),
        since=2.0,
        until=15.5,
    ),
]


@pytest.mark.parametrize("filters", FILTERS, ids=repr)
@pytest.mark.parametrize("query", ["note", "coffee flight", "invoice"])
def test_filters_match_brute_force(
    filtered: tuple[list[IndexDoc], TantivyBM25Index], filters: Filters, query: str
) -> None:
    docs, index = filtered
    terms = set(index.analyze(query))
    expected = {d.uid for d in docs if filters.matches(d) and terms & set(index.analyze(d.text))}
    assert set(ids_of(index, query, filters)) == expected


def test_tenant_isolation_with_identical_text() -> None:
    index = TantivyBM25Index()
    index.upsert(
        [make_doc(1, "my secret plan", tenant="a"), make_doc(2, "my secret plan", tenant="b")]
    )
    index.refresh()
    assert ids_of(index, "secret plan", Filters(tenant="a")) == [1]
    assert ids_of(index, "secret plan", Filters(tenant="b")) == [2]
    assert ids_of(index, "secret plan", Filters(tenant="c")) == []


def test_single_tenant_index_still_filters_by_tenant() -> None:
    index = TantivyBM25Index()
    index.upsert([make_doc(1, "my secret plan", tenant="a")])
    index.refresh()
    assert ids_of(index, "secret plan", Filters(tenant="a")) == [1]
    assert ids_of(index, "secret plan", Filters(tenant="b")) == []
    index.upsert([make_doc(2, "my secret plan", tenant="b")])
    index.refresh()
    assert ids_of(index, "secret plan", Filters(tenant="a")) == [1]
    index.delete([1])
    index.refresh()
    assert ids_of(index, "secret plan", Filters(tenant="a")) == []
    assert ids_of(index, "secret plan", Filters(tenant="b")) == [2]


def test_writes_are_visible_after_refresh_only() -> None:
    index = TantivyBM25Index()
    scope = Filters(tenant="acme")
    index.upsert([make_doc(1, "pick up the dry cleaning"), make_doc(2, "dry run of the demo")])
    assert len(index) == 0
    assert ids_of(index, "dry", scope) == []
    index.refresh()
    assert len(index) == 2
    assert sorted(ids_of(index, "dry", scope)) == [1, 2]

    index.delete([1, 999])
    assert sorted(ids_of(index, "dry", scope)) == [1, 2]
    index.refresh()
    assert ids_of(index, "dry", scope) == [2]
    assert len(index) == 1

    index.upsert([make_doc(2, "rehearse the keynote"), make_doc(3, "dry cleaning again")])
    index.refresh()
    assert ids_of(index, "dry", scope) == [3]
    assert ids_of(index, "keynote", scope) == [2]
    assert len(index) == 2


def test_upsert_replaces_filter_columns_and_last_duplicate_wins() -> None:
    index = TantivyBM25Index()
    index.upsert([make_doc(5, "holiday plans", user_id="u1")])
    index.refresh()
    index.upsert([make_doc(5, "holiday plans", user_id="u2"), make_doc(5, "holiday plans v3")])
    index.refresh()
    assert len(index) == 1
    assert ids_of(index, "holiday", Filters(tenant="acme", user_id="u1")) == [5]  # the last one
    assert ids_of(index, "v3", Filters(tenant="acme")) == [5]


HOSTILE_QUERIES = [
    "",
    "   ",
    '"unbalanced',
    "a:b",
    "(((",
    ")))",
    "AND OR NOT",
    "text:secret tenant:other",
    "+must -not ~2 ^3 *",
    "[1 TO 5] {a TO b}",
    "/regex.*/",
    "\\",
    "😀🎉 naïve café 東京",
    "\x00\ufffd",
    "word " * 2000,
    "x" * 10_000,
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=lambda q: repr(q[:20]))
def test_hostile_queries_never_raise(query: str) -> None:
    index = TantivyBM25Index()
    index.upsert([make_doc(1, "text and secret word: cafe AND tokyo"), make_doc(2, "other")])
    index.refresh()
    hits = index.search(query, 10, filters=Filters(tenant="acme"), timeout_s=1.0)
    assert len(hits) <= 2


def test_operators_are_plain_terms() -> None:
    index = TantivyBM25Index(tokenizer="default")
    index.upsert([make_doc(1, "cats and dogs"), make_doc(2, "birds"), make_doc(3, "not a pet")])
    index.refresh()
    assert sorted(ids_of(index, "birds AND", Filters(tenant="acme"))) == [1, 2]
    assert ids_of(index, "NOT", Filters(tenant="acme")) == [3]


def test_stemming_matches_inflections() -> None:
    index = TantivyBM25Index()
    index.upsert(
        [make_doc(1, "she runs every morning"), make_doc(2, "a quick run"), make_doc(3, "ran")]
    )
    index.refresh()
    assert sorted(ids_of(index, "running", Filters(tenant="acme"))) == [1, 2]


def test_default_tokenizer_does_not_stem() -> None:
    index = TantivyBM25Index(tokenizer="default")
    index.upsert([make_doc(1, "she runs every morning"), make_doc(2, "running late")])
    index.refresh()
    assert ids_of(index, "RUNNING", Filters(tenant="acme")) == [2]


def test_k_and_timeout_edges() -> None:
    index = TantivyBM25Index()
    index.upsert([make_doc(1, "alpha"), make_doc(2, "alpha beta")])
    index.refresh()
    scope = Filters(tenant="acme")
    assert len(index.search("alpha", 0, filters=scope, timeout_s=1.0)) == 0
    assert len(index.search("alpha", 10, filters=scope, timeout_s=0.0)) == 0
    assert len(index.search("alpha", 1, filters=scope, timeout_s=1.0)) == 1
    with pytest.raises(ValueError, match="k must be"):
        index.search("alpha", -1, filters=scope, timeout_s=1.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"tokenizer": "klingon"}, {"writer_heap_bytes": 1_000_000}, {"writer_threads": 0}],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TantivyBM25Index(**kwargs)  # type: ignore[arg-type]  # deliberately ill-typed values


def test_searches_run_concurrently_with_writes() -> None:
    index = TantivyBM25Index()
    index.bulk_load([make_doc(uid, f"stable doc {uid}") for uid in range(200)])
    scope = Filters(tenant="acme")
    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        try:
            for uid in range(1000, 1030):
                index.upsert([make_doc(uid, "churn doc")])
                if uid % 3 == 0:
                    index.delete([uid - 1])
                index.refresh()
        except BaseException as exc:  # report it in the main thread
            errors.append(exc)
        finally:
            stop.set()

    def read() -> None:
        try:
            while not stop.is_set():
                assert len(ids_of(index, "stable", scope)) == 200
                ids_of(index, "churn", scope, k=5)
        except BaseException as exc:  # report it in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(index) == 200 + 30 - 10
