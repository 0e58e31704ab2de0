"""`ChangeFeedTailer`: keeps an `IndexShard` fresh by following the store's change feed.

A daemon thread polls ``changes_since(shard.seq)``. Ingest in the same process calls ``poke()``
right after its commit, so local writes are applied at once instead of at the next poll;
other replicas see them within ``poll_interval_s``. Readers use ``wait_for(seq, timeout_s)``
for read-your-writes. Every ``snapshot_interval_s`` (if anything changed) the shard is written
to disk on a thread of its own (the feed keeps being applied meanwhile), and once more on
``stop()``. ``conform`` (optional) maps each batch of changes before
it is applied: the services pass ``indexer.reembed.conform``, so a vector another model made
never reaches the index.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from indexer.errors import IndexerError
from indexer.models import Change
from indexer.protocols import Store
from indexer.tier import IndexTier

_log = logging.getLogger(__name__)

#: with the feed failing, how long to wait before trying the store again (a commit cuts it short)
RETRY_S = 1.0
#: with the feed failing, the longest a ``wait_for`` waits
FAILING_WAIT_S = 0.1


class ChangeFeedTailer:
    def __init__(
        self,
        *,
        store: Store,
        shard: IndexTier,
        poll_interval_s: float = 0.05,
        batch_size: int = 2000,
        snapshot: Callable[[], object] | None = None,
        snapshot_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        conform: Callable[[Sequence[Change]], Sequence[Change]] | None = None,
        apply: bool = True,
    ) -> None:
        """``apply=False``: a read replica of a remote tier that another process feeds; this
        one only follows the tier's ``seq`` (for ``wait_for``) and never reads the feed."""
        self._apply = apply
        self._store = store
        self._conform = conform
        self._shard = shard
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._snapshot = snapshot
        self._snapshot_interval_s = snapshot_interval_s
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._advanced = threading.Condition()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._snapshotted_seq = shard.seq
        self._snapshot_lock = threading.Lock()  # one snapshot at a time
        self._snapshotter: threading.Thread | None = None
        self._head = shard.seq  # the newest seq known to be in the store
        self._behind_since: float | None = None  # when the index last fell behind it

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def lag_seq(self) -> int:
        """How many seqs the index is behind the newest write it knows of."""
        return max(0, self._head - self._shard.seq)

    @property
    def lag_s(self) -> float:
        """How long the index has been behind (0 when caught up)."""
        since = self._behind_since
        return 0.0 if since is None or self.lag_seq == 0 else self._clock() - since

    def catch_up(self) -> int:
        """Apply every pending change now (in the caller's thread); return the covered seq."""
        if not self._apply:
            seq = self._shard.seq  # another process feeds the tier: follow it
            with self._advanced:
                self._advanced.notify_all()
            if seq >= self._head:
                self._behind_since = None
            return seq
        while True:
            changes = self._store.changes_since(self._shard.seq, self._batch_size)
            if changes:
                self._note_head(changes[-1].seq)
                self._shard.apply(changes if self._conform is None else self._conform(changes))
                with self._advanced:
                    self._advanced.notify_all()
            if len(changes) < self._batch_size:
                self._behind_since = None if self.lag_seq == 0 else self._behind_since
                return self._shard.seq

    def _note_head(self, seq: int) -> None:
        if seq > self._head:
            if self._behind_since is None:
                self._behind_since = self._clock()
            self._head = seq

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="convmem-tailer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._maybe_snapshot(force=True)  # waits for one in flight (the lock), then the last

    def poke(self, seq: int | None = None) -> None:
        """Wake the tailer now (a local write just committed, at ``seq`` if given)."""
        if seq is not None:
            self._note_head(seq)
        self._wake.set()

    def wait_for(self, seq: int, timeout_s: float) -> bool:
        """Block until the shard covers ``seq`` or ``timeout_s`` passes; True if covered.

        While the feed is failing (the store is down) it waits ``FAILING_WAIT_S`` at most:
        longer cannot help, and a search that waited would hold its admission slot for
        nothing. That short wait is for the store coming back: a write that commits pokes the
        tailer, which then retries at once, so a read of that write still finds it."""
        if self._shard.seq >= seq:
            return True
        if self._last_error is not None:
            timeout_s = min(timeout_s, FAILING_WAIT_S)  # no poke: only a commit proves it back
        else:
            self.poke()
        deadline = self._clock() + max(0.0, timeout_s)
        with self._advanced:
            while self._shard.seq < seq:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._advanced.wait(left)
        return True

    def _run(self) -> None:
        last_snapshot = self._clock()
        while not self._stop.is_set():
            try:
                self.catch_up()
                self._last_error = None
            except IndexerError as exc:  # the store is down: keep serving, retry
                self._last_error = str(exc)
                _log.warning("change feed: %s", exc)
                self._wake.wait(RETRY_S)  # or sooner: a commit (the store is back) pokes
                self._wake.clear()
            if self._clock() - last_snapshot >= self._snapshot_interval_s:
                self._snapshot_in_background()
                last_snapshot = self._clock()
            self._wake.wait(self._poll_interval_s)
            self._wake.clear()

    def _snapshot_in_background(self) -> None:
        """Snapshot on a thread of its own, so the feed keeps being applied meanwhile (writing
        100k documents takes seconds; in the tailer's thread it held freshness up that long)."""
        if self._snapshotter is not None and self._snapshotter.is_alive():
            return  # the one in flight covers most of it; the next interval the rest
        self._snapshotter = threading.Thread(
            target=self._maybe_snapshot,
            kwargs={"force": False},
            name="convmem-snapshot",
            daemon=True,
        )
        self._snapshotter.start()

    def _maybe_snapshot(self, *, force: bool) -> None:
        if self._snapshot is None:
            return
        with self._snapshot_lock:
            seq = self._shard.seq  # the snapshot covers at least this much
            if seq == self._snapshotted_seq and not force:
                return
            try:
                self._snapshot()
                self._snapshotted_seq = seq
            except (OSError, IndexerError) as exc:
                _log.warning("snapshot failed: %s", exc)
