"""Evaluation datasets: our JSONL format, LoCoMo with evidence normalisation, TREC files."""

import json
from pathlib import Path

import pytest

from eval.dataset import EvalQuery
from eval.errors import DatasetError
from eval.jsonl_dataset import read_jsonl_dataset, write_jsonl_dataset
from eval.locomo import CATEGORIES, normalize_evidence, read_locomo_dataset
from eval.trec import read_qrels, read_run, write_qrels, write_run

DATA = Path(__file__).resolve().parent.parent / "data"
SMALL_EVAL = DATA / "small_eval.jsonl"


def utterance(uid: str, user: str = "alice", text: str = "hello there") -> dict[str, object]:
    return {
        "type": "utterance",
        "id": uid,
        "conversation_id": f"c-{user}",
        "user_id": user,
        "speaker": user.title(),
        "role": "user",
        "text": text,
        "started_at": "2026-03-02T09:00:00Z",
    }


def query(qid: str = "q1", **fields: object) -> dict[str, object]:
    return {"type": "query", "id": qid, "text": "hello?", "qrels": {"u1": 1}, **fields}


def write_lines(path: Path, lines: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


# --- our JSONL format ---------------------------------------------------------------------


def test_small_eval_dataset_reads():
    ds = read_jsonl_dataset(SMALL_EVAL)
    assert len(ds.utterances) == 40
    assert len(ds.queries) >= 12
    assert set(ds.categories) == {"single-hop", "temporal", "multi-hop", "open-domain"}
    assert all(any(g > 0 for g in q.qrels.values()) for q in ds.queries)
    assert any(q.user_id is None for q in ds.queries)  # one unscoped query


def test_jsonl_fields_and_defaults(tmp_path):
    path = write_lines(
        tmp_path / "d.jsonl",
        [
            utterance("u1"),
            utterance("u2", user="bob"),
            query("q1", qrels={"u1": 2, "u2": 0}, category="temporal", user_id="alice"),
            query("q2"),  # no category, no scope
        ],
    )
    ds = read_jsonl_dataset(path)
    q1, q2 = ds.queries
    assert q1 == EvalQuery("q1", "hello?", {"u1": 2, "u2": 0}, "temporal", "alice")
    assert q2.category == "uncategorised"
    assert q2.user_id is None
    assert ds.qrels() == {"q1": {"u1": 2, "u2": 0}, "q2": {"u1": 1}}
    assert ds.name == "d"


def test_jsonl_round_trip(tmp_path):
    original = read_jsonl_dataset(SMALL_EVAL)
    write_jsonl_dataset(original, tmp_path / "copy.jsonl")
    again = read_jsonl_dataset(tmp_path / "copy.jsonl")
    assert again.utterances == original.utterances
    assert again.queries == original.queries


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([utterance("u1"), query(qrels={"nope": 1})], "unknown utterance ids"),
        ([utterance("u1"), query(qrels={"u1": 0})], "no relevant utterance"),
        ([utterance("u1"), query(qrels={"u1": 1.5})], "must be an integer"),
        ([utterance("u1"), query(qrels={})], "non-empty object"),
        ([utterance("u1"), query(), query()], "appears twice"),
        ([utterance("u1"), utterance("u1"), query()], "appears twice"),
        ([utterance("u1"), query(user_id="bob")], "outside the query's scope"),
        ([utterance("u1"), query(colour="red")], "unknown query field"),
        ([utterance("u1"), query(category="overall")], "reserved"),
        ([utterance("u1"), {"type": "note"}], '"type" must be'),
        ([utterance("u1")], "no queries"),
        ([query()], "no utterances"),
        ([{**utterance("u1"), "started_at": "2026-03-02T09:00:00"}, query()], "time zone"),
    ],
)
def test_jsonl_rejects_bad_input(tmp_path, lines, message):
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DatasetError, match=message):
        read_jsonl_dataset(path)


def test_jsonl_error_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(utterance("u1")) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.jsonl:3:"):
        read_jsonl_dataset(path)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        read_jsonl_dataset(tmp_path / "absent.jsonl")


def test_limited_keeps_the_first_queries():
    ds = read_jsonl_dataset(SMALL_EVAL)
    assert [q.id for q in ds.limited(3).queries] == [q.id for q in ds.queries[:3]]
    assert ds.limited(None) is ds
    with pytest.raises(DatasetError):
        ds.limited(0)


# --- LoCoMo -------------------------------------------------------------------------------


def turn(dia_id: str, speaker: str, text: str, **extra: str) -> dict[str, str]:
    return {"speaker": speaker, "dia_id": dia_id, "text": text, **extra}


def locomo_sample() -> dict[str, object]:
    """A LoCoMo-shaped sample written for this test (not taken from the dataset)."""
    return {
        "sample_id": "s1",
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Ben",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                turn("D1:1", "Ann", "I adopted a cat last week."),
                turn("D1:2", "Ben", "What is its name?"),
                turn("D1:3", "Ann", "Miso.", blip_caption="a photo of a grey cat"),
            ],
            "session_2_date_time": "10:00 am on 20 May, 2023",
            "session_2": [
                turn("D2:1", "Ben", "How is Miso?"),
                turn("D2:2", "Ann", "She broke a vase!"),
                turn("D2:3", "Ann", "I am taking her to the vet on Friday."),
            ],
        },
        "qa": [
            {
                "question": "What pet did Ann adopt?",
                "answer": "a cat",
                "evidence": ["D1:1"],
                "category": 4,
            },
            {
                "question": "What is the cat called and where is it going?",
                "answer": "Miso, vet",
                "evidence": ["D1:3; D2:3"],
                "category": 1,
            },
            {
                "question": "When did Ann's cat break a vase?",
                "answer": "May 2023",
                "evidence": ["D:2:2"],
                "category": 2,
            },
            {
                "question": "When is the vet visit?",
                "answer": "Friday",
                "evidence": ["D2:03"],
                "category": 2,
            },
            {
                "question": "Would Ann like dogs?",
                "answer": "Likely",
                "evidence": ["D9:9", "D1:2"],
                "category": 3,
            },
            {
                "question": "What pet did Ben adopt?",
                "adversarial_answer": "a cat",
                "evidence": ["D"],
                "category": 5,
            },
            {"question": "Is Ann a vet?", "answer": "No", "evidence": [], "category": 3},
        ],
    }


def test_normalize_evidence_rules():
    known = {"D1:1", "D1:3", "D2:2", "D2:3", "D11:26"}
    ev = normalize_evidence(["D1:1", "D1:3; D2:3", "D:11:26", "D2:03", "D7:7", "D", "D1:1"], known)
    assert ev.ids == ("D1:1", "D1:3", "D2:3", "D11:26")
    assert ev.fixed == (
        ("D1:3; D2:3", ("D1:3", "D2:3")),
        ("D:11:26", ("D11:26",)),
        ("D2:03", ("D2:3",)),
    )
    assert ev.dropped == ("D7:7", "D")
    whitespace = normalize_evidence(["D1:1 D2:2,D1:3"], known)
    assert whitespace.ids == ("D1:1", "D2:2", "D1:3")


def test_locomo_loader_normalises_and_counts(tmp_path):
    path = tmp_path / "mini_locomo.json"
    path.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    ds = read_locomo_dataset(path)
    assert [u.id for u in ds.utterances] == [
        "s1:D1:1",
        "s1:D1:2",
        "s1:D1:3",
        "s1:D2:1",
        "s1:D2:2",
        "s1:D2:3",
    ]
    assert [q.id for q in ds.queries] == ["s1:q1", "s1:q2", "s1:q3", "s1:q4", "s1:q5"]
    by_id = {q.id: q for q in ds.queries}
    assert by_id["s1:q2"].qrels == {"s1:D1:3": 1, "s1:D2:3": 1}
    assert by_id["s1:q3"].qrels == {"s1:D2:2": 1}
    assert by_id["s1:q4"].qrels == {"s1:D2:3": 1}
    assert by_id["s1:q5"].qrels == {"s1:D1:2": 1}
    assert all(q.user_id == "s1" for q in ds.queries)
    # asked right after the sample's last turn (session 2, 10:00, its third turn: + 2 minutes)
    last = ds.utterances[-1].started_at
    assert (last.day, last.hour, last.minute) == (20, 10, 2)
    assert all(q.asked_at == last for q in ds.queries)
    assert [by_id[f"s1:q{n}"].category for n in (1, 2, 3, 5)] == [
        "single-hop",
        "multi-hop",
        "temporal",
        "open-domain",
    ]
    assert ds.counts["questions"] == 7
    assert ds.counts["evidence_fixed"] == 3
    assert ds.counts["evidence_dropped"] == 2
    assert ds.counts["excluded"] == 2
    assert ds.categories == ("multi-hop", "temporal", "open-domain", "single-hop")
    assert "3 malformed evidence entries fixed" in ds.notes[0]
    assert any("s1:q6: excluded" in n for n in ds.notes)


def test_locomo_category_names():
    assert CATEGORIES == {
        1: "multi-hop",
        2: "temporal",
        3: "open-domain",
        4: "single-hop",
        5: "adversarial",
    }


def test_locomo_bad_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"not": "a list"}', encoding="utf-8")
    with pytest.raises(DatasetError, match="list of samples"):
        read_locomo_dataset(path)


# --- TREC ---------------------------------------------------------------------------------


def test_trec_qrels_round_trip(tmp_path):
    qrels = {"q1": {"a:D1:1": 2, "b": 0}, "q2": {"c": 1}}
    write_qrels(tmp_path / "qrels.txt", qrels)
    assert (tmp_path / "qrels.txt").read_text().splitlines()[0] == "q1 0 a:D1:1 2"
    assert read_qrels(tmp_path / "qrels.txt") == qrels


def test_trec_run_round_trip_keeps_order(tmp_path):
    run = {
        "q1": [("a", 0.9), ("b", 0.5), ("c", 0.1)],
        "q2": [("x", 0.3), ("y", 0.3), ("z", 0.2)],  # a tie: scores are rewritten as n..1
    }
    write_run(tmp_path / "r.run", run, tag="sys")
    lines = (tmp_path / "r.run").read_text().splitlines()
    assert lines[0] == "q1 Q0 a 1 0.9 sys"
    assert lines[3] == "q2 Q0 x 1 3 sys"
    back = read_run(tmp_path / "r.run")
    assert back["q1"] == run["q1"]
    assert [d for d, _ in back["q2"]] == ["x", "y", "z"]
    assert [s for _, s in back["q2"]] == [3.0, 2.0, 1.0]


def test_trec_read_run_orders_by_score(tmp_path):
    (tmp_path / "r.run").write_text("q1 Q0 b 1 0.2 t\nq1 Q0 a 2 0.7 t\n", encoding="utf-8")
    assert read_run(tmp_path / "r.run") == {"q1": [("a", 0.7), ("b", 0.2)]}


def test_trec_rejects_whitespace_ids_and_bad_lines(tmp_path):
    with pytest.raises(ValueError):
        write_qrels(tmp_path / "q.txt", {"q 1": {"a": 1}})
    (tmp_path / "bad.txt").write_text("q1 0 a\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="expected 4 fields"):
        read_qrels(tmp_path / "bad.txt")


def test_jsonl_asked_at(tmp_path):
    from datetime import UTC, datetime

    path = write_lines(
        tmp_path / "t.jsonl",
        [utterance("u1"), query(asked_at="2026-05-13T09:00:00-07:00"), query("q2")],
    )
    ds = read_jsonl_dataset(path)
    assert ds.queries[0].asked_at == datetime(2026, 5, 13, 16, 0, tzinfo=UTC)
    assert ds.queries[1].asked_at is None
    write_jsonl_dataset(ds, tmp_path / "again.jsonl")
    assert read_jsonl_dataset(tmp_path / "again.jsonl").queries == ds.queries
    for bad in ("2026-05-13T09:00:00", "last week", 5):
        path = write_lines(tmp_path / "bad.jsonl", [utterance("u1"), query(asked_at=bad)])
        with pytest.raises(DatasetError, match="asked_at"):
            read_jsonl_dataset(path)
