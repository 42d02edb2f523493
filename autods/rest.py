"""The REST API: submit and watch jobs, read datasets, receive bucket notifications.

Every route but the health checks needs ``Authorization: Bearer <AUTODS_API_TOKEN>``.
MinIO's webhook may send its ``auth_token`` without the ``Bearer`` word; both forms are
accepted. Jobs are planned and dispatched exactly as ``autods.submit`` does.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text

from autods.config import Settings
from autods.core.s3events import created_objects
from autods.db.models import Dataset, Shard
from autods.db.session import session_scope
from autods.pipeline.options import JobOptions
from autods.pipeline.runtime import Runtime
from autods.pipeline.status import job_status
from autods.version import VERSION

_DATASET = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


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
    sources: list[Annotated[str, Field(min_length=1, max_length=2048)]] = Field(
        min_length=1, max_length=100)
    dataset: str = Field(pattern=_DATASET)
    output_url: str | None = Field(default=None, max_length=2048)
    options: Options = Options()


class JobAccepted(BaseModel):
    job_id: int


class EventsAccepted(BaseModel):
    job_id: int | None
    accepted: int
    duplicates: int
    ignored: int


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
    """The ASGI app; refuses to exist without a token unless local development says so."""
    settings = settings or Settings()
    token = settings.api.token.get_secret_value() if settings.api.token else ""
    if not token and not settings.api.insecure_local:
        raise RuntimeError("AUTODS_API_TOKEN is not set (AUTODS_API_INSECURE_LOCAL=1 allows "
                           "an unauthenticated API for local development only)")
    from autods.tasks.app import app as celery_app
    from autods.tasks.app import configure

    rt = Runtime(settings)
    configure(celery_app, settings)
    app = FastAPI(title="autods", version=VERSION,
                  description="Build training-ready multimodal datasets.")

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if not token:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong token",
                                headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorized)]

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> dict[str, str]:
        try:
            with session_scope(rt.engine) as db:
                db.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any database failure means not ready
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "database unavailable") \
                from exc
        return {"status": "ready"}

    @app.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted,
              dependencies=auth, tags=["jobs"])
    def post_job(req: JobRequest) -> JobAccepted:
        _check_sources(settings, req.sources)
        _check_lfs(settings, req.options.lfs)
        from autods.tasks.canvas import start_job

        options = JobOptions.from_settings(rt.settings, **req.options.model_dump())
        job_id = start_job(rt, req.sources, req.dataset, options, output_url=req.output_url)
        return JobAccepted(job_id=job_id)

    @app.get("/jobs/{job_id}", dependencies=auth, tags=["jobs"])
    def get_job(job_id: int) -> dict[str, Any]:
        try:
            return job_status(rt, job_id).as_dict()
        except KeyError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}") from exc

    @app.get("/datasets/{name}", response_model=DatasetOut, dependencies=auth,
             tags=["datasets"])
    def get_dataset(name: str) -> DatasetOut:
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

    @app.post("/events/s3", response_model=EventsAccepted, dependencies=auth, tags=["events"])
    def post_s3_event(payload: dict[str, Any],
                      dataset: Annotated[str | None, Query(pattern=_DATASET)] = None
                      ) -> EventsAccepted:
        """A MinIO/S3 bucket notification: ingest each created image object once."""
        from autods.pipeline.events import ingest_created
        from autods.tasks.canvas import start_job

        outcome = ingest_created(rt, created_objects(payload),
                                 dataset or settings.api.events_dataset,
                                 JobOptions.from_settings(rt.settings), start_job)
        return EventsAccepted(job_id=outcome.job_id, accepted=outcome.accepted,
                              duplicates=outcome.duplicates, ignored=outcome.ignored)

    return app


def _check_sources(settings: Settings, sources: list[str]) -> None:
    for spec in sources:
        if spec.startswith("s3://"):
            continue
        if settings.api.allow_local_sources and Path(spec).exists():
            continue
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"source not allowed over the API: {spec[:200]!r} (use s3:// prefixes; "
                            "local paths need AUTODS_API_ALLOW_LOCAL_SOURCES=1)")


def _check_lfs(settings: Settings, lfs: str | None) -> None:
    allowed = {m.strip() for m in settings.api.lfs_allowed.split(",") if m.strip()}
    if lfs and lfs not in allowed:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"labelling module {lfs!r} is not in AUTODS_API_LFS_ALLOWED")
