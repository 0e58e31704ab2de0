"""The OpenSearch tier's request bodies and answer readers: pure functions, no cluster.

What these check is what the cluster would be told; whether a real node answers as the
bodies mean is for ``test_opensearch_tier.py`` (run only with ``OPENSEARCH_URL``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from indexer.errors import IndexUnavailable
from indexer.models import Change, Filters, LexicalOptions, Role, Source, Utterance
from indexer.opensearch_bulk import bulk_actions, bulk_bodies, bulk_failures, doc_source
from indexer.opensearch_lookups import by_uids, context_searches, speakers_page, turns_of
from indexer.opensearch_mapping import cursor_doc, hybrid_pipeline, index_body
from indexer.opensearch_requests import (
    MAX_QUERY_TERMS,
    filter_clauses,
    hybrid_search,
    inner_product,
    knn_query,
    lexical_query,
    named_words,
    query_words,
    ranked_search,
    search_routing,
    speaker_probe,
)
from indexer.opensearch_responses import hits_of, record_of_source, speakers_of
from indexer.opensearch_windows import ApplyPlan, Rekey, Turn, Upsert
from indexer.records import DocRecord

T0 = 1_767_614_400.0  # 2026-01-05 12:00 UTC


def at(body: object, *path: str | int) -> object:
    """``body[path[0]][path[1]]...``, checking each step's type."""
    for key in path:
        if isinstance(key, int):
            assert isinstance(body, list), body
        else:
            assert isinstance(body, dict), body
        body = body[key]  # type: ignore[index]  # checked just above
    return body


def as_list(value: object) -> list[object]:
    assert isinstance(value, list), value
    return value


def change(
    uid: int, *, tenant: str = "t1", user_id: str | None = "maya", deleted: bool = False
) -> Change:
    started = datetime(2026, 1, 5, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    u = Utterance(
        uid=uid,
        tenant=tenant,
        id=f"ext-{uid}",
        conversation_id="c1",
        user_id=user_id,
        turn=3,
        speaker="Melanie",
        role=Role.AGENT,
        text="" if deleted else "Did you book the flight?",
        started_at=started,
        ended_at=None,
        source=Source.TEXT,
        asr_confidence=None,
        seq=uid,
    )
    embedding = None if deleted else np.full(4, 0.5, dtype=np.float32)
    return Change(seq=uid, uid=uid, deleted=deleted, utterance=u, embedding=embedding)


# -- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        Filters(tenant="t1"),
        Filters(tenant="t1", user_id="u", conversation_ids=("c",), speakers=("Ann",)),
        Filters(tenant="t1", roles=(Role.USER,), since=1.0, until=2.0),
        Filters(tenant="t1", since=math.inf),
    ],
)
def test_the_tenant_is_always_the_first_filter(filters: Filters) -> None:
    assert filter_clauses(filters)[0] == {"term": {"tenant": "t1"}}


def test_a_none_user_id_adds_no_user_clause() -> None:
    assert filter_clauses(Filters(tenant="t1")) == [{"term": {"tenant": "t1"}}]
    assert {"term": {"user_id": "maya"}} in filter_clauses(Filters(tenant="t1", user_id="maya"))


def test_tuples_become_terms_and_roles_their_names() -> None:
    clauses = filter_clauses(
        Filters(
            tenant="t1",
            conversation_ids=("c1", "c2"),
            speakers=("Ann",),
            roles=(Role.USER, Role.OTHER),
        )
    )
    assert {"terms": {"conversation_id": ["c1", "c2"]}} in clauses
    assert {"terms": {"speaker": ["Ann"]}} in clauses
    assert {"terms": {"role": ["user", "other"]}} in clauses


def test_since_and_until_are_inclusive_bounds() -> None:
    clauses = filter_clauses(Filters(tenant="t1", since=T0, until=T0 + 60.5))
    assert clauses[-1] == {"range": {"started_at": {"gte": T0, "lte": T0 + 60.5}}}
    assert filter_clauses(Filters(tenant="t1", until=T0))[-1] == {
        "range": {"started_at": {"lte": T0}}
    }


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (math.nan, math.nan, "none"),  # a NaN bound excludes nothing (Filters.admits)
        (-math.inf, math.inf, "none"),
        (math.inf, None, "match_none"),
        (None, -math.inf, "match_none"),
        (math.nan, T0, "lte"),
    ],
)
def test_nan_and_infinite_bounds_follow_filters_admits(
    since: float | None, until: float | None, expected: str
) -> None:
    clauses = filter_clauses(Filters(tenant="t1", since=since, until=until))
    json.dumps(clauses, allow_nan=False)  # never a NaN or an infinity on the wire
    if expected == "none":
        assert clauses == [{"term": {"tenant": "t1"}}]
    elif expected == "match_none":
        assert clauses[-1] == {"match_none": {}}
    else:
        assert clauses[-1] == {"range": {"started_at": {"lte": T0}}}


def test_a_tenant_with_a_comma_is_not_used_as_search_routing() -> None:
    assert search_routing("acme") == "acme"
    assert search_routing("a,b") is None


# -- lexical ------------------------------------------------------------------------------


def test_query_words_are_lowercase_counted_and_split_on_non_alphanumerics() -> None:
    assert query_words("Lisbon, lisbon! don't-go_now") == [
        ("lisbon", 2),
        ("don", 1),
        ("t", 1),
        ("go", 1),
        ("now", 1),
    ]


def test_stopwords_are_dropped_unless_nothing_remains() -> None:
    assert query_words("What did she do with the dog?", drop_stopwords=True) == [("dog", 1)]
    assert query_words("what did she do", drop_stopwords=True) == [
        ("what", 1),
        ("did", 1),
        ("she", 1),
        ("do", 1),
    ]
    # negations carry meaning: they are not stop words
    assert query_words("not the dog", drop_stopwords=True) == [("not", 1), ("dog", 1)]
    assert len(query_words(" ".join(f"w{i}" for i in range(1000)))) == MAX_QUERY_TERMS


def test_the_window_key_chooses_the_window_field() -> None:
    words = [("flight", 2)]
    turn = lexical_query(words, Filters(tenant="t1"), LexicalOptions(key="turn"))
    window = lexical_query(words, Filters(tenant="t1"), LexicalOptions(key="window"))
    assert at(turn, "bool", "should") == [{"match": {"text": {"query": "flight", "boost": 2.0}}}]
    assert at(window, "bool", "should") == [
        {"match": {"window": {"query": "flight", "boost": 2.0}}}
    ]


def test_speaker_terms_go_to_speaker_text_with_the_weight() -> None:
    words = [("melanie", 2), ("relax", 1)]
    options = LexicalOptions(speaker_weight=0.5, key="window")
    query = lexical_query(words, Filters(tenant="t1"), options, names={"melanie"})
    assert at(query, "bool", "should") == [
        {"match": {"speaker_text": {"query": "melanie", "boost": 1.0}}},
        {"match": {"window": {"query": "relax", "boost": 1.0}}},
    ]
    # with no speaker weight, a name is read as text
    plain = lexical_query(words, Filters(tenant="t1"), LexicalOptions(), names={"melanie"})
    assert at(plain, "bool", "should", 0) == {"match": {"text": {"query": "melanie", "boost": 2.0}}}


def test_the_lexical_query_needs_a_word_to_match_and_filters_without_scoring() -> None:
    filters = Filters(tenant="t1", user_id="maya")
    query = lexical_query([("dog", 1)], filters, LexicalOptions())
    # with a filter clause, should-clauses would be optional without minimum_should_match
    assert at(query, "bool", "minimum_should_match") == 1
    assert at(query, "bool", "filter") == filter_clauses(filters)
    with pytest.raises(ValueError, match="at least one word"):
        lexical_query([], filters, LexicalOptions())


def test_the_speaker_probe_is_scoped_and_read_by_word_index() -> None:
    probe = speaker_probe(["melanie", "relax"], Filters(tenant="t1", user_id="u"))
    assert at(probe, "size") == 0
    assert at(probe, "query", "bool", "filter") == filter_clauses(Filters(tenant="t1", user_id="u"))
    assert at(probe, "aggs", "names", "filters", "filters") == {
        "0": {"match": {"speaker_text": "melanie"}},
        "1": {"match": {"speaker_text": "relax"}},
    }
    answer = {
        "aggregations": {"names": {"buckets": {"0": {"doc_count": 4}, "1": {"doc_count": 0}}}}
    }
    assert named_words(["melanie", "relax"], answer) == {"melanie"}
    assert named_words(["melanie"], {}) == frozenset()


def test_a_ranked_search_breaks_ties_by_uid_and_bounds_k() -> None:
    body = ranked_search({"match_all": {}}, 10, timeout_ms=40)
    assert at(body, "sort") == [{"_score": "desc"}, {"uid": "asc"}]
    assert at(body, "size") == 10
    assert at(body, "timeout") == "40ms"
    for k in (0, 10_001):
        with pytest.raises(ValueError, match="k must be"):
            ranked_search({"match_all": {}}, k, timeout_ms=40)


# -- dense and hybrid ---------------------------------------------------------------------


def test_the_knn_clause_carries_the_filter() -> None:
    filters = Filters(tenant="t1", speakers=("Ann",), since=T0)
    vector = np.array([0.6, 0.8], dtype=np.float32)
    clause = at(knn_query(vector, 5, filters), "knn", "embedding")
    assert at(clause, "filter") == {"bool": {"filter": filter_clauses(filters)}}
    assert at(clause, "k") == 5
    assert at(clause, "vector") == [float(np.float32(0.6)), float(np.float32(0.8))]
    with pytest.raises(ValueError, match="finite"):
        knn_query(np.array([np.nan, 1.0], dtype=np.float32), 5, filters)


@pytest.mark.parametrize("space", ["innerproduct", "cosinesimil"])
def test_inner_product_inverts_the_knn_score(space: str) -> None:
    ip = np.array([-1.0, -0.3, 0.0, 0.25, 1.0])
    if space == "cosinesimil":
        score = (2.0 - (1.0 - ip)) / 2.0
    else:  # the documented piecewise map of innerproduct
        score = np.array([x + 1.0 if x > 0 else 1.0 / (1.0 - x) for x in ip])
    got = inner_product(score.astype(np.float32), space)  # type: ignore[arg-type]
    assert np.allclose(got, ip, atol=1e-6)


def test_pipeline_weights_sum_to_one_in_the_order_of_the_hybrid_queries() -> None:
    lexical = lexical_query([("dog", 1)], Filters(tenant="t1"), LexicalOptions())
    dense = knn_query(np.ones(2, dtype=np.float32), 5, Filters(tenant="t1"))
    body = hybrid_search(lexical, dense, 5, timeout_ms=50)
    assert at(body, "query", "hybrid", "queries") == [lexical, dense]
    assert "sort" not in body  # the pipeline ranks a hybrid query

    processor = at(hybrid_pipeline([1.0, 3.0]), "phase_results_processors", 0)
    assert at(processor, "normalization-processor", "normalization") == {"technique": "min_max"}
    combination = at(processor, "normalization-processor", "combination")
    assert at(combination, "technique") == "arithmetic_mean"
    assert at(combination, "parameters", "weights") == [0.25, 0.75]  # lexical first
    for weights in ([0.1, 0.2], [1.0, 1.0, 1.0], [0.7, 0.0]):
        path = ("phase_results_processors", 0, "normalization-processor", "combination")
        scaled = as_list(at(hybrid_pipeline(weights), *path, "parameters", "weights"))
        assert math.fsum(float(str(w)) for w in scaled) == 1.0
        assert all(isinstance(w, float) and w >= 0 for w in scaled)
    for bad in ([1.0], [0.0, 0.0], [-1.0, 2.0], [math.nan, 1.0]):
        with pytest.raises(ValueError, match="weight"):
            hybrid_pipeline(bad)


# -- the index ----------------------------------------------------------------------------


def test_the_mapping_dimension_follows_the_parameter_and_the_method_is_hnsw() -> None:
    for dim in (256, 384):
        body = index_body(dim=dim, engine="faiss")
        vector = at(body, "mappings", "properties", "embedding")
        assert at(vector, "type") == "knn_vector"
        assert at(vector, "dimension") == dim
        assert at(vector, "method", "name") == "hnsw"
        assert at(vector, "method", "engine") == "faiss"
        assert at(vector, "method", "space_type") == "innerproduct"
    body = index_body(dim=8)
    assert at(body, "settings", "index", "knn") is True
    assert at(body, "mappings", "_routing") == {"required": True}
    assert at(body, "mappings", "dynamic") == "strict"
    for field in ("text", "window", "speaker_text"):
        assert at(body, "mappings", "properties", field) == {
            "type": "text",
            "analyzer": "convmem_text",
        }
    assert at(body, "mappings", "properties", "started_at") == {"type": "double"}
    with pytest.raises(ValueError, match="dim"):
        index_body(dim=0)


def test_the_analyser_has_no_stop_filter_and_stems_like_tantivy() -> None:
    analyzer = at(index_body(dim=8), "settings", "analysis", "analyzer", "convmem_text")
    assert at(analyzer, "filter") == ["convmem_length", "lowercase", "convmem_stem"]
    stem = at(index_body(dim=8), "settings", "analysis", "filter", "convmem_stem")
    assert stem == {"type": "stemmer", "language": "porter2"}  # Snowball English


def test_routing_partition_size_must_lie_between_one_and_the_shard_count() -> None:
    body = index_body(dim=8, shards=6, routing_partition_size=3)
    assert at(body, "settings", "index", "routing_partition_size") == 3
    for bad in (1, 6):
        with pytest.raises(ValueError, match="routing_partition_size"):
            index_body(dim=8, shards=6, routing_partition_size=bad)


def test_the_cursor_document() -> None:
    assert cursor_doc("convmem-utterances", 42) == {"index": "convmem-utterances", "seq": 42}
    with pytest.raises(ValueError, match="seq"):
        cursor_doc("i", -1)


# -- bulk ---------------------------------------------------------------------------------


def test_bulk_actions_carry_routing_by_tenant() -> None:
    plan = ApplyPlan(
        upserts=[Upsert(change(7, tenant="acme"), "Hi\nDid you book the flight?")],
        deletes=[(8, "acme")],
        rekeys=[Rekey(9, "beta", "Did you book the flight?\nYes")],
    )
    actions = bulk_actions("utt", plan)
    metas = [action[0] for action in actions]
    assert metas == [
        {"index": {"_index": "utt", "_id": "7", "routing": "acme"}},
        {"delete": {"_index": "utt", "_id": "8", "routing": "acme"}},
        {"update": {"_index": "utt", "_id": "9", "routing": "beta"}},
    ]
    assert actions[1] == [metas[1]]  # a delete has no document line
    assert actions[2][1] == {"doc": {"window": "Did you book the flight?\nYes"}}  # window only


def test_the_indexed_document_reads_back_as_the_record() -> None:
    source = doc_source(change(7), "Hi\nDid you book the flight?")
    assert source["is_question"] is True
    assert source["window"] == "Hi\nDid you book the flight?"
    assert source["speaker_text"] == "Melanie"
    assert source["embedding"] == [0.5, 0.5, 0.5, 0.5]
    u = change(7).utterance
    assert source["started_at"] == u.started_at.timestamp()
    record = record_of_source(json.loads(json.dumps(source)))
    assert record == DocRecord(
        uid=7,
        tenant="t1",
        id="ext-7",
        conversation_id="c1",
        user_id="maya",
        turn=3,
        speaker="Melanie",
        role=Role.AGENT,
        text="Did you book the flight?",
        started_at=u.started_at,
    )
    assert record.started_at.utcoffset() == timedelta(hours=2)  # the offset survives
    no_user = doc_source(change(8, user_id=None), "x")
    assert "user_id" not in no_user  # so that no user filter matches it
    assert record_of_source(no_user).user_id is None
    with pytest.raises(ValueError, match="delete"):
        doc_source(change(9, deleted=True), "")


def test_bulk_bodies_keep_each_action_whole() -> None:
    actions: list[list[dict[str, object]]] = [
        [{"index": {}}, {"doc": i}] if i % 2 else [{"delete": {}}] for i in range(5)
    ]
    bodies = list(bulk_bodies(actions, 2))
    assert [len(b) for b in bodies] == [3, 3, 1]
    assert [line for body in bodies for line in body] == [x for a in actions for x in a]


def test_bulk_failures_ignore_a_missing_document_on_delete_or_update() -> None:
    answer = {
        "errors": True,
        "items": [
            {"delete": {"_id": "1", "status": 404, "result": "not_found"}},
            {"update": {"_id": "2", "status": 404, "error": {"type": "document_missing"}}},
            {"index": {"_id": "3", "status": 429, "error": {"type": "rejected"}}},
            {"index": {"_id": "4", "status": 201, "result": "created"}},
        ],
    }
    failures = bulk_failures(answer)
    assert len(failures) == 1 and failures[0].startswith("index 3")
    assert bulk_failures({"errors": False, "items": answer["items"]}) == []


# -- lookups ------------------------------------------------------------------------------


def test_lookups_by_uid_ask_each_uid_once() -> None:
    body = by_uids([5, 3, 5], ("uid", "text"))
    assert at(body, "query", "bool", "filter") == [{"terms": {"uid": [3, 5]}}]
    assert at(body, "size") == 2
    assert at(body, "_source") == ["uid", "text"]
    with pytest.raises(ValueError, match="at most"):
        by_uids(range(10_001))


def test_context_searches_page_from_the_anchor_in_turn_order() -> None:
    anchor = Turn(uid=12, tenant="acme", conversation_id="c1", started_at=T0, turn=4, text="x")
    lines, slots = context_searches([anchor], index="utt", before=2, after=1)
    assert slots == [(12, "before"), (12, "after")]
    header, before, header2, after = lines
    assert header == header2 == {"index": "utt", "routing": "acme"}
    assert at(before, "search_after") == [T0, 4, 12]
    assert at(before, "sort") == [{"started_at": "desc"}, {"turn": "desc"}, {"uid": "desc"}]
    assert at(before, "size") == 2
    assert at(after, "sort") == [{"started_at": "asc"}, {"turn": "asc"}, {"uid": "asc"}]
    assert at(after, "query", "bool", "filter") == [
        {"term": {"tenant": "acme"}},
        {"term": {"conversation_id": "c1"}},
    ]
    comma = Turn(uid=1, tenant="a,b", conversation_id="c", started_at=T0, turn=0, text="")
    lines, slots = context_searches([comma], index="utt", before=0, after=3)
    assert slots == [(1, "after")] and lines[0] == {"index": "utt"}


def test_turns_of_groups_conversations_by_tenant_and_pages_by_uid() -> None:
    body = turns_of([("t1", "c2"), ("t2", "c1"), ("t1", "c1")], [9, 4], size=100, after=50)
    should = at(body, "query", "bool", "filter", 0, "bool", "should")
    assert should == [
        {
            "bool": {
                "filter": [{"term": {"tenant": "t1"}}, {"terms": {"conversation_id": ["c1", "c2"]}}]
            }
        },
        {"bool": {"filter": [{"term": {"tenant": "t2"}}, {"terms": {"conversation_id": ["c1"]}}]}},
        {"terms": {"uid": [4, 9]}},
    ]
    assert at(body, "sort") == [{"uid": "asc"}]
    assert at(body, "search_after") == [50]


def test_speakers_are_read_in_composite_pages() -> None:
    first = speakers_page("t1", "maya", after=None)
    assert at(first, "query", "bool", "filter") == [
        {"term": {"tenant": "t1"}},
        {"term": {"user_id": "maya"}},
    ]
    assert "after" not in as_dict(at(first, "aggs", "speakers", "composite"))
    nxt = speakers_page("t1", None, after="Bo")
    assert at(nxt, "aggs", "speakers", "composite", "after") == {"speaker": "Bo"}
    page = {
        "aggregations": {
            "speakers": {
                "buckets": [{"key": {"speaker": "Ann"}}, {"key": {"speaker": "Bo"}}],
                "after_key": {"speaker": "Bo"},
            }
        }
    }
    assert speakers_of(page) == (["Ann", "Bo"], "Bo")
    assert speakers_of({"aggregations": {"speakers": {"buckets": []}}}) == ([], None)


def as_dict(value: object) -> dict[str, object]:
    assert isinstance(value, dict), value
    return value


# -- answers ------------------------------------------------------------------------------


def test_hits_of_reads_ids_scores_and_whether_the_search_saw_everything() -> None:
    answer = {
        "timed_out": False,
        "_shards": {"failed": 0},
        "hits": {
            "hits": [{"_id": "7", "_score": 2.5}, {"_id": "3", "_score": None, "sort": [1.5, 3]}]
        },
    }
    ids, scores, exhaustive = hits_of(answer)
    assert ids.tolist() == [7, 3] and scores.tolist() == [2.5, 1.5] and exhaustive
    assert not hits_of({**answer, "timed_out": True})[2]
    assert not hits_of({**answer, "_shards": {"failed": 1}})[2]
    with pytest.raises(IndexUnavailable, match="unexpected"):
        hits_of({"hits": []})


def test_the_tier_module_imports_without_the_driver() -> None:
    probe = (
        "import sys, json, indexer.opensearch_tier, indexer.opensearch_client;"
        "print(json.dumps('opensearchpy' in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is False


def test_a_utc_time_reads_back_equal() -> None:
    source = doc_source(change(7), "w")
    source["started_at_iso"] = datetime(2026, 1, 5, tzinfo=UTC).isoformat()
    assert record_of_source(source).started_at == datetime(2026, 1, 5, tzinfo=UTC)
