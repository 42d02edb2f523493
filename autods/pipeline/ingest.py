"""Ingest: fetch, validate, hash and store each input of a chunk; record assets and items.

An image's features (``preprocess.hashed``) are computed here, in the same pass as its
sha256, while its bytes are in memory: preprocess would read them back from the pack and
parse them a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

from sqlalchemy import select

from autods.core.fetch import REMOTE_SCHEMES
from autods.core.hashing import sha256_hex
from autods.core.packs import PackWriter
from autods.core.records import ImageFeatures, ItemStatus, Modality, Reason, Rejected
from autods.core.storage import LocalStore
from autods.core.validate import clean_caption, validate_image, validate_text
from autods.db.models import Asset, Feature, Item, Tombstone, utcnow
from autods.db.session import session_scope
from autods.db.upsert import insert_ignore, update_rows
from autods.pipeline.chunks import ChunkWork, in_chunk
from autods.pipeline.preprocess import feature_row, hashed
from autods.pipeline.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Input:
    item_id: int
    modality: str
    uri: str
    text: str | None
    caption: str | None
    caption_uri: str | None
    source_error: str | None


@dataclass(slots=True)
class _Outcome:
    item_id: int
    sha256: str | None = None
    mime: str | None = None
    ext: str | None = None
    nbytes: int = 0
    modality: str = Modality.IMAGE
    caption: str | None = None
    reason: str | None = None
    detail: str | None = None
    features: ImageFeatures | Rejected | None = None


def _reject(item_id: int, exc: Rejected) -> _Outcome:
    return _Outcome(item_id, reason=exc.reason.value, detail=exc.detail[:500] or None)


@dataclass(slots=True)
class _Fetched:
    """An input's bytes and what they claim to be, or why there are none."""

    data: bytes = b""
    declared_ext: str | None = None
    content_type: str | None = None
    caption: str | None = None
    rejected: Rejected | None = None


def _fetch_one(rt: Runtime, item: _Input) -> _Fetched:
    """The network half of an input, run on a prefetch thread: its bytes and caption."""
    try:
        if item.source_error:
            raise Rejected(Reason(item.source_error), "refused by the source reader")
        if item.modality == Modality.TEXT:
            got = _Fetched((item.text or "").encode("utf-8", "surrogateescape"))
        else:
            fetched = rt.fetcher.fetch(item.uri)
            got = _Fetched(fetched.data, fetched.declared_ext, fetched.content_type)
    except Rejected as exc:
        return _Fetched(rejected=exc)
    got.caption = item.caption
    if item.caption_uri:
        try:
            got.caption = rt.fetcher.fetch(item.caption_uri).data.decode("utf-8")
        except (Rejected, UnicodeDecodeError) as exc:
            log.info("caption %s unreadable: %s", item.caption_uri, exc)
    return got


def _ingest_one(rt: Runtime, item: _Input, got: _Fetched, forgotten: frozenset[str],
                pack: PackWriter) -> _Outcome:
    """One fetched input to bytes in the chunk's pack; bad input comes back as a reason,
    never as an exception. Content the dataset was asked to forget is refused before it is
    stored again."""
    fetch = rt.settings.fetch
    try:
        if got.rejected is not None:
            raise got.rejected
        if item.modality == Modality.TEXT:
            data = validate_text(got.data, fetch.max_text_chars).encode()
            mime, ext = "text/plain", "txt"
        else:
            info = validate_image(got.data, got.declared_ext, got.content_type,
                                  fetch.max_pixels)
            data, mime, ext = got.data, info.mime, info.ext
    except Rejected as exc:
        return _reject(item.item_id, exc)
    sha = sha256_hex(data)
    if sha in forgotten:
        return _reject(item.item_id, Rejected(Reason.FORGOTTEN, "forgotten from this dataset"))
    first = pack.add(sha, data)  # a copy within the chunk is hashed once
    return _Outcome(item.item_id, sha, mime, ext, len(data), item.modality,
                    clean_caption(got.caption),
                    features=hashed(data) if first and item.modality == Modality.IMAGE else None)


def ingest(rt: Runtime, work: ChunkWork) -> dict[str, int]:
    """Ingest the pending items of one chunk; a re-delivered chunk does only what is left."""
    with session_scope(rt.engine) as db:
        inputs = [_Input(*row) for row in db.execute(
            select(Item.id, Item.modality, Item.uri, Item.text, Item.caption, Item.caption_uri,
                   Item.reason)
            .where(in_chunk(Item, work), Item.status == ItemStatus.PENDING)
            .order_by(Item.ordinal))]
        forgotten = frozenset(db.scalars(select(Tombstone.sha256).where(
            Tombstone.dataset_id == work.dataset_id, Tombstone.sha256.is_not(None))))
    store = rt.store()
    staging = store.root / "packs" if isinstance(store, LocalStore) else None
    with PackWriter(staging) as pack:
        outcomes: list[_Outcome] = [None] * len(inputs)  # type: ignore[list-item]
        for i, got in _fetched(rt, inputs):  # recorded in input order: asset ids stay stable
            outcomes[i] = _ingest_one(rt, inputs[i], got, forgotten, pack)
        shas = {o.sha256 for o in outcomes if o.reason is None}
        with session_scope(rt.engine) as db:  # content the dataset holds is not stored again
            stored = set(db.scalars(select(Asset.sha256).where(
                Asset.dataset_id == work.dataset_id, Asset.sha256.in_(shas)))) if shas else set()
        key, offsets = pack.publish(store, drop=stored)
    _record(rt, work.dataset_id, outcomes, key, offsets)
    ok = sum(o.reason is None for o in outcomes)
    return {"ingested": ok, "failed": len(outcomes) - ok}


def _fetched(rt: Runtime, inputs: list[_Input]) -> Iterator[tuple[int, _Fetched]]:
    """Each input's bytes, by index, as they arrive. Threads hide network latency (the
    runtime's prefetcher starts as many as the consumer waits for); reading local files
    gains nothing from them but contention for the interpreter lock with the decoding and
    hashing around it."""
    if not any(urlsplit(i.uri or "").scheme in REMOTE_SCHEMES for i in inputs):
        return ((i, _fetch_one(rt, item)) for i, item in enumerate(inputs))
    return rt.prefetcher.imap(partial(_fetch_one, rt), inputs)


def _record(rt: Runtime, dataset_id: int, outcomes: list[_Outcome], pack: str | None,
            offsets: dict[str, int]) -> None:
    """Assets by content (the unique constraint settles races: a chunk that loses one keeps
    its copy in its pack unused), the features of the images this chunk stored, then every
    item's fate."""
    good = [o for o in outcomes if o.reason is None]
    now = utcnow()
    with session_scope(rt.engine) as db:
        insert_ignore(db, Asset, [
            {"dataset_id": dataset_id, "sha256": o.sha256, "modality": o.modality,
             "mime": o.mime, "ext": o.ext, "nbytes": o.nbytes, "storage_key": pack,
             "pack_offset": offsets[o.sha256], "created_at": now}
            for o in {o.sha256: o for o in good}.values() if o.sha256 in offsets
        ], conflict=("dataset_id", "sha256"))
        ids = dict(db.execute(select(Asset.sha256, Asset.id).where(
            Asset.dataset_id == dataset_id, Asset.sha256.in_({o.sha256 for o in good}))).all())
        # Stored by this chunk: older content has its features.
        insert_ignore(db, Feature, [
            feature_row(ids[o.sha256], o.features)
            for o in {o.sha256: o for o in good if o.features is not None}.values()
            if o.sha256 in offsets], conflict=("asset_id",))
        ok_rows = [
            {"id": o.item_id, "status": ItemStatus.INGESTED, "asset_id": ids[o.sha256],
             "caption": o.caption, "ingested_at": now}
            for o in good
        ]
        failed_rows = [
            {"id": o.item_id, "status": ItemStatus.FAILED, "reason": o.reason, "detail": o.detail,
             "ingested_at": now}
            for o in outcomes if o.reason is not None
        ]
        for rows in (ok_rows, failed_rows):
            if rows:
                update_rows(db, Item, rows)
