"""The REST API: submit and watch jobs, read datasets, receive bucket notifications.

Every route but the health checks and the OpenAPI document needs
``Authorization: Bearer <AUTODS_API_TOKEN>`` (the scheme in any case). MinIO's webhook may
send its ``auth_token`` without the ``Bearer`` word; both forms are accepted. The token and
the body size are checked before the body is read (``autods.rest_guard``). Jobs start
through the same path as ``autods.submit``; every refusal is a 4xx with ``{"detail": ...}``
and leaves no row behind.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import select, text

from autods.config import Settings
from autods.core.embed import WeightsUnavailable
from autods.core.filters import Filters
from autods.core.records import JobRefused, OutputConflict, SourceDenied, SourceNotFound
from autods.core.s3events import parse_notification
from autods.core.sources import BUCKET_PATTERN
from autods.db.models import Dataset
from autods.db.session import session_scope
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime
from autods.pipeline.status import job_status
from autods.rest_guard import MIN_TOKEN_CHARS, RequestGuard
from autods.version import VERSION

if TYPE_CHECKING:
    from autods.dataset import Dataset as DatasetFiles

_DATASET = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
# Printable text only: no NUL or other control characters in a source or output URL.
_CHAR = r"[^\x00-\x1f\x7f]"
_URL = rf"^{_CHAR}+$"
# What a refused field needs, added to the validation message.
_HINTS = {
    "sources": "use s3://bucket/prefix/ (local paths need AUTODS_API_ALLOW_LOCAL_SOURCES=1)",
    "output_url": "must lie under AUTODS_API_OUTPUT_PREFIXES",
    "lfs": "labelling modules must be listed in AUTODS_API_LFS_ALLOWED",
}
_OPEN_PATHS = ("/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect",
               "/redoc")
_MAX_ID = 2**31 - 1  # jobs.id is a 32-bit integer column


class Error(BaseModel):
    """Every refusal: a status code and one message."""

    detail: str


_ERRORS = {code: {"model": Error} for code in (400, 401, 403, 404, 409, 413, 422)}
_REFUSAL_STATUS = ((OutputConflict, status.HTTP_409_CONFLICT),
                   (WeightsUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
                   (SourceNotFound, status.HTTP_404_NOT_FOUND),
                   (SourceDenied, status.HTTP_403_FORBIDDEN))


class Options(BaseModel):
    """Per-job overrides of the configured defaults."""

    # Python's re: the split's pattern needs a lookahead (some share is not zero).
    model_config = ConfigDict(regex_engine="python-re")

    embed: bool | None = None
    lfs: str | None = Field(default=None, max_length=200)
    chunk_size: int | None = Field(default=None, ge=1, le=100_000)
    batch_size: int | None = Field(default=None, ge=1, le=10_000_000)
    shard_size: int | None = Field(default=None, ge=1, le=1_000_000)
    near_k: int | None = Field(default=None, ge=0, le=15)
    resize: int | None = Field(default=None, ge=16, le=16_384)
    text_near: bool | None = None
    minhash_threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    semantic_texts: bool | None = None
    semantic_images: bool | None = None
    semantic_threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    filters: Filters | None = Field(default=None, description=(
        "Quality filters: the same bounds as the CLI options and the YAML file"))
    split: str | None = Field(
        default=None, max_length=100,
        pattern=r"^(?=[0-9.,]*[1-9])[0-9]*\.?[0-9]+(,[0-9]*\.?[0-9]+){1,2}$",
        description="train,val[,test] shares, e.g. 0.8,0.1,0.1 (scaled to sum to 1)")
    stratify: bool | None = None


def _job_request(settings: Settings) -> type[BaseModel]:
    """The body of ``POST /jobs`` under this server's rules, declared in the schema (so a
    request the schema accepts is never refused by a rule it does not state): sources are
    S3 prefixes unless local ones are allowed, an output location lies under an allowed
    prefix, a labelling module is one of the allowed."""
    api = settings.api
    source = _URL if api.allow_local_sources else rf"^s3://{BUCKET_PATTERN}(/{_CHAR}*)?$"
    prefixes = _output_prefixes(settings)
    alternatives = [re.escape(p) for p in prefixes] + (["file:"] if api.allow_local_sources
                                                        else [])
    output = f"^({'|'.join(alternatives)}){_CHAR}*$" if alternatives else None
    allowed = tuple(sorted({m.strip() for m in api.lfs_allowed.split(",") if m.strip()}))
    options = create_model(
        "Options", __base__=Options,
        lfs=(Literal[allowed] | None if allowed else None,  # type: ignore[valid-type]
             Field(default=None, description="A labelling module of AUTODS_API_LFS_ALLOWED")))
    return create_model(
        "JobRequest",
        sources=(list[Annotated[str, Field(min_length=1, max_length=2048, pattern=source)]],
                 Field(min_length=1, max_length=100, description=(
                     "s3://bucket/prefix/ locations (local paths and URL lists only where "
                     "the server sets AUTODS_API_ALLOW_LOCAL_SOURCES=1)"))),
        dataset=(str, Field(pattern=_DATASET)),
        output_url=((Annotated[str, Field(max_length=2048, pattern=output)] | None)
                    if output else None,
                    Field(default=None, description=(
                        "Where the dataset's shards go, under one of "
                        f"{', '.join(prefixes) or 'no prefix'} (AUTODS_API_OUTPUT_PREFIXES); "
                        "for an existing dataset, its own location or nothing"))),
        options=(options, Field(default_factory=options)),
    )


def _output_prefixes(settings: Settings) -> list[str]:
    """Where a caller may send a job's shards: the configured prefixes, or else the
    bucket of the configured storage."""
    prefixes = [p.strip() for p in settings.api.output_prefixes.split(",") if p.strip()]
    if not prefixes and settings.storage.url.startswith("s3://"):
        prefixes = [f"s3://{settings.storage.url[len('s3://'):].split('/', 1)[0]}/"]
    return [p if p.endswith("/") else p + "/" for p in prefixes]


class JobAccepted(BaseModel):
    job_id: int


class NotificationIn(BaseModel):
    """An S3/MinIO bucket notification; each record is judged on its own."""

    model_config = ConfigDict(extra="allow")

    Records: list[Any] | None = None  # noqa: N815 - the notification format's name


class RejectedRecord(BaseModel):
    record: int
    reason: str


class EventsAccepted(BaseModel):
    job_id: int | None
    accepted: int
    duplicates: int
    ignored: int
    rejected: list[RejectedRecord] = []


class ShardOut(BaseModel):
    name: str
    modality: str
    count: int
    nbytes: int | None
    sha256: str | None
    url: str


class DatasetOut(BaseModel):
    name: str
    output_url: str
    samples: int
    shards: list[ShardOut]


class VersionOut(BaseModel):
    version: int | None
    parent: int | None
    kind: str
    job: int | None
    created_at: str | None
    shards: int
    samples: int
    added: int
    removed: int


class ExplainOut(BaseModel):
    shards_total: int
    shards_skipped: int
    shards_read: int
    rows: int


class FateOut(BaseModel):
    """What became of one input of one job (``autods why``)."""

    job: int
    ordinal: int
    uri: str
    key: str | None = None
    status: str
    reason: str | None = None
    detail: str | None = None
    rule: str | None = None
    score: float | None = None
    shard: str | None = None
    version: int | None = None
    kept_uri: str | None = None
    kept_key: str | None = None
    kept_shard: str | None = None
    split: str | None = None
    summary: str


class QueryOut(BaseModel):
    """The matching samples: ``key``, ``shard``, ``offset``, ``size`` and the columns asked
    for, per row."""

    version: int | None
    explain: ExplainOut
    rows: list[dict[str, Any]]


class GoldAccepted(BaseModel):
    stored: int


class RelabelIn(BaseModel):
    """Class shares in the LF module's ``LABELS`` order (default: uniform)."""

    class_balance: list[Annotated[float, Field(gt=0, le=1e6)]] | None = Field(
        default=None, min_length=2, max_length=1000)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; refuses to exist without a usable token unless local development says
    so (and then it answers loopback clients only)."""
    settings = settings or Settings()
    token = settings.api.token.get_secret_value().strip() if settings.api.token else ""
    if not token and not settings.api.insecure_local:
        raise RuntimeError("AUTODS_API_TOKEN is not set (AUTODS_API_INSECURE_LOCAL=1 allows "
                           "an unauthenticated API on loopback, for local development only)")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise RuntimeError(f"AUTODS_API_TOKEN is shorter than {MIN_TOKEN_CHARS} characters")
    from autods.tasks.app import app as celery_app
    from autods.tasks.app import configure

    rt = Runtime(settings)
    configure(celery_app, settings)
    app = FastAPI(title="autods", version=VERSION,
                  description="Build training-ready multimodal datasets.")
    app.state.settings = settings
    app.add_middleware(RequestGuard, token=token, max_body=settings.api.max_body_bytes,
                       open_paths=_OPEN_PATHS)
    # The guard enforces the token; this declares the scheme in the OpenAPI document.
    auth = [Depends(HTTPBearer(auto_error=False, description="AUTODS_API_TOKEN"))]

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)[:2000]},
                            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    job_request = _job_request(settings)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": Error}})
    def readyz() -> dict[str, str]:
        try:
            with session_scope(rt.engine) as db:
                db.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any database failure means not ready
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "database unavailable") \
                from exc
        return {"status": "ready"}

    from fastapi.responses import Response

    from autods.service_metrics import service_registry

    registry = service_registry(rt)

    @app.get("/metrics", dependencies=auth, tags=["health"], include_in_schema=False,
             response_class=Response)
    def get_metrics():
        """Jobs by state and queue depths in Prometheus' text format, read at each scrape
        (``autods.service_metrics``); behind the token like every route but the probes."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def post_job(req) -> JobAccepted:
        from autods.tasks.canvas import start_job

        try:
            options = JobOptions.from_settings(rt.settings, **req.options.model_dump())
            job_id = start_job(rt, req.sources, req.dataset, options,
                               output_url=req.output_url)
        except JobRefused as exc:
            raise _refused(exc) from exc
        return JobAccepted(job_id=job_id)

    # The body's model is built for this server's settings, so it is set here, not written
    # in the signature (where postponed annotations would name a local variable).
    post_job.__annotations__["req"] = job_request
    app.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted,
             dependencies=auth, tags=["jobs"], responses=_ERRORS)(post_job)

    @app.get("/jobs/{job_id}", dependencies=auth, tags=["jobs"], responses=_ERRORS)
    def get_job(job_id: Annotated[int, Path(ge=1, le=_MAX_ID)]) -> dict[str, Any]:
        try:
            return job_status(rt, job_id).as_dict()
        except KeyError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}") from exc

    def files_of(name: str) -> tuple[str, DatasetFiles]:
        """Where the dataset the database names ``name`` writes, and its files (404 if it
        names none)."""
        from autods.dataset import Dataset as Files

        with session_scope(rt.engine) as db:
            url = db.scalar(select(Dataset.output_url).where(Dataset.name == name))
        if url is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {name}")
        return url, Files(rt.store(url))

    def open_named(name: str) -> DatasetFiles:
        """Its files, once it has a version (404 before)."""
        from autods.core.versions import DatasetNotFound

        _, files = files_of(name)
        try:
            files.version()
        except DatasetNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"dataset {name} has no version "
                                "yet") from exc
        return files

    @app.get("/datasets/{name}", response_model=DatasetOut, dependencies=auth,
             tags=["datasets"], responses=_ERRORS)
    def get_dataset(name: Annotated[str, Path(pattern=_DATASET)]) -> DatasetOut:
        """The dataset's latest version: its shards (none before its first job publishes)."""
        from autods.core.versions import DatasetNotFound

        url, files = files_of(name)
        try:
            shards = files.version().shards
        except DatasetNotFound:
            shards = ()
        return DatasetOut(
            name=name, output_url=url, samples=sum(s.count for s in shards),
            shards=[ShardOut(name=s.name, modality=s.modality, count=s.count, nbytes=s.nbytes,
                             sha256=s.sha256, url=files.store.uri(s.tar_key)) for s in shards])

    @app.get("/datasets/{name}/versions", response_model=list[VersionOut], dependencies=auth,
             tags=["datasets"], responses=_ERRORS)
    def get_versions(name: Annotated[str, Path(pattern=_DATASET)]) -> list[VersionOut]:
        return [VersionOut(**v) for v in open_named(name).versions()]

    @app.get("/datasets/{name}/why", response_model=list[FateOut], dependencies=auth,
             tags=["datasets"], responses=_ERRORS)
    def why_dataset(
        name: Annotated[str, Path(pattern=_DATASET)],
        ref: Annotated[str, Query(min_length=1, max_length=2048, pattern=r"^[^\x00]*$",
                                  description="A sample key (content hash) or an input URI")],
    ) -> list[FateOut]:
        """Every job's verdict on the input: published (where), rejected, filtered, or
        dropped as a duplicate of a kept sample (rule and score); 404 when none met it."""
        from autods.pipeline.explain import explain

        fates = explain(rt, name, ref)
        if not fates:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"nothing in {name} is {ref!r}")
        return [FateOut(**f.as_dict(), summary=f.sentence()) for f in fates]

    @app.get("/datasets/{name}/lineage", dependencies=auth, tags=["datasets"],
             responses=_ERRORS)
    def lineage_of(
        name: Annotated[str, Path(pattern=_DATASET)],
        ref: Annotated[str, Query(min_length=1, max_length=2048, pattern=r"^[^\x00]*$",
                                  description="A sample key (content hash) or an input URI")],
    ) -> list[dict[str, Any]]:
        """Where the sample came from and where it is (``autods lineage --json``): per
        content ``ref`` names, every input that carried it with its fate, its features, LF
        votes, labels and gold, and its shard, byte offset and size in every version that
        holds it; 404 for an unknown dataset or when nothing matches."""
        from autods.pipeline.lineage import lineage
        from autods.pipeline.mapjobs import DatasetUnknown

        try:
            found = lineage(rt, name, ref)
        except DatasetUnknown as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {name}") from exc
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"nothing in {name} is {ref!r}")
        return [lin.to_dict() for lin in found]

    @app.get("/datasets/{name}/query", response_model=QueryOut, dependencies=auth,
             tags=["datasets"], responses=_ERRORS)
    def query_dataset(
        name: Annotated[str, Path(pattern=_DATASET)],
        where: Annotated[str, Query(min_length=1, max_length=10_000, description=(
            "SQL boolean expression over the manifest columns, e.g. label = 'cat'"))],
        columns: Annotated[str | None, Query(max_length=2000, description=(
            "Comma-separated columns besides the location ('*': all)"))] = None,
        version: Annotated[int | None, Query(ge=1, le=_MAX_ID)] = None,
        limit: Annotated[int | None, Query(ge=1, le=_MAX_ID)] = None,
    ) -> QueryOut:
        """Samples matching ``where``, answered from the manifests. The predicate runs in a
        DuckDB that can read only this version's manifests, with a row and a time limit
        (a larger ``limit`` gets the server's, ``AUTODS_API_QUERY_MAX_ROWS``); anything but
        a boolean expression over known columns is a 422."""
        from autods.core.predicate import PredicateError
        from autods.core.query import Limits
        from autods.core.versions import DatasetNotFound

        files = open_named(name)
        cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        limits = Limits(settings.api.query_max_rows, settings.api.query_timeout_s)
        try:
            result = files.query(where, version=version, columns=cols, limit=limit,
                                 limits=limits)
        except PredicateError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)[:2000]) \
                from exc
        except DatasetNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        e = result.explain
        return QueryOut(version=result.version, rows=result.table.to_pylist(),
                        explain=ExplainOut(shards_total=e.shards_total,
                                           shards_skipped=e.shards_skipped,
                                           shards_read=e.shards_read, rows=e.rows))

    def known(name: str) -> None:
        with session_scope(rt.engine) as db:
            if db.scalar(select(Dataset.id).where(Dataset.name == name)) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {name}")

    @app.get("/datasets/{name}/lf-report", dependencies=auth, tags=["labelling"],
             responses=_ERRORS)
    def lf_report(name: Annotated[str, Path(pattern=_DATASET)],
                  version: Annotated[int | None, Query(ge=1, le=_MAX_ID)] = None
                  ) -> dict[str, Any]:
        """The LFs of the dataset's latest labelled job over every sample of the version:
        coverage, overlaps, conflicts, polarity, the label model's weights, and accuracy
        on the dataset's gold labels."""
        from autods.pipeline.relabel import fit_version

        open_named(name)
        try:
            return fit_version(rt, name, version=version).report().to_dict()
        except (JobRefused, KeyError) as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc

    @app.get("/datasets/{name}/report", dependencies=auth, tags=["datasets"],
             response_model=None, responses={**_ERRORS, 200: {
                 "description": "The report page",
                 "content": {"text/html": {"schema": {"type": "string"}}}}})
    def report(name: Annotated[str, Path(pattern=_DATASET)],
               version: Annotated[int | None, Query(ge=1, le=_MAX_ID)] = None,
               job: Annotated[int | None, Query(ge=1, le=_MAX_ID)] = None) -> HTMLResponse:
        """The dataset report as one self-contained HTML page (what ``autods report``
        writes): funnel, duplicate clusters, rejects, labels, stage timings, embedding map."""
        from autods.core.report import render
        from autods.pipeline.report import build_page

        known(name)
        try:
            page = build_page(rt, name, version=version, job=job)
        except LookupError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        return HTMLResponse(render(page))

    @app.post("/datasets/{name}/gold", response_model=GoldAccepted, dependencies=auth,
              tags=["labelling"], responses=_ERRORS)
    def post_gold(name: Annotated[str, Path(pattern=_DATASET)],
                  export: list[dict[str, Any]]) -> GoldAccepted:
        """Label Studio's JSON export of a review project: its answers become the dataset's
        gold labels. A label that is not one of the dataset's classes is a 422, naming it,
        and nothing is stored."""
        from autods.pipeline.review import import_gold

        known(name)
        try:
            return GoldAccepted(stored=len(import_gold(rt, name, export, "rest")))
        except JobRefused as exc:
            raise _refused(exc) from exc
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)[:2000]) \
                from exc

    @app.post("/datasets/{name}/relabel", status_code=status.HTTP_202_ACCEPTED,
              response_model=JobAccepted, dependencies=auth, tags=["labelling"],
              responses=_ERRORS)
    def post_relabel(name: Annotated[str, Path(pattern=_DATASET)],
                     body: RelabelIn | None = None) -> JobAccepted:
        """Fit the dataset's label model with its gold on the label queue, then run the job
        over its shards that labels every sample; answers with that job once it is sent.
        Only the LF module the dataset's jobs used is run."""
        from autods.tasks.canvas import start_relabel

        open_named(name)
        balance = body.class_balance if body else None
        try:
            job_id = start_relabel(rt, name, class_balance=balance,
                                   timeout=settings.api.relabel_timeout_s)
        except JobRefused as exc:
            raise _refused(exc) from exc
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)[:2000]) \
                from exc
        return JobAccepted(job_id=job_id)

    @app.post("/events/s3", response_model=EventsAccepted, dependencies=auth, tags=["events"],
              responses=_ERRORS)
    def post_s3_event(payload: NotificationIn,
                      dataset: Annotated[str | None, Query(pattern=_DATASET)] = None
                      ) -> EventsAccepted:
        """A MinIO/S3 bucket notification: ingest each created image object once. Each
        record is judged on its own; malformed ones are reported in ``rejected``."""
        from autods.pipeline.events import ingest_created
        from autods.tasks.canvas import start_job

        # The model has already refused a payload whose Records is not a list (422).
        note = parse_notification(payload.model_dump())
        try:
            outcome = ingest_created(rt, note, dataset or settings.api.events_dataset,
                                     JobOptions.from_settings(rt.settings), start_job)
        except JobRefused as exc:
            raise _refused(exc) from exc
        return EventsAccepted(job_id=outcome.job_id, accepted=outcome.accepted,
                              duplicates=outcome.duplicates, ignored=outcome.ignored,
                              rejected=[RejectedRecord(record=i, reason=r)
                                        for i, r in outcome.rejected])

    return app


def _refused(exc: JobRefused) -> HTTPException:
    """A job that cannot start, as its status: another output location 409, a missing
    source 404, a forbidden one 403, anything else about the request 422."""
    code = next((c for kind, c in _REFUSAL_STATUS if isinstance(exc, kind)),
                status.HTTP_422_UNPROCESSABLE_CONTENT)
    return HTTPException(code, str(exc)[:2000])


def _validation_message(exc: RequestValidationError) -> str:
    """One line per problem, with what the field needs on this server."""
    lines = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())]
        hint = next((h for field, h in _HINTS.items() if field in loc), None)
        lines.append(f"{'.'.join(loc)}: {error.get('msg', '')}" + (f" ({hint})" if hint else ""))
    return "; ".join(lines)
