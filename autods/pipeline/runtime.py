"""Per-process resources that stages share: settings, database engine, stores, models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Engine

from autods.config import Settings
from autods.core.storage import ObjectStore, open_store, s3_client
from autods.db.session import engine_for


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


@dataclass
class Runtime:
    """Lazily built, reused across tasks in one worker process. Not shared across forks,
    except a worker's warmed models and LFs (``pipeline.warmup``), built before the engine."""

    settings: Settings
    _stores: dict[str, ObjectStore] = field(default_factory=dict)
    _label_specs: dict[str, Any] = field(default_factory=dict)
    _minhashers: dict[float, Any] = field(default_factory=dict)

    @cached_property
    def engine(self) -> Engine:
        return engine_for(self.settings.database.url, self.settings.database.pool_size)

    @cached_property
    def s3(self):
        st = self.settings.storage
        return s3_client(st.endpoint_url, st.region, _secret(st.access_key_id),
                         _secret(st.secret_access_key))

    def store(self, url: str | None = None) -> ObjectStore:
        """The object store (default) or a dataset's output location, by URL."""
        url = url or self.settings.storage.url
        if url not in self._stores:
            st = self.settings.storage
            self._stores[url] = open_store(url, st.endpoint_url, st.region,
                                           _secret(st.access_key_id),
                                           _secret(st.secret_access_key))
        return self._stores[url]

    @cached_property
    def fetcher(self):
        from autods.core.fetch import Fetcher

        return Fetcher(self.settings.fetch, self.settings.allow_private_networks,
                       s3_client_factory=lambda: self.s3)

    @cached_property
    def prefetcher(self):
        from autods.core.prefetch import Prefetcher

        return Prefetcher(self.settings.fetch.threads)

    @cached_property
    def embedder(self):
        return self.build_embedder()

    def build_embedder(self, torch_threads: int | None = None):
        """A new CLIP embedder as configured, with ``torch_threads`` instead if given."""
        from autods.core.embed import ClipEmbedder

        clip = self.settings.clip
        threads = clip.torch_threads if torch_threads is None else torch_threads
        return ClipEmbedder(clip.model, clip.pretrained, clip.device, clip.batch_size,
                            clip.decode_threads, threads, clip.parallel_batches)

    @cached_property
    def text_embedder(self):
        from autods.core.textembed import SentenceEmbedder

        clip = self.settings.clip
        return SentenceEmbedder(clip.text_model, device=clip.device,
                                parallel_batches=clip.parallel_batches)

    def minhasher(self, threshold: float):
        """One MinHash hasher per threshold (its permutations are drawn once)."""
        from autods.core.textdedup import TextMinHasher

        if threshold not in self._minhashers:
            self._minhashers[threshold] = TextMinHasher(threshold=threshold)
        return self._minhashers[threshold]

    def label_spec(self, module: str):
        from autods.core.label import load_spec

        if module not in self._label_specs:
            self._label_specs[module] = load_spec(module, self.settings.label.builtin)
        return self._label_specs[module]


_RUNTIME: Runtime | None = None


def get_runtime() -> Runtime:
    """The process-wide runtime, read from ``AUTODS_*`` once."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = Runtime(Settings())
    return _RUNTIME


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime (tests, the embedded runner) or drop the cached one."""
    global _RUNTIME
    _RUNTIME = runtime


@contextmanager
def using(runtime: Runtime) -> Iterator[Runtime]:
    """``runtime`` as this process's runtime for a while, then whatever was there before
    (none included)."""
    global _RUNTIME
    previous, _RUNTIME = _RUNTIME, runtime
    try:
        yield runtime
    finally:
        _RUNTIME = previous
