"""Errors of the evaluation package.

    EvalError                 base: anything an evaluation run cannot proceed with
    ├── DatasetError          a dataset file that is missing, malformed or inconsistent
    ├── ConfigError           an unknown config name or a bad config file
    └── ResultsError          a results directory that cannot be read back (compare)

Each is also a ``ValueError``, since each is caused by bad input.
"""

from __future__ import annotations


class EvalError(ValueError):
    """Base class of the evaluation errors."""


class DatasetError(EvalError):
    """A dataset that cannot be used: the message names the file and, where known, the line."""


class ConfigError(EvalError):
    """An unknown config name, an unknown parameter, or a value out of range."""


class ResultsError(EvalError):
    """A results directory without a readable ``per_query.json``."""
