"""The ``convmem`` command: thin over the library and the REST API.

convmem serve  [--host H] [--port P] [--data-dir DIR]
convmem load   PATH [--format jsonl|locomo] [--url URL] [--tenant T] [--data-dir DIR]
convmem search QUERY [--user U] [--conversation C] [--k N] [--mode M] [--url URL]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx

from convmem.eval_cli import add_eval_command
from convmem.settings import Settings
from indexer.errors import IndexerError
from indexer.loaders import LoadError, read_any
from indexer.models import UtteranceIn

DEFAULT_URL = "http://127.0.0.1:8080"


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"convmem: error: {message}\n")
    return code


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    for name in ("host", "port", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    # DATABASE_URL is the conventional name; CONVMEM_POSTGRES__URL wins if both are set.
    if os.environ.get("DATABASE_URL") and not os.environ.get("CONVMEM_POSTGRES__URL"):
        overrides["postgres"] = {"url": os.environ["DATABASE_URL"]}
    return Settings(**overrides)  # type: ignore[arg-type]  # validated by pydantic


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from convmem.wiring import build_services
    from query_service.app import create_app

    settings = _settings(args)
    app = create_app(services_factory=lambda: build_services(settings), api_keys=settings.key_map())
    _out(
        f"convmem: serving on http://{settings.host}:{settings.port} (data in {settings.data_dir})"
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    path = Path(args.path)
    try:
        utterances = list(read_any(path, args.format))
    except LoadError as exc:
        return _fail(str(exc))
    if not utterances:
        return _fail(f"{path}: no utterances found")
    bar = tqdm(total=len(utterances), unit="utt", desc=f"loading {path.name}", file=sys.stderr)
    try:
        if args.url:
            seq = _load_over_http(args.url, args.api_key, utterances, bar.update)
        else:
            seq = _load_local(args, utterances, bar.update)
    except (httpx.HTTPError, IndexerError, ValueError) as exc:
        return _fail(str(exc))
    finally:
        bar.close()
    _out(f"loaded {len(utterances)} utterances (seq {seq})")
    return 0


def _load_over_http(
    url: str, api_key: str | None, utterances: Sequence[UtteranceIn], progress: object
) -> int:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    seq = 0
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for chunk in _chunks(utterances, 500):
            body = {"utterances": [_utterance_json(u) for u in chunk]}
            resp = client.post("/v1/utterances", json=body)
            if resp.status_code >= 400:
                raise ValueError(f"{resp.status_code}: {resp.json().get('detail', resp.text)}")
            seq = int(resp.json()["seq"])
            progress(len(chunk))  # type: ignore[operator]  # tqdm.update
    return seq


def _load_local(
    args: argparse.Namespace, utterances: Sequence[UtteranceIn], progress: object
) -> int:
    from convmem.wiring import build_embedder, database_url, load_utterances
    from indexer.ingest import Ingestor
    from indexer.pg_store import PgStore

    settings = _settings(args)
    closers: list = []  # type: ignore[type-arg]
    try:
        store = PgStore.connect(database_url(settings, closers))
        closers.append(store.close)
        ingestor = Ingestor(store=store, embedder=build_embedder(settings))
        load_utterances(ingestor, args.tenant, utterances, progress=progress)  # type: ignore[arg-type]
        return store.max_seq()
    finally:
        for close in reversed(closers):
            close()


def _utterance_json(u: UtteranceIn) -> dict[str, object]:
    d: dict[str, object] = {
        "id": u.id,
        "conversation_id": u.conversation_id,
        "speaker": u.speaker,
        "role": u.role.value,
        "text": u.text,
        "started_at": u.started_at.isoformat(),
    }
    for name in ("user_id", "agent_id"):
        if getattr(u, name) is not None:
            d[name] = getattr(u, name)
    if u.ended_at is not None:
        d["ended_at"] = u.ended_at.isoformat()
    return d


def _chunks(items: Sequence[UtteranceIn], n: int) -> Iterable[Sequence[UtteranceIn]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def cmd_search(args: argparse.Namespace) -> int:
    filters: dict[str, object] = {}
    if args.user:
        filters["user_id"] = args.user
    if args.conversation:
        filters["conversation_id"] = args.conversation
    body = {"query": args.query, "k": args.k, "mode": args.mode, "filters": filters}
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        resp = httpx.post(f"{args.url}/v1/search", json=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach {args.url}: {exc}")
    data = resp.json()
    if resp.status_code >= 400:
        return _fail(f"{resp.status_code} {data.get('title')}: {data.get('detail')}")
    if args.json:
        _out(json.dumps(data, indent=2))
        return 0
    for i, hit in enumerate(data["hits"], 1):
        _out(
            f"{i:2}. [{hit['score']:.4f}] {hit['speaker']} ({hit['conversation_id']}, "
            f"{hit['started_at'][:10]}): {hit['text']}"
        )
    if data["degraded"]:
        _out(f"degraded: {', '.join(data['degraded'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="convmem", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the API (embedded PostgreSQL unless one is configured)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--data-dir", type=Path, dest="data_dir")
    s.set_defaults(func=cmd_serve)

    ld = sub.add_parser("load", help="load utterances from JSONL or LoCoMo JSON")
    ld.add_argument("path")
    ld.add_argument("--format", choices=["jsonl", "locomo"])
    ld.add_argument("--url", help="a running service (default: write to the local store)")
    ld.add_argument("--api-key", dest="api_key")
    ld.add_argument("--tenant", default="default", help="tenant for local loads")
    ld.add_argument("--data-dir", type=Path, dest="data_dir")
    ld.set_defaults(func=cmd_load)

    q = sub.add_parser("search", help="search a running service")
    q.add_argument("query")
    q.add_argument("--user")
    q.add_argument("--conversation")
    q.add_argument("--k", type=int, default=10)
    q.add_argument("--mode", choices=["hybrid", "lexical", "dense"], default="hybrid")
    q.add_argument("--url", default=DEFAULT_URL)
    q.add_argument("--api-key", dest="api_key")
    q.add_argument("--json", action="store_true", help="print the raw response")
    q.set_defaults(func=cmd_search)
    add_eval_command(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the entry point turns any failure into a message
        return _fail(str(exc), 1)


if __name__ == "__main__":
    raise SystemExit(main())
