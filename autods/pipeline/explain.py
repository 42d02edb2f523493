"""Why an input is or is not in a dataset: its fate, from the rows every stage recorded.

An input is named by its URI (as its source listed it) or by a sample key (the first hex
digits of its content hash, as shards and queries show it). Every job that met it
answers: published (in which shard, by which job and version), rejected or filtered (the
reason and the measured value), or dropped as a duplicate (the rule, its score and the
kept sample it duplicates, with where that one is).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import aliased

from autods.core.records import ItemStatus
from autods.db.models import Asset, Dataset, Item, Job
from autods.db.session import session_scope
from autods.pipeline.runtime import Runtime

#: A sample key is this many hex digits of the content hash (``SampleRecord.key``).
KEY_DIGITS = 24


@dataclass(frozen=True, slots=True)
class Fate:
    """One input of one job, and what became of it."""

    job: int
    ordinal: int
    uri: str
    key: str | None
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

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def sentence(self) -> str:
        """The fate in one line, as ``autods why`` prints it."""
        if self.status == ItemStatus.PUBLISHED:
            where = f"in {self.shard}" + (f" (version {self.version})" if self.version else "")
            return f"published {where}" + (f", split {self.split}" if self.split else "")
        if self.duplicate_of_known:
            score = f" score {self.score:.4g}" if self.score is not None else ""
            kept = f"{self.kept_key} ({self.kept_uri})" + (
                f" in {self.kept_shard}" if self.kept_shard else "")
            return f"dropped: {self.status}, rule {self.rule}{score}, duplicate of {kept}"
        text = f"{self.status}: {self.reason or '-'}"
        return text + (f" ({self.detail})" if self.detail else "")

    @property
    def duplicate_of_known(self) -> bool:
        return self.kept_key is not None or self.kept_uri is not None


def explain(rt: Runtime, dataset: str, ref: str) -> list[Fate]:
    """Every fate of ``ref`` (a URI, or a sample key or a content hash prefix of at least
    8 hex digits) in the dataset, oldest job first; empty when nothing matches."""
    kept = aliased(Item)
    kept_asset = aliased(Asset)
    as_key = ref.lower()
    is_hex = len(as_key) >= 8 and all(c in "0123456789abcdef" for c in as_key)
    with session_scope(rt.engine) as db:
        rows = db.execute(
            select(Item, Asset.sha256, Job.version, kept.uri, kept.shard_name,
                   kept_asset.sha256)
            .join(Job, Job.id == Item.job_id)
            .join(Dataset, Dataset.id == Job.dataset_id)
            .outerjoin(Asset, Asset.id == Item.asset_id)
            .outerjoin(kept, kept.id == Item.duplicate_of)
            .outerjoin(kept_asset, kept_asset.id == kept.asset_id)
            .where(Dataset.name == dataset,
                   or_(Item.uri == ref, Asset.sha256.startswith(as_key)) if is_hex
                   else Item.uri == ref)
            .order_by(Item.job_id, Item.ordinal)).all()
    return [Fate(job=item.job_id, ordinal=item.ordinal, uri=item.uri,
                 key=sha[:KEY_DIGITS] if sha else None, status=item.status,
                 reason=item.reason, detail=item.detail, rule=item.dedup_rule,
                 score=item.dedup_score, shard=item.shard_name,
                 version=version if item.status == ItemStatus.PUBLISHED else None,
                 kept_uri=kept_uri, kept_key=kept_sha[:KEY_DIGITS] if kept_sha else None,
                 kept_shard=kept_shard, split=item.split)
            for item, sha, version, kept_uri, kept_shard, kept_sha in rows]
