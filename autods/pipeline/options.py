"""A job's options, in a module of their own: the embedded run needs them (to choose its
worker's preloads) before it imports the database layer that planning uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from autods.config import Settings
from autods.core.records import JobRefused


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
    # The curation rules default to off here, so a job stored before they existed resumes
    # as it began; ``from_settings`` turns them on for new jobs.
    text_near: bool = False
    minhash_threshold: float = 0.8
    semantic_texts: bool = False
    semantic_images: bool = False
    semantic_threshold: float = 0.95
    # Quality filters (``autods.core.filters.Filters.as_params``); None filters nothing.
    filters: dict[str, Any] | None = None
    # "train,val,test" fractions, e.g. "0.8,0.1,0.1"; None writes no split.
    split: str | None = None
    stratify: bool = False

    @classmethod
    def from_settings(cls, s: Settings, **overrides) -> JobOptions:
        """The settings' defaults, with every override that is not None."""
        d = s.dedup
        # Image vectors of a random model mean nothing: semantic dedup of images is on by
        # default only with real weights.
        semantic_images = (not s.clip.random_weights if d.semantic_images is None
                           else d.semantic_images)
        base = cls(embed=s.clip.enabled, lfs=s.label.lfs, chunk_size=s.pipeline.chunk_size,
                   batch_size=s.pipeline.batch_size, shard_size=s.pipeline.shard_size,
                   near_k=d.near_k, near_enabled=d.near_enabled, resize=s.pipeline.resize,
                   text_near=d.text_near_enabled, minhash_threshold=d.minhash_threshold,
                   semantic_texts=d.semantic_texts, semantic_images=semantic_images,
                   semantic_threshold=d.semantic_threshold)
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            if "filters" in given:
                from autods.core.filters import Filters

                spec = given["filters"]
                given["filters"] = (spec if isinstance(spec, Filters)
                                    else Filters.model_validate(spec)).as_params()
            if "split" in given:
                from autods.core.splits import parse_fractions

                given["split"] = ",".join(f"{v:g}" for v in parse_fractions(given["split"]))
        except ValueError as exc:
            raise JobRefused(" ".join(str(exc).split())) from exc
        return cls(**{**asdict(base), **given})

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> JobOptions:
        """A job's options as stored with it (``asdict``); a key absent from an older job
        takes the default, a key this version does not know is ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in known})

    def as_params(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def semantic(self) -> bool:
        """Whether any semantic rule runs: it needs the embeddings."""
        return self.embed and (self.semantic_texts or self.semantic_images)

    @property
    def text_features(self) -> bool:
        """Whether preprocess reads texts: for their dedup features or their filters."""
        return self.text_near or bool(self.filters)
