"""Measure retrieval on a judged dataset (convmem eval), or compare two measurements.

convmem eval --dataset PATH [--format locomo|jsonl] [--config NAME ...] [--config-file FILE]
             --out DIR [--url URL] [--k 10] [--limit-queries N]
convmem eval --compare DIR_A DIR_B

See docs/EVAL.md for the dataset format, the configs and the files written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import NoReturn

import httpx
from tqdm import tqdm

from convmem.settings import Settings
from eval.artifacts import write_results
from eval.compare import compare, load_results, moved
from eval.configs import DEFAULT_CONFIGS, EvalConfig, read_config_file, select_configs
from eval.dataset import Dataset
from eval.errors import EvalError
from eval.jsonl_dataset import read_jsonl_dataset
from eval.locomo import read_locomo_dataset
from eval.paired import DEFAULT_PERMUTATIONS, DEFAULT_SEED
from eval.report_md import render_table
from eval.runner import Retriever, run_all
from eval.summary import depth, metric_names, score_runs, summarise
from eval.tables import ALPHA, headline, p_value, pct, signed
from indexer.errors import IndexerError
from indexer.loaders import LoadError

MAX_K = 100  # the REST API's limit on k


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _fail(message: str) -> int:
    sys.stderr.write(f"convmem: error: {message}\n")
    return 2


def add_eval_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser(
        "eval",
        help="measure retrieval on a judged dataset (or --compare two results)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    e.add_argument("--dataset", type=Path, help="our JSONL dataset, or LoCoMo JSON")
    e.add_argument("--format", help="jsonl or locomo (default: from the file's suffix)")
    e.add_argument(
        "--config",
        action="append",
        dest="configs",
        metavar="NAME",
        help=f"config to run (repeatable or comma-separated); default {','.join(DEFAULT_CONFIGS)}",
    )
    e.add_argument("--config-file", type=Path, help="YAML or JSON: {configs: {NAME: {...}}}")
    e.add_argument("--out", type=Path, help="directory for the results")
    e.add_argument("--url", help="evaluate a running service instead of a fresh local store")
    e.add_argument("--api-key", dest="api_key", help="bearer key for --url")
    e.add_argument("--k", type=int, default=10, help="the headline cutoff (default 10)")
    e.add_argument("--limit-queries", type=int, help="evaluate only the first N queries")
    e.add_argument(
        "--users",
        help="score only the queries of these users, comma-separated (LoCoMo: sample ids,"
        " e.g. the report split conv-44,conv-47,conv-48,conv-49,conv-50); all are loaded",
    )
    e.add_argument("--model-cache", type=Path, help="where the ONNX export is cached")
    e.add_argument(
        "--database-url", help="use this PostgreSQL (a fresh tenant) not an embedded one"
    )
    e.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the significance test")
    e.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS)
    e.add_argument("--compare", nargs=2, type=Path, metavar=("DIR_A", "DIR_B"))
    e.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        if args.compare:
            return _compare(args.compare[0], args.compare[1], args)
        return _evaluate(args)
    except (EvalError, LoadError, IndexerError) as exc:
        return _fail(str(exc))
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach {args.url}: {exc}")


def read_dataset(path: Path, fmt: str | None) -> Dataset:
    fmt = fmt or {".jsonl": "jsonl", ".json": "locomo"}.get(path.suffix)
    if fmt not in ("jsonl", "locomo"):
        raise EvalError(f"unknown dataset format {fmt!r}; use --format jsonl or --format locomo")
    if not path.is_file():
        raise EvalError(f"{path}: no such file")
    return read_jsonl_dataset(path) if fmt == "jsonl" else read_locomo_dataset(path)


def _evaluate(args: argparse.Namespace) -> int:
    if args.dataset is None or args.out is None:
        raise EvalError("eval needs --dataset PATH and --out DIR (or --compare DIR_A DIR_B)")
    if not 1 <= args.k <= MAX_K:
        raise EvalError(f"--k must be between 1 and {MAX_K}, got {args.k}")
    if args.url and (args.database_url or args.model_cache):
        raise EvalError("--url evaluates a running service: drop --database-url/--model-cache")
    names = [n.strip() for arg in args.configs for n in arg.split(",")] if args.configs else None
    from_file = read_config_file(args.config_file) if args.config_file else {}
    configs = select_configs(names, from_file, defaults=_default_configs(args, from_file))
    if args.url:
        from convmem.eval_retrievers import check_http_configs

        check_http_configs(configs)
    users = [u.strip() for u in args.users.split(",") if u.strip()] if args.users else None
    dataset = read_dataset(args.dataset, args.format).for_users(users).limited(args.limit_queries)
    metrics = metric_names(args.k)
    fetch = depth(metrics)
    if fetch > MAX_K:
        raise EvalError(f"metrics read the top {fetch}, more than the API's {MAX_K}")
    for note in dataset.notes[:1]:
        sys.stderr.write(f"convmem: {note}\n")

    load_bar = tqdm(total=len(dataset.utterances), unit="utt", desc="loading", file=sys.stderr)
    try:
        with _retriever(args, dataset, _advance(load_bar)) as retriever:
            load_bar.close()
            bar = tqdm(
                total=len(dataset.queries) * len(configs),
                unit="q",
                desc="searching",
                file=sys.stderr,
            )
            try:
                runs = run_all(dataset.queries, configs, retriever, k=fetch, progress=_advance(bar))
            finally:
                bar.close()
    finally:
        load_bar.close()
    per_query = score_runs(dataset, runs, metrics)
    summary = summarise(
        dataset,
        runs,
        per_query,
        metrics,
        k=args.k,
        seed=args.seed,
        permutations=args.permutations,
    )
    source = args.url or str(args.dataset)
    written = write_results(args.out, summary, runs, per_query, source=source)
    _out(render_table(headline(summary)))
    _out("wrote " + ", ".join(str(p) for p in written))
    return 0


def _default_configs(args: argparse.Namespace, from_file: dict[str, EvalConfig]) -> tuple[str, ...]:
    if not args.url:
        return DEFAULT_CONFIGS
    return tuple(
        n for n in ("lexical", "dense", "hybrid") if n not in from_file or not from_file[n].params
    )


def _advance(bar: tqdm[NoReturn]) -> Callable[[int], None]:
    def update(n: int) -> None:
        bar.update(n)

    return update


def _retriever(
    args: argparse.Namespace, dataset: Dataset, progress: Callable[[int], None]
) -> AbstractContextManager[Retriever]:
    from convmem.eval_retrievers import http_retriever, local_retriever

    if args.url:
        return http_retriever(args.url, args.api_key, dataset.utterances, progress=progress)
    return local_retriever(
        Settings(),
        dataset.utterances,
        model_cache=args.model_cache,
        db_url=args.database_url,
        progress=progress,
    )


def _compare(dir_a: Path, dir_b: Path, args: argparse.Namespace) -> int:
    changes = compare(
        load_results(dir_a), load_results(dir_b), seed=args.seed, permutations=args.permutations
    )
    shifted = moved(changes)
    _out(f"# {dir_b} vs {dir_a} (Δ = B - A, × 100; * p < {ALPHA}, paired randomisation test)")
    if not shifted:
        _out(f"no metric moved ({len(changes)} compared)")
        return 0
    _out("| config | group | metric | n | A | B | Δ | p |")
    _out("|---|---|---|---|---|---|---|---|")
    for c in shifted:
        _out(
            f"| {c.config} | {c.group} | {c.metric} | {c.n} | {pct(c.a)} | {pct(c.b)}"
            f" | {signed(c.delta)} | {p_value(c.p)} |"
        )
    up = sum(1 for c in shifted if c.p < ALPHA and c.delta > 0)
    down = sum(1 for c in shifted if c.p < ALPHA and c.delta < 0)
    _out(
        f"\n{len(shifted)} of {len(changes)} metric values moved; significant at p < {ALPHA}:"
        f" {up} up, {down} down"
    )
    return 0
