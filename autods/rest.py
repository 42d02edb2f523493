"""The REST API: submit and watch jobs, read datasets, receive bucket notifications.

Every route but the health checks and the OpenAPI document needs
``Authorization: Bearer <AUTODS_API_TOKEN>`` (the scheme in any case). MinIO's webhook may
send its ``auth_token`` without the ``Bearer`` word; both forms are accepted. The token and
the body size are checked before the body is read (``autods.rest_guard``). Jobs start
through the same path as ``autods.submit``; every refusal is a 4xx with ``{"detail": ...}``
and leaves no row behind.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text

from autods.config import Settings
from autods.core.label import LabellingModuleError
from autods.core.records import SourceError
from autods.core.s3events import MalformedEvent, parse_notification
from autods.db.models import Dataset, Shard
from autods.db.session import session_scope
from autods.pipeline.options import JobOptions
from autods.pipeline.plan import OutputConflict
from autods.pipeline.runtime import Runtime
from autods.pipeline.status import job_status
from autods.rest_guard import MIN_TOKEN_CHARS, RequestGuard
from autods.version import VERSION

_DATASET = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
# Printable text only: no NUL or other control characters in a source or output URL.
_URL = r"^[^\x00-\x1f\x7f]+$"
_OPEN_PATHS = ("/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect",
               "/redoc")
_MAX_ID = 2**63 - 1


class Error(BaseModel):
    """Every refusal: a status code and one message."""

    detail: str


_ERRORS = {code: {"model": Error} for code in (400, 401, 404, 409, 413, 422)}


class Options(BaseModel):
    """Per-job overrides of the configured defaults."""

    embed: bool | None = None
    lfs: str | None = Field(default=None, max_length=200)
    chunk_size: int | None = Field(default=None, ge=1, le=100_000)
    batch_size: int | None = Field(default=None, ge=1, le=10_000_000)
    shard_size: int | None = Field(default=None, ge=1, le=1_000_000)
    near_k: int | None = Field(default=None, ge=0, le=15)
    resize: int | None = Field(default=None, ge=16, le=16_384)


class JobRequest(BaseModel):
    sources: list[Annotated[str, Field(min_length=1, max_length=2048, pattern=_URL)]] = Field(
        min_length=1, max_length=100,
        description="s3://bucket/prefix/ locations (local paths and URL lists only where the "
                    "server sets AUTODS_API_ALLOW_LOCAL_SOURCES=1)")
    dataset: str = Field(pattern=_DATASET)
    output_url: str | None = Field(
        default=None, max_length=2048, pattern=_URL,
        description="Where the dataset's shards go: an s3:// location under one of "
                    "AUTODS_API_OUTPUT_PREFIXES (default: the configured storage's bucket); "
                    "for an existing dataset, its own location or nothing")
    options: Options = Options()


class JobAccepted(BaseModel):
    job_id: int


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
    app.add_middleware(RequestGuard, token=token, max_body=settings.api.max_body_bytes,
                       open_paths=_OPEN_PATHS)
    # The guard enforces the token; this declares the scheme in the OpenAPI document.
    auth = [Depends(HTTPBearer(auto_error=False, description="AUTODS_API_TOKEN"))]

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors())
        return JSONResponse({"detail": problems[:2000]},
                            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

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

    @app.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted,
              dependencies=auth, tags=["jobs"], responses=_ERRORS)
    def post_job(req: JobRequest) -> JobAccepted:
        _check_sources(settings, req.sources)
        _check_output(settings, req.output_url)
        _check_lfs(settings, req.options.lfs)
        from autods.tasks.canvas import start_job

        options = JobOptions.from_settings(rt.settings, **req.options.model_dump())
        try:
            job_id = start_job(rt, req.sources, req.dataset, options,
                               output_url=req.output_url)
        except OutputConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        except (SourceError, LabellingModuleError) as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)[:2000]) \
                from exc
        return JobAccepted(job_id=job_id)

    @app.get("/jobs/{job_id}", dependencies=auth, tags=["jobs"], responses=_ERRORS)
    def get_job(job_id: Annotated[int, Path(ge=1, le=_MAX_ID)]) -> dict[str, Any]:
        try:
            return job_status(rt, job_id).as_dict()
        except KeyError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}") from exc

    @app.get("/datasets/{name}", response_model=DatasetOut, dependencies=auth,
             tags=["datasets"], responses=_ERRORS)
    def get_dataset(name: Annotated[str, Path(pattern=_DATASET)]) -> DatasetOut:
        with session_scope(rt.engine) as db:
            ds = db.scalar(select(Dataset).where(Dataset.name == name))
            if ds is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {name}")
            shards = db.scalars(select(Shard).where(
                Shard.dataset_id == ds.id, Shard.complete.is_(True)).order_by(Shard.name)).all()
            samples = db.scalar(select(func.coalesce(func.sum(Shard.count), 0)).where(
                Shard.dataset_id == ds.id, Shard.complete.is_(True)))
            return DatasetOut(
                name=ds.name, output_url=ds.output_url, samples=int(samples),
                shards=[ShardOut(name=s.name, modality=s.modality, count=s.count,
                                 nbytes=s.nbytes, sha256=s.sha256,
                                 url=f"{ds.output_url.rstrip('/')}/{s.info.get('tar', '')}")
                        for s in shards])

    @app.post("/events/s3", response_model=EventsAccepted, dependencies=auth, tags=["events"],
              responses=_ERRORS)
    def post_s3_event(payload: dict[str, Any],
                      dataset: Annotated[str | None, Query(pattern=_DATASET)] = None
                      ) -> EventsAccepted:
        """A MinIO/S3 bucket notification: ingest each created image object once. Each
        record is judged on its own; malformed ones are reported in ``rejected``."""
        from autods.pipeline.events import ingest_created
        from autods.tasks.canvas import start_job

        try:
            note = parse_notification(payload)
        except MalformedEvent as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        try:
            outcome = ingest_created(rt, note, dataset or settings.api.events_dataset,
                                     JobOptions.from_settings(rt.settings), start_job)
        except OutputConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        return EventsAccepted(job_id=outcome.job_id, accepted=outcome.accepted,
                              duplicates=outcome.duplicates, ignored=outcome.ignored,
                              rejected=[RejectedRecord(record=i, reason=r)
                                        for i, r in outcome.rejected])

    return app


def _check_sources(settings: Settings, sources: list[str]) -> None:
    """S3 prefixes only, unless the server allows local sources; the planner then checks
    that each one can be listed (a 422 if not)."""
    if settings.api.allow_local_sources:
        return
    for spec in sources:
        if not spec.startswith("s3://"):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"source not allowed over the API: {spec[:200]!r} (use s3:// prefixes; "
                "local paths need AUTODS_API_ALLOW_LOCAL_SOURCES=1)")


def _check_output(settings: Settings, output_url: str | None) -> None:
    """An output location a caller names must lie under an allowed prefix: workers write
    there, so it follows the sources' rule (S3, or local only where allowed)."""
    if output_url is None:
        return
    if output_url.startswith("file:") and settings.api.allow_local_sources:
        return
    prefixes = [p.strip() for p in settings.api.output_prefixes.split(",") if p.strip()]
    if not prefixes and settings.storage.url.startswith("s3://"):
        bucket = settings.storage.url[len("s3://"):].split("/", 1)[0]
        prefixes = [f"s3://{bucket}/"]
    if not any(output_url.startswith(p if p.endswith("/") else p + "/") for p in prefixes):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"output_url not allowed over the API: {output_url[:200]!r} "
                            f"(allowed: {', '.join(prefixes) or 'none'}; see "
                            "AUTODS_API_OUTPUT_PREFIXES)")


def _check_lfs(settings: Settings, lfs: str | None) -> None:
    allowed = {m.strip() for m in settings.api.lfs_allowed.split(",") if m.strip()}
    if lfs and lfs not in allowed:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"labelling module {lfs!r} is not in AUTODS_API_LFS_ALLOWED")
