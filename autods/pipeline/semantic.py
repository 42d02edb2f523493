"""A dataset's semantic index, persisted in the object store between batches and jobs.

The database is the truth about what is published; the index is a cache of their vectors
that may be stale after a crash. Resolving a batch and saving the index are not one
transaction: a batch that rolls back after the save leaves vectors of samples that were
never published, and a worker that dies before the save leaves published samples out.
So a loaded index is checked against the database: matches are allowed only against
published samples, and published samples it lacks are added before the batch resolves.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from autods.core.records import Modality
from autods.core.semantic import SemanticIndex
from autods.core.storage import ObjectStore
from autods.db.models import Asset, Feature
from autods.pipeline.embed import load_vectors
from autods.pipeline.runtime import Runtime


def index_key(dataset_id: int, modality: str) -> str:
    return f"indexes/{dataset_id}/semantic-{modality}.usearch"


@dataclass
class StoredSemanticIndex:
    """One dataset's index of one modality, with the ids of its published samples."""

    key: str
    index: SemanticIndex
    published: set[int]

    @classmethod
    def load(cls, rt: Runtime, db, dataset_id: int, modality: Modality,
             dim: int) -> StoredSemanticIndex:
        store = rt.store()
        key = index_key(dataset_id, modality.value)
        index = (SemanticIndex.from_bytes(store.get(key)) if store.exists(key)
                 else SemanticIndex(dim))
        rows = db.execute(
            select(Asset.kept_item_id, Feature.embedding_key, Feature.embedding_row)
            .join(Feature, Feature.asset_id == Asset.id)
            .where(Asset.dataset_id == dataset_id, Asset.modality == modality,
                   Asset.kept_item_id.is_not(None), Feature.embedding_key.is_not(None))
            .order_by(Asset.kept_item_id)).all()
        missing = [r for r in rows if r.kept_item_id not in index]
        if missing:
            vectors = load_vectors(store, [(r.embedding_key, r.embedding_row)
                                           for r in missing])
            index.add_many([r.kept_item_id for r in missing], vectors)
        return cls(key, index, {r.kept_item_id for r in rows})

    def save(self, store: ObjectStore) -> None:
        store.put(self.key, self.index.to_bytes())
