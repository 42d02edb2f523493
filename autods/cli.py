"""``autods``: build on this machine, submit to a service, watch, and run workers."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from autods.core.records import JobRefused, JobState

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Build training-ready multimodal datasets.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
console = Console()

Sources = Annotated[list[str], typer.Argument(help="Folders, URL/text lists, or s3:// prefixes.")]
NoEmbed = Annotated[bool, typer.Option("--no-embed", help="Skip CLIP embeddings.")]
Lfs = Annotated[str | None, typer.Option(help="Module with Snorkel labelling functions.")]
ChunkSize = Annotated[int | None, typer.Option(help="Items per task.")]
BatchSize = Annotated[int | None, typer.Option(help="Items per chord (one publish step).")]
ShardSize = Annotated[int | None, typer.Option(help="Samples per shard.")]
NearK = Annotated[int | None, typer.Option(help="pHash Hamming distance of a near duplicate.")]
Resize = Annotated[int | None, typer.Option(help="Re-encode images larger than this side.")]
_CURATION = "Curation"
FiltersFile = Annotated[Path | None, typer.Option(
    "--filters", help="YAML file of quality filter bounds (options below override it).",
    rich_help_panel=_CURATION)]
MinSide = Annotated[int | None, typer.Option(help="Drop images whose shorter side is below.",
                                             rich_help_panel=_CURATION)]
MaxSide = Annotated[int | None, typer.Option(help="Drop images whose longer side is above.",
                                             rich_help_panel=_CURATION)]
MaxAspect = Annotated[float | None, typer.Option(
    help="Drop images whose longer/shorter side ratio is above.", rich_help_panel=_CURATION)]
MinBytes = Annotated[int | None, typer.Option(help="Drop files smaller than this.",
                                              rich_help_panel=_CURATION)]
MaxBytes = Annotated[int | None, typer.Option(help="Drop files larger than this.",
                                              rich_help_panel=_CURATION)]
MinCaption = Annotated[int | None, typer.Option(help="Drop images with shorter captions.",
                                                rich_help_panel=_CURATION)]
MaxCaption = Annotated[int | None, typer.Option(help="Drop images with longer captions.",
                                                rich_help_panel=_CURATION)]
MinText = Annotated[int | None, typer.Option(help="Drop texts shorter than this (chars).",
                                             rich_help_panel=_CURATION)]
MaxText = Annotated[int | None, typer.Option(help="Drop texts longer than this (chars).",
                                             rich_help_panel=_CURATION)]
Lang = Annotated[str | None, typer.Option(
    help="Keep texts in these languages only (ISO 639-1, comma-separated).",
    rich_help_panel=_CURATION)]
MinClip = Annotated[float | None, typer.Option(
    help="Drop captioned images whose CLIP image-caption cosine is below.",
    rich_help_panel=_CURATION)]
Split = Annotated[str | None, typer.Option(
    help="train,val[,test] fractions (e.g. 0.8,0.1,0.1): a split column per sample.",
    rich_help_panel=_CURATION)]
Stratify = Annotated[bool, typer.Option(help="Split each label in the given proportions.",
                                        rich_help_panel=_CURATION)]
Semantic = Annotated[bool | None, typer.Option(
    "--semantic/--no-semantic", help="Semantic dedup by embedding, for texts and images "
    "(default: texts; images too with real CLIP weights).", rich_help_panel=_CURATION)]
SemanticThreshold = Annotated[float | None, typer.Option(
    help="Cosine at or above which a sample duplicates a kept one.",
    rich_help_panel=_CURATION)]
MinhashThreshold = Annotated[float | None, typer.Option(
    help="Estimated Jaccard at or above which a text near-duplicates a kept one.",
    rich_help_panel=_CURATION)]


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])


def _importable_here() -> None:
    """Modules named on the command line (``--lfs mypkg.lfs``) are found in the current
    folder, as with ``python -m`` and as in the workers this CLI starts: the job loads its
    labelling module here before any work, and an installed script has no such path."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _options(no_embed: bool, lfs: str | None, chunk_size, batch_size, shard_size, near_k,
             resize, curation: dict) -> dict:
    """Job options from the command line; unset ones take the configured defaults."""
    opts = {"lfs": lfs, "chunk_size": chunk_size, "batch_size": batch_size,
            "shard_size": shard_size, "near_k": near_k, "resize": resize}
    if no_embed:
        opts["embed"] = False
    bounds = {k: curation.pop(k) for k in list(curation) if k in _FILTER_OPTIONS}
    path = curation.pop("filters")
    if path is not None or any(v is not None for v in bounds.values()):
        from autods.core.filters import Filters

        try:
            opts["filters"] = Filters.load(path, **{_FILTER_OPTIONS[k]: v
                                                    for k, v in bounds.items()})
        except (OSError, ValueError) as exc:
            raise JobRefused(" ".join(str(exc).split())) from None
    semantic = curation.pop("semantic")
    if semantic is not None:
        opts["semantic_texts"] = opts["semantic_images"] = semantic
    return {**opts, **curation}


#: Command-line option -> ``Filters`` field.
_FILTER_OPTIONS = {"min_side": "min_side", "max_side": "max_side", "max_aspect": "max_aspect",
                   "min_bytes": "min_bytes", "max_bytes": "max_bytes",
                   "min_caption_len": "min_caption_len", "max_caption_len": "max_caption_len",
                   "min_text_len": "min_text_len", "max_text_len": "max_text_len",
                   "lang": "languages", "min_clip_score": "min_clip_score"}


def _curation(filters, min_side, max_side, max_aspect, min_bytes, max_bytes, min_caption_len,
              max_caption_len, min_text_len, max_text_len, lang, min_clip_score, split,
              stratify, semantic, semantic_threshold, minhash_threshold) -> dict:
    return {"filters": filters, "min_side": min_side, "max_side": max_side,
            "max_aspect": max_aspect, "min_bytes": min_bytes, "max_bytes": max_bytes,
            "min_caption_len": min_caption_len, "max_caption_len": max_caption_len,
            "min_text_len": min_text_len, "max_text_len": max_text_len, "lang": lang,
            "min_clip_score": min_clip_score, "split": split,
            "stratify": stratify or None, "semantic": semantic,
            "semantic_threshold": semantic_threshold, "minhash_threshold": minhash_threshold}


@app.command()
def build(
    sources: Sources,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder of the dataset.")],
    dataset: Annotated[str | None, typer.Option(help="Dataset name (default: folder name).")]
    = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: cores).")]
    = None,
    no_embed: NoEmbed = False, lfs: Lfs = None, chunk_size: ChunkSize = None,
    batch_size: BatchSize = None, shard_size: ShardSize = None, near_k: NearK = None,
    resize: Resize = None, filters: FiltersFile = None, min_side: MinSide = None,
    max_side: MaxSide = None, max_aspect: MaxAspect = None, min_bytes: MinBytes = None,
    max_bytes: MaxBytes = None, min_caption_len: MinCaption = None,
    max_caption_len: MaxCaption = None, min_text_len: MinText = None,
    max_text_len: MaxText = None, lang: Lang = None, min_clip_score: MinClip = None,
    split: Split = None, stratify: Stratify = False, semantic: Semantic = None,
    semantic_threshold: SemanticThreshold = None, minhash_threshold: MinhashThreshold = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the whole pipeline here, with no server: shards, manifests and an index in OUT."""
    # Not autods.api: the embedded run starts its worker before it imports the database
    # layer, and the summary table's module would import that layer first.
    from autods.embedded import run_embedded

    _logging(verbose)
    _importable_here()
    curation = _curation(filters, min_side, max_side, max_aspect, min_bytes, max_bytes,
                         min_caption_len, max_caption_len, min_text_len, max_text_len, lang,
                         min_clip_score, split, stratify, semantic, semantic_threshold,
                         minhash_threshold)
    try:
        status = run_embedded(sources, out, dataset=dataset, workers=workers,
                              progress=not quiet,
                              **_options(no_embed, lfs, chunk_size, batch_size, shard_size,
                                         near_k, resize, curation))
    except KeyboardInterrupt:
        console.print("interrupted: run the same command again to resume")
        raise typer.Exit(130) from None
    except JobRefused as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    from autods.progress import summary_table

    console.print(summary_table(status))
    if status.status != JobState.SUCCEEDED:
        console.print(f"[red]job failed:[/red] {status.error}")
        raise typer.Exit(1)
    console.print(f"dataset index: {Path(out) / 'index.json'}")


@app.command()
def submit(
    sources: Sources,
    dataset: Annotated[str, typer.Option(help="Dataset to add the samples to.")],
    output_url: Annotated[str | None, typer.Option(help="Where the dataset's shards go.")]
    = None,
    wait: Annotated[bool, typer.Option(help="Wait and show progress.")] = False,
    no_embed: NoEmbed = False, lfs: Lfs = None, chunk_size: ChunkSize = None,
    batch_size: BatchSize = None, shard_size: ShardSize = None, near_k: NearK = None,
    resize: Resize = None, filters: FiltersFile = None, min_side: MinSide = None,
    max_side: MaxSide = None, max_aspect: MaxAspect = None, min_bytes: MinBytes = None,
    max_bytes: MaxBytes = None, min_caption_len: MinCaption = None,
    max_caption_len: MaxCaption = None, min_text_len: MinText = None,
    max_text_len: MaxText = None, lang: Lang = None, min_clip_score: MinClip = None,
    split: Split = None, stratify: Stratify = False, semantic: Semantic = None,
    semantic_threshold: SemanticThreshold = None, minhash_threshold: MinhashThreshold = None,
) -> None:
    """Enqueue a job on the configured broker (AUTODS_BROKER_URL) and print its id."""
    from autods.api import submit as do_submit
    from autods.progress import summary_table

    _logging(False)
    _importable_here()
    curation = _curation(filters, min_side, max_side, max_aspect, min_bytes, max_bytes,
                         min_caption_len, max_caption_len, min_text_len, max_text_len, lang,
                         min_clip_score, split, stratify, semantic, semantic_threshold,
                         minhash_threshold)
    try:
        job = do_submit(sources, dataset, output_url=output_url,
                        **_options(no_embed, lfs, chunk_size, batch_size, shard_size, near_k,
                                   resize, curation))
    except JobRefused as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"job {job.id}")
    if wait:
        status = job.wait(progress=True)
        console.print(summary_table(status))
        if status.status != JobState.SUCCEEDED:
            raise typer.Exit(1)


@app.command()
def status(
    job_id: int,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder of an `autods build` (its own database).")] = None,
) -> None:
    """Per-stage counts of a job, from the database (AUTODS_DATABASE_URL, or a build's)."""
    from autods.pipeline.runtime import Runtime, get_runtime
    from autods.pipeline.status import job_status
    from autods.progress import summary_table

    if out is not None:
        from autods.embedded import embedded_settings

        if not (out / ".autods" / "autods.sqlite").exists():
            console.print(f"[red]no autods build in {out}[/red]")
            raise typer.Exit(2)
        rt = Runtime(embedded_settings(out))
    else:
        rt = get_runtime()
    try:
        st = job_status(rt, job_id)
    except KeyError:
        console.print(f"[red]no job {job_id}[/red]")
        raise typer.Exit(2) from None
    if as_json:
        console.print_json(json.dumps(st.as_dict(), default=str))
        return
    console.print(summary_table(st))
    console.print("stages: " + ", ".join(f"{k} {v}/{st.n_items}" for k, v in st.stages.items()))
    console.print("batches: " + ", ".join(f"{k} {v}" for k, v in st.batches.items()))


@app.command()
def worker(
    queues: Annotated[str | None, typer.Option(
        help="Comma-separated queues to consume (default: every queue of the stage table).")]
    = None,
    concurrency: Annotated[int | None, typer.Option(help="Processes (default: cores).")] = None,
    loglevel: Annotated[str, typer.Option()] = "INFO",
    hostname: Annotated[str | None, typer.Option(help="Node name.")] = None,
    log_json: Annotated[bool, typer.Option(
        "--log-json", help="Log JSON lines with job, batch and chunk ids "
        "(AUTODS_LOG_JSON=1).")] = False,
) -> None:
    """Start a Celery worker on the given queues, with task events on (for Flower)."""
    if log_json:
        os.environ["AUTODS_LOG_JSON"] = "1"  # read by the worker's start-up and its pool
    from autods.pipeline.stagetable import queues as all_queues
    from autods.tasks.worker import run_worker

    consumed = queues.split(",") if queues else list(all_queues())
    raise typer.Exit(run_worker(consumed, hostname or f"{consumed[0]}@%h", concurrency,
                                loglevel))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Start the REST API (needs AUTODS_API_TOKEN; OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from autods.config import Settings
    from autods.rest import create_app
    from autods.rest_guard import is_loopback

    settings = Settings()
    if settings.api.insecure_local and not settings.api.token and not is_loopback(host):
        console.print(f"[red]AUTODS_API_INSECURE_LOCAL=1 serves on loopback only, not on "
                      f"{host}[/red]: set AUTODS_API_TOKEN to listen there")
        raise typer.Exit(2)
    _logging(True)
    uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=True)


DatasetRef = Annotated[str, typer.Argument(
    help="Output folder, s3:// location, or dataset name in the database.")]
VersionOpt = Annotated[int | None, typer.Option("--version", help="Version (default: latest).")]


def _open(ref: str):
    from autods.core.versions import DatasetNotFound
    from autods.dataset import open_dataset

    try:
        ds = open_dataset(ref)
        ds.version()
    except DatasetNotFound as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return ds


def _refuse(exc: Exception) -> typer.Exit:
    console.print(f"[red]{exc}[/red]")
    return typer.Exit(2)


@app.command()
def versions(dataset: DatasetRef) -> None:
    """A dataset's versions, oldest first: parent, job, shards and samples."""
    from rich.table import Table

    table = Table("version", "parent", "kind", "job", "shards", "samples", "added", "removed",
                  "created")
    for v in _open(dataset).versions():
        table.add_row(*(str(v[c]) if v[c] is not None else "-" for c in (
            "version", "parent", "kind", "job", "shards", "samples", "added", "removed",
            "created_at")))
    console.print(table)


@app.command()
def schema(dataset: DatasetRef, version: VersionOpt = None) -> None:
    """The sample schema a version declares and every column its manifests have."""
    from rich.table import Table

    found = _open(dataset).schema(version=version)
    declared = found["declared"] or {}
    fields = {f["name"]: f for f in declared.get("fields", [])}
    console.print(f"schema {declared.get('name', '(undeclared)')} "
                  f"version {declared.get('version', '-')}")
    table = Table("column", "type", "aggregate", "declared since")
    for name, arrow_type in sorted(found["columns"].items()):
        f = fields.get(name)
        table.add_row(name, arrow_type, (f or {}).get("aggregate") or "-",
                      str(f["since"]) if f else "source field")
    console.print(table)


@app.command()
def query(
    dataset: DatasetRef,
    predicate: Annotated[str, typer.Argument(
        help="SQL boolean expression over manifest columns, e.g. \"label = 'cat'\".")],
    version: VersionOpt = None,
    columns: Annotated[str | None, typer.Option(
        help="Comma-separated columns to return besides the location ('*': all).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json, jsonl or parquet.")]
    = "table",
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write here instead of stdout (parquet needs it).")] = None,
    explain: Annotated[bool, typer.Option(help="Print shards total, skipped and read.")]
    = False,
) -> None:
    """Samples matching PREDICATE, from the manifests: shards whose aggregates cannot match
    are skipped before any parquet is read."""
    from autods.core.predicate import PredicateError
    from autods.output import write_rows

    if fmt not in ("table", "json", "jsonl", "parquet"):
        raise _refuse(ValueError(f"unknown format {fmt!r}"))
    if fmt == "parquet" and output is None:
        raise _refuse(ValueError("--format parquet needs --output FILE"))
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    try:
        result = _open(dataset).query(predicate, version=version, columns=cols, limit=limit)
    except PredicateError as exc:
        raise _refuse(exc) from None
    write_rows(result.table, fmt, output, console)
    if explain:
        e = result.explain
        Console(stderr=True).print(
            f"version {result.version}: shards total {e.shards_total}, skipped "
            f"{e.shards_skipped}, read {e.shards_read}; rows {e.rows}")


@app.command()
def get(
    dataset: DatasetRef,
    key: Annotated[str, typer.Argument(help="Sample key.")],
    version: VersionOpt = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the members as KEY.EXT files into this folder.")] = None,
) -> None:
    """One sample's members, read from its byte range (without reading its shard)."""
    try:
        members = _open(dataset).get(key, version=version)
    except KeyError as exc:
        raise _refuse(exc) from None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for ext, data in members.items():
            (out / f"{key.replace('/', '_')}.{ext}").write_bytes(data)
    for ext, data in members.items():
        text = data.decode("utf-8", "replace") if ext in ("json", "txt", "cls") else None
        console.print(f"{key}.{ext}: {len(data)} bytes" + (f"  {text[:200]}" if text else ""))


@app.command()
def materialize(
    dataset: DatasetRef,
    predicate: Annotated[str, typer.Argument(help="SQL boolean expression (see query).")],
    name: Annotated[str, typer.Option(help="View name: written to DATASET/views/NAME.")],
    version: VersionOpt = None,
    shard_size: ShardSize = None,
) -> None:
    """Write the matching samples as a dataset of their own (byte ranges copied, cached by
    the predicate's hash and the source version)."""
    from autods.core.predicate import PredicateError

    try:
        view, target = _open(dataset).materialize(predicate, name, version=version,
                                                  shard_size=shard_size or 1000)
    except (PredicateError, ValueError) as exc:
        raise _refuse(exc) from None
    v = view.version
    state = "cached" if view.cached else "written"
    console.print(f"view {name} version {v.number} ({state}): {v.num_samples} samples in "
                  f"{len(v.shards)} shards; index {target.index_url()}")


@app.command()
def forget(
    dataset: DatasetRef,
    keys: Annotated[list[str] | None, typer.Argument(help="Sample keys to forget.")] = None,
    where: Annotated[str | None, typer.Option(
        help="Also forget every sample matching this predicate.")] = None,
) -> None:
    """A new version without these samples (their shards rewritten), their raw objects
    deleted and a tombstone left; older versions keep them until `autods gc`."""
    from autods.core.predicate import PredicateError

    wanted = list(keys or [])
    if where:
        try:
            wanted += _open(dataset).query(where).table["key"].to_pylist()
        except PredicateError as exc:
            raise _refuse(exc) from None
    if not wanted:
        raise _refuse(ValueError("nothing to forget: give keys or --where"))
    folder = Path(dataset)
    if (folder / ".autods" / "autods.sqlite").exists():
        from autods.embedded import forget_embedded

        plan, status = forget_embedded(folder, wanted)
    else:
        plan, status = _forget_service(dataset, wanted)
    if plan.missing:
        console.print(f"not in the latest version: {', '.join(plan.missing)}")
    if status is None:
        console.print("nothing forgotten")
        raise typer.Exit(1 if plan.missing else 0)
    if status.status != JobState.SUCCEEDED:
        console.print(f"[red]job {status.job_id} failed:[/red] {status.error}")
        raise typer.Exit(1)
    console.print(f"forgot {len(plan.found)} sample(s) from {len(plan.shards)} shard(s) "
                  f"(job {status.job_id}); latest version {_open(dataset).version().number}")


def _forget_service(dataset: str, keys: list[str]):
    """Forget through the configured service: plan here, run on its workers, wait."""
    from autods.api import Job
    from autods.pipeline.mapjobs import DatasetUnknown, dataset_name, plan_forget
    from autods.pipeline.runtime import get_runtime
    from autods.tasks.canvas import dispatch

    rt = get_runtime()
    try:
        plan = plan_forget(rt, dataset_name(rt, dataset), keys)
    except DatasetUnknown as exc:
        raise _refuse(exc) from None
    if plan.job_id is None:
        return plan, None
    dispatch(rt, plan.job_id)
    return plan, Job(plan.job_id, rt).wait()


def _runtime_for(dataset: str):
    """The runtime that holds ``dataset`` and its name there: the build's own in an output
    folder, else the configured service's."""
    from autods.api import runtime_for
    from autods.pipeline.mapjobs import DatasetUnknown

    try:
        return runtime_for(dataset)
    except DatasetUnknown as exc:
        raise _refuse(exc) from None


@app.command()
def why(
    dataset: DatasetRef,
    ref: Annotated[str, typer.Argument(help="A sample key (or content hash) or an input URI.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """What became of an input: published (where), or rejected, filtered or dropped as a
    duplicate (the rule, its score, and the kept sample it duplicates)."""
    from autods.pipeline.explain import explain

    rt, name = _runtime_for(dataset)
    fates = explain(rt, name, ref)
    if as_json:
        console.print_json(json.dumps([f.as_dict() for f in fates]))
    for fate in [] if as_json else fates:
        console.print(f"job {fate.job} #{fate.ordinal} {fate.uri}"
                      + (f" [{fate.key}]" if fate.key else ""), highlight=False)
        console.print(f"  {fate.sentence()}", highlight=False)
    if not fates:
        raise _refuse(LookupError(f"nothing in {name} is {ref!r}"))


@app.command()
def lineage(
    dataset: DatasetRef,
    ref: Annotated[str, typer.Argument(help="A sample key (or content hash) or an input URI.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Where a sample came from and where it is: every input that carried it (and its fate),
    its features, LF votes and labels, and its shard and byte offset in every version."""
    from autods.cli_lineage import lineage_view
    from autods.pipeline.lineage import lineage as trace

    _importable_here()  # the job's LF module names its votes
    rt, name = _runtime_for(dataset)
    found = trace(rt, name, ref)
    if not found:
        raise _refuse(LookupError(f"nothing in {name} is {ref!r}"))
    if as_json:
        console.print_json(json.dumps([lin.to_dict() for lin in found]))
    for lin in [] if as_json else found:
        console.print(lineage_view(lin))


@app.command()
def report(
    dataset: DatasetRef,
    version: Annotated[int | None, typer.Option(
        "--version", help="Only the jobs that built the dataset up to this version.")] = None,
    job: Annotated[int | None, typer.Option("--job", help="Only this build job.")] = None,
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
) -> None:
    """Write one self-contained HTML page about the dataset: the funnel of inputs, duplicate
    clusters, rejects, labels and LFs, stage throughput and queue waits, embedding map."""
    from autods.pipeline.report import write_report

    _importable_here()
    rt, name = _runtime_for(dataset)
    try:
        write_report(rt, name, out, version=version, job=job)
    except LookupError as exc:
        raise _refuse(exc) from None
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", highlight=False)


@app.command()
def gc(
    dataset: DatasetRef,
    keep: Annotated[int, typer.Option(help="Versions to keep (the newest).")] = 1,
) -> None:
    """Remove all but the newest KEEP versions and the shards only they reference."""
    try:
        done = _open(dataset).gc(keep)
    except ValueError as exc:
        raise _refuse(exc) from None
    console.print(f"removed {done['versions_removed']} version(s) and "
                  f"{done['objects_deleted']} object(s)")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (idempotent)."""
    from autods.db.session import upgrade
    from autods.pipeline.runtime import get_runtime

    upgrade(get_runtime().settings.database.url)
    console.print("database schema is up to date")


def _labelling_commands() -> None:
    from autods.cli_labelling import label_studio_app, lf_report, relabel

    app.command("lf-report")(lf_report)
    app.command("relabel")(relabel)
    app.add_typer(label_studio_app, name="label-studio")


_labelling_commands()

def main() -> None:
    """The ``autods`` command. A finished command leaves at once, its output flushed and
    its logging shut down: tearing down the modules a build imports (SQLAlchemy, pyarrow,
    pandas, Celery) took the interpreter 0.4-0.7 s after the summary was printed."""
    try:
        app()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(f"{exc.code}\n")
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    else:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
