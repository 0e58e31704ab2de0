"""One BLAS thread per call: what a search's matrix products may use.

numpy's OpenBLAS starts a thread per core and splits each product across them (a scoped
dense search is one: the scope's vectors times the query), and its helper threads keep
spinning a while after each call. A search is one request among many, and on a small machine
those threads compete with the request threads: at 1M utterances on a 2-core VM the scale
benchmark saw single dense or BM25 stages of a large user's search take 36-39 ms instead of
1-3 ms (hybrid p99 25 and 44 ms in two runs), and none with one thread (p99 13.4 ms;
docs/SCALING.md). The parallelism belongs to the requests, so the served default is one
thread (``CONVMEM_INDEX__COMPUTE_THREADS``; 0 keeps OpenBLAS's default). OpenMP (FAISS, and
the speech model's CTranslate2) is left alone: transcription wants its cores.
"""

from __future__ import annotations

import os

_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_compute_threads(threads: int) -> None:
    """At most ``threads`` threads per BLAS call from now on (0: leave them).

    The environment covers BLAS libraries loaded later (each reads it when it loads),
    ``threadpoolctl`` the ones loaded already (numpy's OpenBLAS)."""
    if threads <= 0:
        return
    for name in _ENV:
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
