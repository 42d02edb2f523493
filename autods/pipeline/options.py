"""A job's options, in a module of their own: the embedded run needs them (to choose its
worker's preloads) before it imports the database layer that planning uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from autods.config import Settings


@dataclass(frozen=True, slots=True)
class JobOptions:
    """What decides a job's output; two runs with equal options build the same dataset."""

    embed: bool = True
    lfs: str | None = None
    chunk_size: int = 256
    batch_size: int = 10_000
    shard_size: int = 1_000
    near_k: int = 4
    near_enabled: bool = True
    resize: int | None = None

    @classmethod
    def from_settings(cls, s: Settings, **overrides) -> JobOptions:
        """The settings' defaults, with every override that is not None."""
        base = cls(embed=s.clip.enabled, lfs=s.label.lfs, chunk_size=s.pipeline.chunk_size,
                   batch_size=s.pipeline.batch_size, shard_size=s.pipeline.shard_size,
                   near_k=s.dedup.near_k, near_enabled=s.dedup.near_enabled,
                   resize=s.pipeline.resize)
        return cls(**{**asdict(base), **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> JobOptions:
        """A job's options as stored with it (``asdict``); a key absent from an older job
        takes the default, a key this version does not know is ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in known})

    def as_params(self) -> dict[str, Any]:
        return asdict(self)
