"""Errors raised by the indexer package.

IndexerError
├── StoreError            the store of record failed (driver errors are chained)
│   ├── NotFound          a conversation or utterance does not exist for this tenant
│   ├── Conflict          a write contradicts stored state
│   └── BackupError       a backup or restore could not be made (tools, file, target)
├── InvalidInput          what a client sent cannot be stored (also a ValueError)
├── IndexUnavailable      an index is not loaded or not caught up
│   └── IndexTimeout      a remote tier's call ran past the time it was given
├── EmbedderError         the embedding model could not be loaded or run
└── SnapshotError         a snapshot on disk is missing, corrupt, or of another model or store
"""

from __future__ import annotations


class IndexerError(Exception):
    """Base class of every error this package raises."""


class StoreError(IndexerError):
    pass


class NotFound(StoreError):
    pass


class InvalidInput(IndexerError, ValueError):
    """The caller's input is invalid: the only ValueError the API reports as the client's fault
    (422); any other ValueError is an internal error (500)."""


class IndexUnavailable(IndexerError):
    pass


class IndexTimeout(IndexUnavailable):
    """A remote tier did not answer within the time a search gave the call: the searcher
    degrades that stage (named in ``degraded``), as it does one that would not fit."""


class EmbedderError(IndexerError):
    pass


class SnapshotError(IndexerError):
    pass


class Conflict(StoreError):
    """A write contradicts stored state (e.g. a conversation owned by another user)."""


class BackupError(StoreError):
    """A backup or restore failed: no PostgreSQL client tools, a bad archive, a target that
    already holds a store, or pg_dump/pg_restore/psql exiting non-zero (their message kept)."""
