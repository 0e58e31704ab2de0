"""`PgStore`: the store of record on PostgreSQL + pgvector (psycopg 3, a connection pool).

The change feed: every write takes ``pg_advisory_xact_lock(_FEED_LOCK)`` *before* it draws
values from ``change_seq`` and holds it until commit. Writers therefore commit in ``seq`` order,
and a reader that sees ``seq = n`` committed has already been able to see every ``seq < n``.
Without the lock, transaction A could draw 10, B draw 11 and commit first, and a tailer at 11
would skip 10 forever. Writes are embedded before the transaction opens, so the lock is held
for milliseconds; ingest is embedding-bound, not lock-bound.

When the store goes away, nothing waits long for it (``docs/RELIABILITY.md``, store faults): a
connection is checked as it leaves the pool and one that cannot be had within
``acquire_timeout_s`` is a ``StoreError`` (a 503), a write waits at most ``lock_timeout_s`` for
a lock (a table locked for maintenance is a 503, not a hung request), and the pool retries a
lost connection for ``reconnect_timeout_s`` before it gives the slot up, so the next request
connects afresh. psycopg_pool's own default there is five minutes of exponential back-off
(1, 2, 4, 8 ... s): after an outage of N seconds the pool reconnected up to about N seconds
after PostgreSQL was back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from indexer.errors import Conflict, NotFound, StoreError
from indexer.migrate import migrate
from indexer.models import (
    Change,
    Conversation,
    ConversationIn,
    Role,
    Source,
    Utterance,
    UtteranceIn,
)

_FEED_LOCK = 0x636F6E766D656D  # "convmem"
_Row = dict[str, Any]
_UTTERANCE_COLUMNS = (
    "u.uid, u.tenant, u.id, u.conversation_id, c.user_id, u.turn, u.speaker, u.role, u.text,"
    " u.started_at, u.ended_at, u.source, u.asr_confidence, u.seq, u.deleted"
)


def _configure(conn: psycopg.Connection[Any]) -> None:
    register_vector(conn)
    conn.autocommit = True


class PgStore:
    """Implements ``indexer.protocols.Store``. Build with ``PgStore.connect(url)``."""

    def __init__(
        self, *, pool: ConnectionPool[psycopg.Connection[Any]], lock_timeout_s: float = 5.0
    ) -> None:
        if lock_timeout_s <= 0:
            raise ValueError("lock_timeout_s must be > 0")
        self._pool = pool
        # one round trip: SET LOCAL and the feed lock travel together (no parameters)
        self._write_prologue = (
            f"SET LOCAL lock_timeout = {max(1, round(lock_timeout_s * 1000))};"
            f" SELECT pg_advisory_xact_lock({_FEED_LOCK})"
        ).encode()

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        timeout_s: float = 10.0,
        acquire_timeout_s: float = 1.0,
        reconnect_timeout_s: float = 1.0,
        lock_timeout_s: float = 5.0,
    ) -> PgStore:
        """Open a pool, apply pending migrations, and return the store.

        ``timeout_s`` bounds the first connection; the others are the fault bounds of the
        module docstring.
        """
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                migrate(conn)
            pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=acquire_timeout_s,
                reconnect_timeout=reconnect_timeout_s,
                check=ConnectionPool.check_connection,
                configure=_configure,
                open=False,
            )
            pool.open(wait=True, timeout=timeout_s)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(pool=pool, lock_timeout_s=lock_timeout_s)

    def close(self) -> None:
        self._pool.close()

    # -- writes -------------------------------------------------------------------------

    def upsert_utterances(
        self,
        tenant: str,
        utterances: Sequence[UtteranceIn],
        embeddings: npt.NDArray[np.float32],
        *,
        embedding_model: str | None = None,
    ) -> int:
        if len(utterances) != embeddings.shape[0]:
            raise ValueError("one embedding per utterance is required")
        if not utterances:
            return self.max_seq()
        with self._write("upsert") as conn:
            self._ensure_conversations(conn, tenant, utterances)
            turns = self._assign_turns(conn, tenant, utterances)
            with conn.cursor() as cur:
                # executemany pipelines the statements: one round trip, not one per row
                cur.executemany(
                    _UPSERT_SQL,
                    [
                        _upsert_params(tenant, utt, emb, turn, embedding_model)
                        for utt, emb, turn in zip(utterances, embeddings, turns, strict=True)
                    ],
                )
            return self._max_seq(conn)

    def _ensure_conversations(
        self, conn: psycopg.Connection[Any], tenant: str, utterances: Sequence[UtteranceIn]
    ) -> None:
        first: dict[str, UtteranceIn] = {}
        for utt in utterances:
            first.setdefault(utt.conversation_id, utt)
        for conv_id, utt in first.items():
            row = conn.execute(
                "SELECT user_id, agent_id, deleted FROM conversations"
                " WHERE tenant = %s AND id = %s FOR UPDATE",
                (tenant, conv_id),
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO conversations (tenant, id, user_id, agent_id, started_at, seq)"
                    " VALUES (%s, %s, %s, %s, %s, nextval('change_seq'))",
                    (tenant, conv_id, utt.user_id, utt.agent_id, utt.started_at),
                )
                continue
            user_id, agent_id, deleted = row
            for name, have, want in (
                ("user_id", user_id, utt.user_id),
                ("agent_id", agent_id, utt.agent_id),
            ):
                if want is not None and have is not None and have != want and not deleted:
                    raise Conflict(
                        f"conversation {conv_id!r} belongs to {name} {have!r}, not {want!r}"
                    )
            conn.execute(
                "UPDATE conversations SET user_id = COALESCE(%(user)s::text, user_id),"
                " agent_id = COALESCE(%(agent)s::text, agent_id), deleted = false,"
                " seq = nextval('change_seq') WHERE tenant = %(tenant)s AND id = %(id)s"
                " AND (deleted OR (user_id IS NULL AND %(user)s::text IS NOT NULL)"
                " OR (agent_id IS NULL AND %(agent)s::text IS NOT NULL))",
                {"user": utt.user_id, "agent": utt.agent_id, "tenant": tenant, "id": conv_id},
            )
            if user_id is None and utt.user_id is not None and not deleted:
                # The conversation now has an owner, and the indexes filter on user_id: the
                # turns already indexed without one are re-announced, as a PUT would do.
                conn.execute(
                    "UPDATE utterances SET seq = nextval('change_seq')"
                    " WHERE tenant = %s AND conversation_id = %s AND NOT deleted",
                    (tenant, conv_id),
                )

    def _assign_turns(
        self, conn: psycopg.Connection[Any], tenant: str, utterances: Sequence[UtteranceIn]
    ) -> list[int]:
        """Existing ids keep their turn; new ones get the next turn of their conversation."""
        ids = [u.id for u in utterances]
        conv_ids = sorted({u.conversation_id for u in utterances})
        existing = dict(
            conn.execute(
                "SELECT id, turn FROM utterances WHERE tenant = %s AND id = ANY(%s)", (tenant, ids)
            ).fetchall()
        )
        next_turn = {
            cid: int(t) + 1
            for cid, t in conn.execute(
                "SELECT conversation_id, max(turn) FROM utterances"
                " WHERE tenant = %s AND conversation_id = ANY(%s) GROUP BY conversation_id",
                (tenant, conv_ids),
            ).fetchall()
        }
        turns: list[int] = []
        seen: dict[str, int] = {}
        for utt in utterances:
            if utt.id in existing:
                turns.append(int(existing[utt.id]))
            elif utt.id in seen:
                turns.append(seen[utt.id])
            else:
                turn = next_turn.get(utt.conversation_id, 0)
                next_turn[utt.conversation_id] = turn + 1
                seen[utt.id] = turn
                turns.append(turn)
        return turns

    def put_conversation(self, tenant: str, conversation: ConversationIn) -> int:
        with self._write("put conversation") as conn:
            before = conn.execute(
                "SELECT user_id FROM conversations WHERE tenant = %s AND id = %s",
                (tenant, conversation.id),
            ).fetchone()
            conn.execute(
                "INSERT INTO conversations"
                " (tenant, id, user_id, agent_id, started_at, metadata, seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, nextval('change_seq'))"
                " ON CONFLICT (tenant, id) DO UPDATE SET user_id = EXCLUDED.user_id,"
                " agent_id = EXCLUDED.agent_id,"
                " started_at = COALESCE(EXCLUDED.started_at, conversations.started_at),"
                " metadata = EXCLUDED.metadata, deleted = false, seq = EXCLUDED.seq",
                (
                    tenant,
                    conversation.id,
                    conversation.user_id,
                    conversation.agent_id,
                    conversation.started_at,
                    json.dumps(conversation.metadata),
                ),
            )
            if before is not None and before[0] != conversation.user_id:
                # The indexes filter on user_id: re-announce this conversation's utterances.
                conn.execute(
                    "UPDATE utterances SET seq = nextval('change_seq')"
                    " WHERE tenant = %s AND conversation_id = %s AND NOT deleted",
                    (tenant, conversation.id),
                )
            return self._max_seq(conn)

    def delete_utterance(self, tenant: str, utterance_id: str) -> int:
        with self._write("delete utterance") as conn:
            if not _tombstone(conn, tenant, "u.id = %s", (utterance_id,)):
                raise NotFound(f"utterance {utterance_id!r} not found")
            return self._max_seq(conn)

    def delete_conversation(self, tenant: str, conversation_id: str) -> int:
        with self._write("delete conversation") as conn:
            if not _delete_conversations(conn, tenant, "id = %s", (conversation_id,)):
                raise NotFound(f"conversation {conversation_id!r} not found")
            _tombstone(conn, tenant, "u.conversation_id = %s", (conversation_id,))
            return self._max_seq(conn)

    def delete_user(self, tenant: str, user_id: str) -> int:
        """Forget a user's whole memory: every conversation of ``user_id`` and its utterances.

        Idempotent: forgetting an unknown (or already forgotten) user deletes nothing.
        """
        with self._write("delete user") as conn:
            _tombstone(
                conn,
                tenant,
                "u.conversation_id IN"
                " (SELECT id FROM conversations WHERE tenant = %s AND user_id = %s)",
                (tenant, user_id),
            )
            _delete_conversations(conn, tenant, "user_id = %s", (user_id,))
            return self._max_seq(conn)

    @contextmanager
    def _write(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        """A write transaction holding the change-feed lock; driver errors become StoreError.

        Every lock it waits for (the feed's, a row's, a table's) it waits ``lock_timeout_s`` at
        most, then fails (a StoreError, so a 503 with ``Retry-After``) and rolls back."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute(self._write_prologue)
                yield conn
        except psycopg.Error as exc:
            raise StoreError(f"{what} failed: {exc}") from exc

    # -- reads --------------------------------------------------------------------------

    def get_conversation(self, tenant: str, conversation_id: str) -> Conversation:
        row = self._fetch_one(
            "SELECT tenant, id, user_id, agent_id, started_at, metadata FROM conversations"
            " WHERE tenant = %s AND id = %s AND NOT deleted",
            (tenant, conversation_id),
        )
        if row is None:
            raise NotFound(f"conversation {conversation_id!r} not found")
        return Conversation(
            tenant=row["tenant"],
            id=row["id"],
            user_id=row["user_id"],
            agent_id=row["agent_id"],
            started_at=row["started_at"],
            metadata=dict(row["metadata"] or {}),
        )

    def transcript(self, tenant: str, conversation_id: str) -> list[Utterance]:
        self.get_conversation(tenant, conversation_id)
        rows = self._fetch_all(
            f"SELECT {_UTTERANCE_COLUMNS} FROM utterances u JOIN conversations c"
            " ON c.tenant = u.tenant AND c.id = u.conversation_id"
            " WHERE u.tenant = %s AND u.conversation_id = %s AND NOT u.deleted"
            " ORDER BY u.started_at, u.turn",
            (tenant, conversation_id),
        )
        return [_utterance(r) for r in rows]

    def changes_since(self, seq: int, limit: int) -> list[Change]:
        rows = self._fetch_all(
            f"SELECT {_UTTERANCE_COLUMNS}, u.embedding, u.embedding_model"
            " FROM utterances u JOIN conversations c"
            " ON c.tenant = u.tenant AND c.id = u.conversation_id"
            " WHERE u.seq > %s ORDER BY u.seq LIMIT %s",
            (seq, limit),
            binary=True,
        )
        return [
            Change(
                seq=int(r["seq"]),
                uid=int(r["uid"]),
                deleted=bool(r["deleted"]),
                utterance=_utterance(r),
                embedding=None
                if r["embedding"] is None
                else np.asarray(_to_numpy(r["embedding"]), dtype=np.float32),
                embedding_model=r["embedding_model"],
            )
            for r in rows
        ]

    # -- re-embedding (a change of embedder) --------------------------------------------

    def count_stale_embeddings(self, embedding_model: str) -> int:
        """Live utterances whose stored vector was not made by ``embedding_model``."""
        row = self._fetch_one(
            "SELECT count(*) AS n FROM utterances"
            " WHERE NOT deleted AND embedding_model IS DISTINCT FROM %s",
            (embedding_model,),
        )
        return int(row["n"]) if row else 0

    def stale_embeddings(
        self, embedding_model: str, *, after_uid: int, limit: int
    ) -> list[tuple[int, str, str]]:
        """``(uid, speaker, text)`` of live utterances to re-embed, by uid after ``after_uid``."""
        rows = self._fetch_all(
            "SELECT uid, speaker, text FROM utterances"
            " WHERE NOT deleted AND embedding_model IS DISTINCT FROM %s AND uid > %s"
            " ORDER BY uid LIMIT %s",
            (embedding_model, after_uid, limit),
        )
        return [(int(r["uid"]), str(r["speaker"]), str(r["text"])) for r in rows]

    def write_embeddings(
        self,
        embedding_model: str,
        rows: Sequence[tuple[int, str]],
        embeddings: npt.NDArray[np.float32],
    ) -> int:
        """Set the vectors of ``rows`` (``(uid, text embedded)``); no new ``seq``.

        A row deleted or edited since it was read is left alone (its text no longer matches),
        so a concurrent write always wins over a re-embedding.

        A vector rewrite is not a change of content: indexes built from the old model are
        rebuilt (their snapshot names the model), and a tailer conforms any vector it reads
        that another model made (``indexer.reembed.conform``).
        """
        if len(rows) != embeddings.shape[0]:
            raise ValueError("one embedding per row is required")
        with self._write("re-embed") as conn, conn.cursor() as cur:
            cur.executemany(
                "UPDATE utterances SET embedding = %b, embedding_model = %s"
                " WHERE uid = %s AND text = %s AND NOT deleted",
                [
                    (np.asarray(e, dtype=np.float32), embedding_model, int(uid), text)
                    for (uid, text), e in zip(rows, embeddings, strict=True)
                ],
            )
            return len(rows)

    def iter_changes(self, seq: int, *, page: int = 5000) -> Iterator[Change]:
        """Every change after ``seq``, paged."""
        while True:
            batch = self.changes_since(seq, page)
            yield from batch
            if len(batch) < page:
                return
            seq = batch[-1].seq

    def max_seq(self) -> int:
        try:
            with self._pool.connection() as conn:
                return self._max_seq(conn)
        except psycopg.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc

    def store_id(self) -> str:
        """This store's identity (migration 0003): an index snapshot loads only into its own
        store. ``convmem restore`` gives a restored store a new one."""
        row = self._fetch_one("SELECT store_id::text AS id FROM store_identity", ())
        if row is None:
            raise StoreError("the store has no identity row (store_identity is empty)")
        return str(row["id"])

    def ping(self) -> bool:
        try:
            with self._pool.connection(timeout=1.0) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - a health probe reports, it never raises
            return False

    @staticmethod
    def _max_seq(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute("SELECT COALESCE(max(seq), 0) FROM utterances").fetchone()
        return int(row[0]) if row else 0

    def _fetch_one(self, sql: str, params: tuple[object, ...]) -> _Row | None:
        rows = self._fetch_all(sql, params)
        return rows[0] if rows else None

    def _fetch_all(
        self, sql: str, params: tuple[object, ...], *, binary: bool = False
    ) -> list[_Row]:
        """Rows as dicts; ``binary`` asks for binary results (vectors decode ~10x faster)."""
        try:
            with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(sql.encode(), params, binary=binary)
                return cur.fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc


#: A resend that changes any stored field (text, times, speaker, role, source, ASR confidence,
#: metadata, or the model that made its vector) replaces the row and draws a new ``seq``; an
#: identical resend is a no-op.
#: The vector is sent in binary (``%b``): formatting 256 floats as text cost more than the rest.
_UPSERT_SQL = (
    "INSERT INTO utterances (tenant, id, conversation_id, turn, speaker, role, text, started_at,"
    " ended_at, source, asr_confidence, embedding, metadata, embedding_model, seq)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %b, %s, %s, nextval('change_seq'))"
    " ON CONFLICT (tenant, id) DO UPDATE SET conversation_id = EXCLUDED.conversation_id,"
    " speaker = EXCLUDED.speaker, role = EXCLUDED.role, text = EXCLUDED.text,"
    " started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at, source = EXCLUDED.source,"
    " asr_confidence = EXCLUDED.asr_confidence, embedding = EXCLUDED.embedding,"
    " metadata = EXCLUDED.metadata, embedding_model = EXCLUDED.embedding_model,"
    " seq = EXCLUDED.seq, deleted = false"
    " WHERE (utterances.conversation_id, utterances.speaker, utterances.role, utterances.text,"
    " utterances.started_at, utterances.ended_at, utterances.deleted, utterances.embedding_model,"
    " utterances.source, utterances.asr_confidence, utterances.metadata)"
    " IS DISTINCT FROM (EXCLUDED.conversation_id, EXCLUDED.speaker, EXCLUDED.role,"
    " EXCLUDED.text, EXCLUDED.started_at, EXCLUDED.ended_at, false, EXCLUDED.embedding_model,"
    " EXCLUDED.source, EXCLUDED.asr_confidence, EXCLUDED.metadata)"
)


def _tombstone(
    conn: psycopg.Connection[Any], tenant: str, where: str, params: tuple[str, ...]
) -> int:
    """Mark matching live utterances deleted, wiping text and vector; each gets a new seq."""
    cur = conn.execute(
        "UPDATE utterances AS u SET deleted = true, text = '', embedding = NULL,"
        " metadata = '{}'::jsonb, seq = nextval('change_seq')"
        f" WHERE u.tenant = %s AND NOT u.deleted AND {where}".encode(),
        (tenant, *params),
    )
    return cur.rowcount


def _delete_conversations(
    conn: psycopg.Connection[Any], tenant: str, where: str, params: tuple[str, ...]
) -> int:
    cur = conn.execute(
        "UPDATE conversations SET deleted = true, metadata = '{}'::jsonb,"
        f" seq = nextval('change_seq') WHERE tenant = %s AND NOT deleted AND {where}".encode(),
        (tenant, *params),
    )
    return cur.rowcount


def _upsert_params(
    tenant: str,
    utt: UtteranceIn,
    emb: npt.NDArray[np.float32],
    turn: int,
    embedding_model: str | None,
) -> tuple[object, ...]:
    return (
        tenant,
        utt.id,
        utt.conversation_id,
        turn,
        utt.speaker,
        utt.role.value,
        utt.text,
        utt.started_at,
        utt.ended_at,
        utt.source.value,
        utt.asr_confidence,
        np.asarray(emb, dtype=np.float32),
        json.dumps(utt.metadata),
        embedding_model,
    )


def _utterance(r: _Row) -> Utterance:
    started: datetime = r["started_at"]
    return Utterance(
        uid=int(r["uid"]),
        tenant=r["tenant"],
        id=r["id"],
        conversation_id=r["conversation_id"],
        user_id=r["user_id"],
        turn=int(r["turn"]),
        speaker=r["speaker"],
        role=Role(r["role"]),
        text=r["text"],
        started_at=started,
        ended_at=r["ended_at"],
        source=Source(r["source"]),
        asr_confidence=None if r["asr_confidence"] is None else float(r["asr_confidence"]),
        seq=int(r["seq"]),
    )


def _to_numpy(value: Any) -> npt.NDArray[np.float32]:
    """pgvector returns ``Vector`` objects (0.4+) or numpy arrays (older): accept both."""
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else value, dtype=np.float32)
