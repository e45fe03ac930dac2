"""The ``spyglass`` command: serve, demo, ingest, search, collections, settings.

Commands that read or write data open the data directory themselves (the
embedded store is safe to share with running servers), so ``ingest`` works
whether a server is up or not. A user's mistake prints one line and exits
with status 2; nothing here prints a traceback for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from spyglass import __version__
from spyglass.cli import bench as bench_commands
from spyglass.cli.options import setting_options
from spyglass.errors import ConfigError, ProblemError, SpyglassError
from spyglass.settings import (
    Settings,
    load_settings,
    masked_settings,
    settings_json,
    settings_table,
)

if TYPE_CHECKING:
    from spyglass.engine import Engine
    from spyglass.stores.base import IndexState

console = Console()
errors = Console(stderr=True)


@contextmanager
def opened_engine(settings: Settings) -> Iterator[Engine]:
    from spyglass.engine import Engine
    from spyglass.stores import open_store

    store = open_store(settings)
    try:
        yield Engine(settings, store)
    finally:
        store.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spyglass")
def cli() -> None:
    """Spyglass: a self-hosted similarity-search server."""


@cli.command()
@setting_options()
def serve(**overrides: Any) -> None:
    """Serve the HTTP API. Several --workers share one data directory and index."""
    run_server(load_settings(**overrides))


@cli.command()
@setting_options("data_dir", "store", "host", "port", "workers", "insecure")
def demo(**overrides: Any) -> None:
    """Load the demo collection (short articles shipped with Spyglass) and serve it."""
    from spyglass.demo import DOCS_DIR
    from spyglass.demo.swatches import swatch_records
    from spyglass.ingest.loaders import open_source
    from spyglass.ingest.pipeline import ingest
    from spyglass.ingest.records import Source

    if not overrides.get("store"):
        overrides["data_dir"] = overrides.get("data_dir") or Path("spyglass-demo")
    settings = load_settings(**overrides)
    with opened_engine(settings) as engine:
        report = ingest(engine, "demo", open_source(DOCS_DIR), encoder="text")
        records = list(swatch_records())
        pictures = Source(Path("swatches"), len(records), 64, lambda: iter(records))
        colors = ingest(engine, "colors", pictures, encoder="color")
    console.print(
        f"demo collections ready: {report.items} passages from {DOCS_DIR.name}/ in"
        f" {report.seconds:.1f} s, {colors.items} pictures in `colors`"
        f" (data in {settings.data_dir}); open http://{settings.host}:{settings.port}/",
        soft_wrap=True,
    )
    console.print(
        f"try: curl -s http://{settings.host}:{settings.port}/collections/demo/search "
        """-H 'content-type: application/json' -d '{"text": "how do bees make honey", "k": 3}'""",
        soft_wrap=True,
    )
    run_server(settings)


def run_server(settings: Settings) -> None:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from spyglass.auth.guard import open_server_warning
    from spyglass.cli.workers import Workers, listening_sockets
    from spyglass.metrics import multiproc_dir
    from spyglass.middleware.access_log import log_config
    from spyglass.settings import SETTINGS_ENV, cores

    if settings.workers == 0:
        settings = settings.model_copy(update={"workers": cores()})
    warning = open_server_warning(settings)  # refuses an open server on a public address
    os.environ[SETTINGS_ENV] = settings_json(settings)
    where = masked_settings(settings)["store"] if settings.store else settings.data_dir
    console.print(
        f"Spyglass {__version__} on http://{settings.host}:{settings.port} "
        f"({settings.workers} worker{'s' if settings.workers > 1 else ''}, data in "
        f"{where}); API docs at /docs",
        soft_wrap=True,
    )
    if warning:
        console.print(f"[bold yellow]{warning}[/]", soft_wrap=True, highlight=False)
    config = uvicorn.Config(
        "spyglass.app:app_from_environment",
        factory=True,
        http="spyglass.overload.http_protocol:DoorHttpProtocol",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level, json_lines=settings.log_json),
        access_log=False,  # uvicorn's line holds the raw path; ours logs the route template
    )
    with multiproc_dir(settings.workers), suppress(KeyboardInterrupt):
        if settings.workers == 1:
            server = uvicorn.Server(config)
            server.run()
            if not server.started:
                sys.exit(STARTUP_FAILURE)
            return
        try:
            sockets = listening_sockets(settings.host, settings.port, settings.workers)
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
            ) from exc
        Workers(config, sockets).run()


@cli.command(name="ingest")
@click.argument("collection")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--encoder",
    type=click.Choice(["text", "image", "clip", "color", "face", "none"]),
    default=None,
    help="Encoder for a new collection (default: text for text and documents, image for"
    " images, none for vectors).",
)
@click.option(
    "--metric",
    type=click.Choice(["cosine", "ip", "l2"]),
    default=None,
    help="Metric for a new collection (default: the encoder's; cosine for vectors).",
)
@click.option(
    "--quantization",
    type=click.Choice(["none", "half", "sq8", "pq", "binary"]),
    default=None,
    help="How a new collection's index stores vectors (default none; see"
    " docs/embedded-store.md#quantization).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=2000,
    show_default=True,
    help="Rows per transaction; bigger batches load faster (one disk sync each).",
)
@click.option(
    "--kind",
    type=click.Choice(["auto", "documents", "images"]),
    default="auto",
    show_default=True,
    help="How to read a folder holding both documents and images.",
)
@setting_options(
    "data_dir", "store", "config", "encoder_threads", "chunk_tokens", "chunk_overlap", "image_batch"
)
def ingest_command(
    collection: str,
    path: Path,
    encoder: str | None,
    metric: str | None,
    quantization: str | None,
    batch_size: int,
    kind: str,
    **overrides: Any,
) -> None:
    """Load PATH into COLLECTION: JSONL, CSV or Parquet rows, a folder of documents
    (.txt .md .html .pdf .docx) or a folder of images (.jpg .png .webp .gif).

    Rows carry an id, a vector or a text, and payload fields; re-running with the
    same files replaces the items. Documents are cut into chunks of at most
    --chunk-tokens tokens; an unchanged file is skipped on the next run and a
    changed one has its chunks replaced. Images are embedded in batches of
    --image-batch, with their file name and size in the payload. A missing
    collection is created.
    """
    from spyglass.ingest.loaders import open_source
    from spyglass.ingest.pipeline import ingest

    settings = load_settings(**overrides)
    if settings.encoder_threads is None:
        settings = settings.model_copy(update={"encoder_threads": os.cpu_count() or 1})
    # One transaction (one fsync) per batch: bulk loads want big ones, and the
    # server's per-request max_batch does not apply to a local load.
    settings = settings.model_copy(update={"max_batch": max(batch_size, settings.max_batch)})
    source = open_source(
        path,
        batch_size=batch_size,
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
        image_batch=settings.image_batch,
        kind=kind,
    )
    progress = Progress(
        TextColumn(f"ingest {collection} ({source.unit})"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    )
    task = progress.add_task("ingest", total=source.total)
    with opened_engine(settings) as engine, progress:
        report = ingest(
            engine,
            collection,
            source,
            encoder=encoder,
            metric=metric,
            quantization=quantization,
            on_batch=lambda n: progress.advance(task, n),
        )
    console.print(report.summary(), soft_wrap=True)


@cli.command(name="search")
@click.argument("collection")
@click.argument("query")
@click.option("-k", type=click.IntRange(1), default=10, show_default=True, help="Hits to return.")
@click.option(
    "--filter", "filter_json", default=None, help='Payload filter, e.g. \'{"lang": "en"}\'.'
)
@click.option("--exact", is_flag=True, help="Exact (brute-force) search.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@setting_options("data_dir", "store", "config")
def search_command(
    collection: str,
    query: str,
    k: int,
    filter_json: str | None,
    exact: bool,
    as_json: bool,
    **overrides: Any,
) -> None:
    """Search COLLECTION for QUERY (a text, or a JSON array for a vector collection)."""
    settings = load_settings(**overrides)
    flt = _json_option(filter_json, "--filter") if filter_json else None
    body: dict[str, Any] = {"k": k, "filter": flt, "exact": exact}
    if query.lstrip().startswith("["):
        body["vector"] = _json_option(query, "QUERY")
    else:
        body["text"] = query
    from spyglass.schema import SearchIn

    request = SearchIn.model_validate(body)
    with opened_engine(settings) as engine:
        hits = engine.search(collection, [request])[0]
    if as_json:
        rows = [{"id": h.id, "score": h.score, "payload": h.payload} for h in hits]
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("#", "id", "score", "payload / text", title=f"{collection}: {query[:60]}")
    for rank, hit in enumerate(hits, start=1):
        shown = hit.text if hit.text else json.dumps(hit.payload, ensure_ascii=False)
        table.add_row(str(rank), hit.id, f"{hit.score:.4f}", _clip(shown))
    console.print(table)


@cli.command(name="collections")
@setting_options("data_dir", "store", "config")
def collections_command(**overrides: Any) -> None:
    """List the collections in the data directory."""
    settings = load_settings(**overrides)
    with opened_engine(settings) as engine:
        infos = engine.store.list_collections()
        states = [engine.store.index_state(info.spec.name) for info in infos]
    table = Table("name", "items", "dim", "metric", "encoder", "version", "index")
    for info, state in zip(infos, states, strict=True):
        spec = info.spec
        table.add_row(
            spec.name,
            str(info.count),
            str(spec.dim),
            spec.metric,
            spec.encoder,
            str(info.version),
            _index_state(state, spec.index.quantization),
        )
    console.print(table if infos else f"no collections in {settings.data_dir}")


def _index_state(state: IndexState | None, quantization: str) -> str:
    """One line on a collection's index: codes, indexed, tail, deleted, build, beam width."""
    codes = "" if quantization == "none" else f"{quantization}; "
    if state is None:
        return f"{codes}kept by the database"
    line = (
        f"{codes}{state.indexed:,} indexed, {state.tail:,} in the tail, {state.deleted:,} deleted"
    )
    if state.building:
        line += f"; building: {state.build_added:,} of {state.build_to_add:,} added"
    elif state.last_build_s is not None:
        how = "extended" if state.last_build_extended else "built"
        line += f"; last {how} in {state.last_build_s:,.1f} s"
    if state.recall_estimate is not None:
        line += f"; ef {state.ef_search} (recall {state.recall_estimate:.2f})"
    return line


@cli.group(name="keys")
def keys_group() -> None:
    """Create, list and revoke API keys (stored hashed in the data directory)."""


@keys_group.command(name="create")
@click.option(
    "--tenant",
    default="default",
    show_default=True,
    help="The organization whose collections the key sees.",
)
@click.option(
    "--scopes",
    default="read",
    show_default=True,
    help="Comma-separated: read (search, get), write (ingest, delete), admin (keys, /status).",
)
@click.option("--label", default="", help="A note for people: who or what uses the key.")
@setting_options("data_dir", "store", "config")
def keys_create(tenant: str, scopes: str, label: str, **overrides: Any) -> None:
    """Create a key and print it; it is shown this once (only its hash is kept)."""
    from spyglass.auth.keys import open_key_store

    with open_key_store(load_settings(**overrides)) as store:
        new = store.create(tenant, scopes.split(","), label)
    errors.print(
        f"created key {new.info.id} for tenant {new.info.tenant} with scopes "
        f"{','.join(new.info.scopes)}; store it now, it is not shown again:",
        soft_wrap=True,
        highlight=False,
    )
    click.echo(new.key)


@keys_group.command(name="list")
@click.option("--revoked", is_flag=True, help="Include revoked keys.")
@setting_options("data_dir", "store", "config")
def keys_list(revoked: bool, **overrides: Any) -> None:
    """List keys (never their secrets)."""
    from datetime import UTC, datetime

    from spyglass.auth.keys import open_key_store

    with open_key_store(load_settings(**overrides)) as store:
        infos = store.list(include_revoked=revoked)

    def when(ts: float | None) -> str:
        return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")

    table = Table("id", "tenant", "scopes", "label", "created (UTC)", "revoked (UTC)")
    for info in infos:
        table.add_row(
            info.id,
            info.tenant,
            ",".join(info.scopes),
            info.label,
            when(info.created_at),
            when(info.revoked_at),
        )
    console.print(table if infos else "no active API keys (--revoked shows revoked ones)")


@keys_group.command(name="revoke")
@click.argument("key_id")
@setting_options("data_dir", "store", "config")
def keys_revoke(key_id: str, **overrides: Any) -> None:
    """Revoke KEY_ID; running servers refuse it from their next request on."""
    from spyglass.auth.keys import open_key_store

    with open_key_store(load_settings(**overrides)) as store:
        info = store.revoke(key_id)
    console.print(f"revoked key {info.id} (tenant {info.tenant})", highlight=False)


@cli.command(name="migrate")
@click.option(
    "--from",
    "source",
    required=True,
    help="The store to copy from: a data directory or a postgresql:// URL.",
)
@click.option(
    "--to",
    "destination",
    required=True,
    help="The store to copy to: a data directory or a postgresql:// URL.",
)
@click.option(
    "--collection",
    "names",
    multiple=True,
    help="A collection to copy (repeat for several); default: every collection.",
)
@click.option(
    "--checkpoint-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Where the progress of an interrupted copy is kept, to resume from it.",
)
@setting_options("config")
def migrate_command(
    source: str,
    destination: str,
    names: tuple[str, ...],
    checkpoint_dir: Path,
    **overrides: Any,
) -> None:
    """Copy collections between stores (embedded and PostgreSQL, either way) with their
    vectors, texts and payloads: nothing is embedded again.

    Items are copied in pages of 1,000; an interrupted copy started again with the
    same --from and --to goes on where it stopped. At the end the item counts of both
    sides are compared. Copy from a store that is not being written to; API keys are
    not copied.
    """
    from spyglass.migrate import checkpoint_path, migrate

    if source == destination:
        raise click.UsageError("--from and --to name the same store")
    # Both sides on their primaries: a lagging replica would miscount, and the configured
    # replicas belong to the configured store, which --from or --to may not be.
    settings = load_settings(**overrides).model_copy(update={"store_replicas": ""})
    checkpoint = checkpoint_path(checkpoint_dir, source, destination)
    from spyglass.stores import open_store

    from_store = open_store(settings, source)
    try:
        to_store = open_store(settings, destination)
        try:
            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=errors,
                transient=True,
            )
            tasks: dict[str, Any] = {}

            def started(name: str, total: int) -> None:
                tasks["now"] = progress.add_task(f"migrate {name}", total=total)

            with progress:
                copied = migrate(
                    from_store,
                    to_store,
                    checkpoint,
                    names,
                    on_start=started,
                    on_page=lambda n: progress.advance(tasks["now"], n),
                )
        finally:
            to_store.close()
    finally:
        from_store.close()
    for result in copied:
        resumed = f" (resumed after id {result.resumed_after!r})" if result.resumed_after else ""
        console.print(
            f"copied {result.name}: {result.items} items{resumed}; counts match",
            highlight=False,
            soft_wrap=True,
        )
    if not copied:
        console.print("no collections to copy")


@cli.command(name="settings")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (docs/settings.md).")
def settings_command(markdown: bool) -> None:
    """List every setting with its environment variable, default and meaning."""
    if markdown:
        from spyglass.cli.reference import settings_markdown

        click.echo(settings_markdown(), nl=False)
        return
    table = Table("setting", "environment variable", "default", "meaning")
    for row in settings_table():
        table.add_row(*row)
    console.print(table)


bench_commands.install(cli)


def _json_option(raw: str, name: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} is not valid JSON: {exc}") from exc


def _clip(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def main() -> None:
    """Entry point: run the CLI, turning Spyglass errors into one line and an exit status."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        errors.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ProblemError as exc:
        errors.print(f"error: {exc.detail}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except SpyglassError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        errors.print(
            f"error: {where}: {first['msg']}", markup=False, highlight=False, soft_wrap=True
        )
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
