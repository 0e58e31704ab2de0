"""`TantivyBM25Index`: the `LexicalIndex` adapter, BM25 over utterance text (tantivy).

Scoring is Okapi BM25 (Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25
and Beyond", 2009) as tantivy and Lucene compute it, summed over the query's terms:

    score(q, d) = Σ_t qtf(t) · idf(t) · tf(t, d) · (k1 + 1) / (tf(t, d) + k1 · L(d))
    L(d)        = 1 − b + b · |d| / avgdl
    idf(t)      = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5)),   k1 = 1.2, b = 0.75

``N``, ``n(t)`` and ``avgdl`` are statistics of the whole index (every tenant), and tantivy
stores ``|d|`` as a one-byte norm (exact up to 40 tokens, approximate above).

The query is never parsed: it is analysed with the same analyzer as the indexed text and
becomes a disjunction (OR) of term queries, one per distinct term, boosted by its count.
Every `Filters` field is a non-scoring clause of the same tantivy query, so filtering happens
inside the index, before the top ``k`` are chosen. Ties are broken by uid, ascending.

Storage: the index lives in a private directory (memory-mapped segment files), made under
``work_dir`` (the system's temporary directory by default) and removed when the index is
garbage-collected or the process exits; the directory's lock file is held while it is in use,
so `remove_stale` can clear what a crashed process left behind. Segments are immutable, so
`save_files` hard-links the committed ones into a snapshot and `restore_files` links them back
and opens them: a restart does not index the texts again.

Thread safety: writes (`upsert`, `delete`, `bulk_load`, `refresh`) take a lock; `search` reads
the current searcher, an immutable snapshot that `refresh` swaps atomically, so searches may
run concurrently with a change-feed tailer writing and refreshing.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import tantivy

from indexer import stopwords
from indexer.models import PLAIN_BM25, Filters, IndexDoc, LexicalOptions
from ranking.hits import Hits

__all__ = ["TantivyBM25Index", "remove_stale"]

_UID = "uid"
_TEXT = "text"
_TENANT = "tenant"
_USER_ID = "user_id"
_CONVERSATION_ID = "conversation_id"
_SPEAKER = "speaker"
_ROLE = "role"
_STARTED_AT = "started_at"
_SPEAKER_TEXT = "speaker_text"  # the speaker's name, analysed like the text (for name queries)
_WINDOW = "window"  # the turn before and this one, analysed like the text (the window key)
_KEYWORD_FIELDS = (_TENANT, _USER_ID, _CONVERSATION_ID, _SPEAKER, _ROLE)

# The text field's analyzer is registered under a private name, and the very same pipeline
# analyses queries, so query terms always match indexed terms.
_TEXT_TOKENIZER = "convmem_text"
# tantivy's own "default" and "en_stem" analyzers drop tokens of 40 bytes or more.
_MAX_TOKEN_BYTES = 40
_TOKENIZERS = ("default", "en_stem")
# Distinct terms kept from one query (the first ones); bounds the cost of hostile input.
MAX_QUERY_TERMS = 256
# tantivy refuses a writer with less than 15 MB of indexing heap per thread.
_MIN_HEAP_PER_THREAD = 15_000_000
_META = "meta.json"
_MANAGED = ".managed.json"  # tantivy's list of the files it may garbage-collect
_PARAMS = "convmem-lexical.json"  # what a saved index was analysed with
_PREFIX = "convmem-bm25-"
_LOCK = "in-use.lock"  # held (flock) by the process whose index lives in the directory
# tries at linking a consistent set of files while a background merge swaps segments
_SAVE_TRIES = 5


def _build_analyzer(tokenizer: str) -> tantivy.TextAnalyzer:
    """tantivy's named analyzer: split on non-alphanumerics, drop long, lowercase (, stem)."""
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(_MAX_TOKEN_BYTES))
        .filter(tantivy.Filter.lowercase())
    )
    if tokenizer == "en_stem":
        builder = builder.filter(tantivy.Filter.stemmer("english"))
    return builder.build()


def _build_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field(_UID, stored=True, indexed=True, fast=True)
    builder.add_text_field(_TEXT, tokenizer_name=_TEXT_TOKENIZER, index_option="position")
    builder.add_text_field(_SPEAKER_TEXT, tokenizer_name=_TEXT_TOKENIZER, index_option="freq")
    builder.add_text_field(_WINDOW, tokenizer_name=_TEXT_TOKENIZER, index_option="freq")
    for name in _KEYWORD_FIELDS:
        builder.add_text_field(name, tokenizer_name="raw", index_option="basic")
    # float64: exact for sub-second timestamps, so inclusive bounds behave as in `Filters`.
    builder.add_float_field(_STARTED_AT, indexed=True, fast=True)
    return builder.build()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What one search reads: a searcher and, if the index holds one tenant only, its name."""

    searcher: tantivy.Searcher
    sole_tenant: str | None


def _to_document(doc: IndexDoc) -> tantivy.Document:
    out = tantivy.Document()
    out.add_integer(_UID, doc.uid)
    out.add_text(_TEXT, doc.text)
    out.add_text(_WINDOW, f"{doc.context}\n{doc.text}" if doc.context else doc.text)
    out.add_text(_TENANT, doc.tenant)
    if doc.user_id is not None:  # absent, so that no user_id filter matches it
        out.add_text(_USER_ID, doc.user_id)
    out.add_text(_CONVERSATION_ID, doc.conversation_id)
    out.add_text(_SPEAKER, doc.speaker)
    out.add_text(_SPEAKER_TEXT, doc.speaker)
    out.add_text(_ROLE, str(doc.role))
    out.add_float(_STARTED_AT, doc.started_at)
    return out


def _segment_files(path: Path, meta: dict[str, object]) -> list[str]:
    """The files of the segments ``meta`` lists: ``<id>.<ext>``, and the deletes of its
    opstamp (``<id>.<opstamp>.del``)."""
    segments = meta.get("segments")
    if not isinstance(segments, list):
        raise ValueError(f"tantivy meta in {path} lists no segments")
    wanted: dict[str, str | None] = {}
    for seg in segments:
        deletes = seg.get("deletes")
        wanted[seg["segment_id"].replace("-", "")] = (
            f"{deletes['opstamp']}.del" if deletes else None
        )
    names = []
    for name in os.listdir(path):
        seg_id, _, rest = name.partition(".")
        if seg_id not in wanted:
            continue
        if rest.endswith(".del"):
            if rest == wanted[seg_id]:
                names.append(name)
        elif "." not in rest:
            names.append(name)
    return sorted(names)


def remove_stale(work_dir: Path) -> int:
    """Remove the index directories under ``work_dir`` that no process holds (left by a
    crash); return how many."""
    removed = 0
    for path in work_dir.glob(f"{_PREFIX}*") if work_dir.is_dir() else ():
        try:
            with (path / _LOCK).open("r") as fh:  # none yet: just made, not stale
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except OSError:
            continue  # in use (or not ours to remove)
    return removed


def _remove(root: Path, lock: IO[str]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    lock.close()


def _link(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        shutil.copyfile(src, dest)


class TantivyBM25Index:
    """BM25 over utterance text, with every `Filters` field pushed into the tantivy query.

    ``tokenizer`` is ``"en_stem"`` (lowercase and English Snowball stemming) or ``"default"``
    (lowercase only). ``writer_heap_bytes`` is the indexing memory budget, shared by
    ``writer_threads`` threads (at least 15 MB each).

    ``timeout_s`` is accepted for the protocol but a tantivy search cannot be interrupted;
    on 100k utterances a search takes about 0.5 ms scoped to a user and 1-2 ms unscoped
    (p99 under 6 ms). A ``timeout_s`` of zero or less returns no hits without searching.
    """

    def __init__(
        self,
        *,
        tokenizer: str = "en_stem",
        writer_heap_bytes: int = 64_000_000,
        writer_threads: int = 1,
        work_dir: Path | None = None,
    ) -> None:
        if tokenizer not in _TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {_TOKENIZERS}, got {tokenizer!r}")
        if writer_threads < 1:
            raise ValueError(f"writer_threads must be at least 1, got {writer_threads}")
        if writer_heap_bytes < _MIN_HEAP_PER_THREAD * writer_threads:
            raise ValueError(
                f"writer_heap_bytes must be at least {_MIN_HEAP_PER_THREAD} per writer thread, "
                f"got {writer_heap_bytes} for {writer_threads} thread(s)"
            )
        self._tokenizer = tokenizer
        self._heap, self._threads = writer_heap_bytes, writer_threads
        self._analyzer = _build_analyzer(tokenizer)
        self._stop_terms = frozenset(
            term for word in stopwords.ENGLISH for term in self._analyzer.analyze(word)
        )
        self._schema = _build_schema()
        if work_dir is not None:
            work_dir.mkdir(parents=True, exist_ok=True)
        self._root = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=work_dir))
        self._in_use = (self._root / _LOCK).open("w")
        fcntl.flock(self._in_use, fcntl.LOCK_EX)
        self._cleanup = weakref.finalize(self, _remove, self._root, self._in_use)
        self._generation = 0
        self._lock = threading.Lock()
        self._dir = self._new_dir()
        self._open(self._dir)

    def _new_dir(self) -> Path:
        self._generation += 1
        path = self._root / f"index-{self._generation}"
        path.mkdir()
        return path

    def _open(self, path: Path) -> None:
        self._index = tantivy.Index(self._schema, path=str(path), reuse=True)
        self._index.register_tokenizer(_TEXT_TOKENIZER, _build_analyzer(self._tokenizer))
        self._index.config_reader(reload_policy="manual")
        self._writer = self._index.writer(heap_size=self._heap, num_threads=self._threads)
        self._snapshot = _Snapshot(self._index.searcher(), sole_tenant=None)

    # -- files --------------------------------------------------------------------------------

    def save_files(self, dest: Path) -> None:
        """Hard-link (or copy, across file systems) the committed index into ``dest``, new.

        What `refresh` last committed: pending writes are not in it. A background merge may
        replace segments meanwhile; a file it removed before being linked means another try
        with the new ``meta.json``.
        """
        with self._lock:
            for attempt in range(_SAVE_TRIES):
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(parents=True)
                try:
                    meta = (self._dir / _META).read_bytes()
                    for name in _segment_files(self._dir, json.loads(meta)):
                        _link(self._dir / name, dest / name)
                except FileNotFoundError:
                    if attempt + 1 == _SAVE_TRIES:
                        raise
                    continue
                (dest / _META).write_bytes(meta)
                params = {"tokenizer": self._tokenizer, "schema": json.loads(meta)["schema"]}
                (dest / _PARAMS).write_text(json.dumps(params))
                return

    def restore_files(self, src: Path) -> None:
        """Open the index `save_files` wrote to ``src`` in place of this empty one.

        The files are linked into a fresh directory of this index's own, so the index can
        go on changing while ``src`` stays as it was (tantivy writes new files, never into
        old ones). ValueError if ``src`` was built with another analyzer or schema.
        """
        params = json.loads((src / _PARAMS).read_text())
        meta = json.loads((src / _META).read_text())
        with self._lock:
            if len(self) or self._writer.commit_opstamp:
                raise ValueError("restore_files needs an empty index")
            ours = json.loads((self._dir / _META).read_text())["schema"]
            if params.get("tokenizer") != self._tokenizer or meta.get("schema") != ours:
                raise ValueError(
                    f"lexical files at {src} were built with another analyzer or schema"
                )
            path = self._new_dir()
            names = [*_segment_files(src, meta), _META]
            for name in names:
                _link(src / name, path / name)
            (path / _MANAGED).write_text(json.dumps(names))  # tantivy may collect them later
            old = self._dir
            self._open(path)
            self._dir = path
        shutil.rmtree(old, ignore_errors=True)
        self.refresh()

    # -- writes -------------------------------------------------------------------------------

    def upsert(self, docs: Sequence[IndexDoc]) -> None:
        """Add or replace documents by uid (the last one wins); visible after `refresh`."""
        with self._lock:
            for doc in docs:
                self._writer.delete_documents_by_term(_UID, doc.uid)
                self._writer.add_document(_to_document(doc))

    def delete(self, uids: Sequence[int]) -> None:
        """Delete documents by uid (unknown uids are ignored); visible after `refresh`."""
        with self._lock:
            for uid in uids:
                self._writer.delete_documents_by_term(_UID, int(uid))

    def bulk_load(self, docs: Iterable[IndexDoc]) -> int:
        """Add documents whose uids are not in the index yet, then `refresh`; return the count.

        About twice as fast as `upsert` because nothing is deleted first; a uid that is already
        present ends up in the index twice, so use it only to fill an empty index at start-up.
        """
        count = 0
        with self._lock:
            for doc in docs:
                self._writer.add_document(_to_document(doc))
                count += 1
        self.refresh()
        return count

    def refresh(self) -> None:
        """Commit pending writes and swap in a searcher that sees them."""
        with self._lock:
            self._writer.commit()
            self._index.reload()
            searcher = self._index.searcher()
            # Deleted docs keep their terms until a merge, so one term means one tenant.
            tenants = searcher.terms_with_prefix(_TENANT, "", limit=2)
            sole_tenant = tenants[0][0] if len(tenants) == 1 else None
            self._snapshot = _Snapshot(searcher, sole_tenant)  # swapped atomically

    def __len__(self) -> int:
        return int(self._snapshot.searcher.num_docs)

    # -- reads --------------------------------------------------------------------------------

    def analyze(self, text: str) -> list[str]:
        """The terms that ``text`` contributes to the index or to a query, in order."""
        return list(self._analyzer.analyze(text))

    def search(
        self,
        query: str,
        k: int,
        *,
        filters: Filters,
        timeout_s: float,
        options: LexicalOptions = PLAIN_BM25,
    ) -> Hits:
        """The ``k`` best documents for ``query`` within ``filters``, best first.

        ``options.drop_stopwords`` leaves English function words (``indexer.stopwords``) out
        of the query, unless that would leave nothing. With ``options.speaker_weight`` > 0, a
        query term that names a speaker within ``filters`` matches the speaker's name (scaled
        by that weight) instead of the text: "what does Melanie do to relax" then favours what
        Melanie said, not the turns where someone else says "Thanks, Melanie!". With
        ``options.key == "window"`` the other terms are matched against the window key, the
        turn before each document and the document as one text (``IndexDoc.context``): a reply
        ("Yes, twice, with my sister") is then found by the words of the question it answers.
        """
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        if k == 0 or timeout_s <= 0:
            return Hits.empty()
        snapshot = self._snapshot  # one searcher for the whole request
        filter_query = self._filter(filters, sole_tenant=snapshot.sole_tenant)
        text_query = self._text_query(query, snapshot.searcher, filter_query, options)
        if text_query is None:
            return Hits.empty()
        if filter_query is not None:  # a scoring-free clause: it adds 0.0 to every score
            text_query = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Must, text_query),
                    (tantivy.Occur.Must, tantivy.Query.const_score_query(filter_query, 0.0)),
                ]
            )
        searcher = snapshot.searcher
        # Fetch past the k-th hit until the score drops, so ties at the cut-off are all seen.
        limit = 2 * k + 1
        while True:
            hits = searcher.search(text_query, limit, count=False).hits
            if len(hits) < limit or hits[-1][0] < hits[k - 1][0]:
                break
            limit *= 4
        if not hits:
            return Hits.empty()
        scores = np.fromiter((score for score, _ in hits), dtype=np.float32, count=len(hits))
        ids = np.asarray(searcher.fast_field_values(_UID, [addr for _, addr in hits]), np.int64)
        order = np.lexsort((ids, -scores))[:k]
        return Hits(ids[order], scores[order])

    def _text_query(
        self,
        query: str,
        searcher: tantivy.Searcher,
        filter_query: tantivy.Query | None,
        options: LexicalOptions,
    ) -> tantivy.Query | None:
        speaker_weight = options.speaker_weight
        text_field = _WINDOW if options.key == "window" else _TEXT
        counts = Counter(self._analyzer.analyze(query))
        if options.drop_stopwords:
            content = Counter({t: c for t, c in counts.items() if t not in self._stop_terms})
            counts = content or counts
        if not counts:
            return None
        terms = list(counts.items())[:MAX_QUERY_TERMS]
        names = (
            self._speaker_terms([t for t, _ in terms], searcher, filter_query)
            if speaker_weight > 0
            else set()
        )
        clauses = []
        for term, count in terms:
            if term in names:  # it names a speaker: match who spoke, not what was said
                field_name, boost = _SPEAKER_TEXT, count * speaker_weight
            else:
                field_name, boost = text_field, float(count)
            clause = tantivy.Query.term_query(self._schema, field_name, term, index_option="freq")
            if boost != 1.0:
                clause = tantivy.Query.boost_query(clause, boost)
            clauses.append((tantivy.Occur.Should, clause))
        return tantivy.Query.boolean_query(clauses)

    def _speaker_terms(
        self, terms: list[str], searcher: tantivy.Searcher, filter_query: tantivy.Query | None
    ) -> set[str]:
        """The terms that name a speaker of some utterance within the search's scope.

        Scoped (not index-wide), so another tenant's speakers never change how this tenant's
        query is read.
        """
        names = set()
        for term in terms:
            if searcher.doc_freq(_SPEAKER_TEXT, term) == 0:
                continue  # no speaker anywhere has this name: skip the scoped check
            probe = tantivy.Query.term_query(
                self._schema, _SPEAKER_TEXT, term, index_option="basic"
            )
            if filter_query is not None:
                probe = tantivy.Query.boolean_query(
                    [(tantivy.Occur.Must, probe), (tantivy.Occur.Must, filter_query)]
                )
            if searcher.search(probe, 1, count=False).hits:
                names.add(term)
        return names

    def _filter(self, filters: Filters, *, sole_tenant: str | None) -> tantivy.Query | None:
        """`filters` as one query, or None if it accepts every document of the snapshot.

        When every document belongs to the requested tenant the tenant clause is left out:
        a pure disjunction lets tantivy skip documents that cannot reach the top k (block-max
        WAND), which a conjunction with a filter prevents.
        """
        schema = self._schema
        must: list[tantivy.Query] = []
        if filters.tenant != sole_tenant:
            must.append(
                tantivy.Query.term_query(schema, _TENANT, filters.tenant, index_option="basic")
            )
        if filters.user_id is not None:
            must.append(
                tantivy.Query.term_query(schema, _USER_ID, filters.user_id, index_option="basic")
            )
        for name, values in (
            (_CONVERSATION_ID, filters.conversation_ids),
            (_SPEAKER, filters.speakers),
            (_ROLE, tuple(str(role) for role in filters.roles)),
        ):
            if values:
                must.append(tantivy.Query.term_set_query(schema, name, list(values)))
        # A NaN bound excludes nothing in `Filters.matches`, so it is no bound here either.
        since = None if filters.since is None or math.isnan(filters.since) else filters.since
        until = None if filters.until is None or math.isnan(filters.until) else filters.until
        if since is not None or until is not None:
            must.append(
                tantivy.Query.range_query(
                    schema,
                    _STARTED_AT,
                    tantivy.FieldType.Float,
                    lower_bound=since,
                    upper_bound=until,
                    include_lower=True,
                    include_upper=True,
                )
            )
        if not must:
            return None
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, q) for q in must])
