"""Single tasks in eager mode: each stage's effect on the database and the store."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from sqlalchemy import func, select

from autods.core.packs import StoredRef, read_one
from autods.db.models import Asset, ChunkStage, Feature, Item, LfVote, PhashBand, Shard
from autods.db.session import session_scope
from autods.pipeline.plan import JobOptions, create_job
from autods.tasks import stages
from autods.tasks.stages import CHUNK_TASKS
from tests.datagen import image_folder


def _items(rt, job_id):
    with session_scope(rt.engine) as db:
        return {i.uri.rsplit("/", 1)[1]: i for i in db.scalars(
            select(Item).where(Item.job_id == job_id))}


def test_ingest_chunk_stores_each_content_once_and_records_reasons(eager, tmp_path):
    exp = image_folder(tmp_path / "in", n_unique=3, n_exact=1, bad=True)
    job = create_job(eager, [str(tmp_path / "in")], "d", JobOptions(chunk_size=16, embed=False))

    result = CHUNK_TASKS["ingest"].delay(job, 0).get()

    assert result == {"ingested": 5, "failed": 2}  # the truncated JPEG fails later
    items = _items(eager, job)
    assert items["zz_html.jpg"].reason == "not_an_image"
    assert items["zz_empty.png"].reason == "empty"
    assert items["img_00000_zcopy.jpg"].asset_id == items["img_00000.jpg"].asset_id
    with session_scope(eager.engine) as db:
        stored = {r.sha256: StoredRef.of(r)
                  for r in db.execute(select(Asset.sha256, Asset.storage_key,
                                             Asset.pack_offset, Asset.nbytes))}
    assert set(exp.unique) <= set(stored) and len(stored) == 4  # 3 unique + the truncated JPEG
    # The chunk's contents are in one pack, each once, read back by its range.
    assert len({ref.key for ref in stored.values()}) == 1
    assert eager.store().size(next(iter(stored.values())).key) == sum(
        r.size for r in stored.values())
    for sha in exp.unique:
        assert hashlib.sha256(read_one(eager.store(), stored[sha])).hexdigest() == sha
    # Each stored image is hashed in the same pass; the truncated one's pixels fail there
    # (its item fails in preprocess, with the reason recorded here).
    with session_scope(eager.engine) as db:
        feats = dict(db.execute(select(Asset.sha256, Feature.error)
                                .join(Feature, Feature.asset_id == Asset.id)).all())
        # Band index rows wait for the batch step that publishes the images.
        assert db.scalar(select(func.count()).select_from(PhashBand)) == 0
    assert len(feats) == 4 and {feats[sha] for sha in exp.unique} == {None}
    assert sorted(feats.values(), key=str) == [None, None, None, "corrupt_image"]


def test_redelivered_chunk_is_skipped(eager, tmp_path):
    image_folder(tmp_path / "in", n_unique=2)
    job = create_job(eager, [str(tmp_path / "in")], "d", JobOptions(chunk_size=16, embed=False))
    CHUNK_TASKS["ingest"].delay(job, 0).get()
    assert CHUNK_TASKS["ingest"].delay(job, 0).get() == {"skipped": 2}
    with session_scope(eager.engine) as db:
        assert db.scalar(select(func.count()).select_from(Asset)) == 2


def test_preprocess_hashes_assets_and_fails_undecodable_ones(eager, tmp_path):
    image_folder(tmp_path / "in", n_unique=3, bad=True)
    job = create_job(eager, [str(tmp_path / "in")], "d", JobOptions(chunk_size=16, embed=False))
    CHUNK_TASKS["ingest"].delay(job, 0).get()

    CHUNK_TASKS["preprocess"].delay(job, 0).get()

    items = _items(eager, job)
    assert items["zz_truncated.jpg"].status == "failed"
    assert items["zz_truncated.jpg"].reason == "corrupt_image"
    with session_scope(eager.engine) as db:
        feats = db.scalars(select(Feature).where(Feature.phash.is_not(None))).all()
        assert len(feats) == 3 and {(f.width, f.height, f.format) for f in feats} == {
            (96, 96, "JPEG")}
        assert db.scalar(select(func.count()).select_from(PhashBand)) == 0  # not yet published
        assert all(f.check_hash is not None and len(f.thumb) == 256 for f in feats)
        assert set(db.scalars(select(ChunkStage.stage))) == {"ingest", "preprocess"}


def test_embed_and_label_stages_write_vectors_and_votes(eager, tmp_path, monkeypatch):
    (tmp_path / "lfmod").mkdir()
    (tmp_path / "lfmod" / "eager_lfs.py").write_text(
        "from snorkel.labeling import labeling_function\nLABELS = ['picture', 'other']\n"
        "@labeling_function()\ndef lf_small(x):\n"
        "    return 1 if x.width and x.width < 50 else -1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lfmod"))
    image_folder(tmp_path / "in", n_unique=3)
    job = create_job(eager, [str(tmp_path / "in")], "d",
                     JobOptions(chunk_size=16, embed=True, lfs="eager_lfs"))
    CHUNK_TASKS["ingest"].delay(job, 0).get()
    CHUNK_TASKS["preprocess"].delay(job, 0).get()

    assert CHUNK_TASKS["embed"].delay(job, 0).get() == {"embedded": 3, "filtered": 0}
    assert CHUNK_TASKS["label"].delay(job, 0).get() == {"voted": 3}

    with session_scope(eager.engine) as db:
        feats = db.scalars(select(Feature)).all()
        votes = db.scalars(select(LfVote.votes)).all()
    assert {f.embedding_row for f in feats} == {0, 1, 2}
    assert all(f.embedding_model == "autods-tiny-vit:random-init" for f in feats)
    matrix = np.load(io.BytesIO(eager.store().get(feats[0].embedding_key)))
    assert matrix.shape == (3, 64)
    # columns: lf_small (96 px: abstains), builtin "picture" (captions say it), builtin "other"
    assert sorted(votes) == [[-1, 0, -1]] * 3


def test_publish_batch_writes_shards_with_duplicates_dropped(eager, tmp_path):
    exp = image_folder(tmp_path / "in", n_unique=6, n_exact=1, n_near=1)
    job = create_job(eager, [str(tmp_path / "in")], "d",
                     JobOptions(chunk_size=4, batch_size=8, shard_size=4, embed=False))
    for chunk in range(2):
        CHUNK_TASKS["ingest"].delay(job, chunk).get()
        CHUNK_TASKS["preprocess"].delay(job, chunk).get()

    written = stages.publish_batch.apply(kwargs={"job_id": job, "batch_no": 0}).get()

    assert written == ["shard-000000", "shard-000001"]
    items = _items(eager, job)
    assert items["img_00000_zcopy.jpg"].status == "exact_duplicate"
    assert items["img_00000_zcopy.jpg"].duplicate_of == items["img_00000.jpg"].id
    near = items["img_00005_znear.jpg"]
    assert near.status == "near_duplicate" and near.duplicate_of == items["img_00005.jpg"].id
    assert near.dedup_rule.startswith("phash=") and near.dedup_score is not None
    with session_scope(eager.engine) as db:
        shards = db.scalars(select(Shard).order_by(Shard.name)).all()
    assert [s.count for s in shards] == [4, 2] and all(s.complete for s in shards)
    assert sum(s.count for s in shards) == len(exp.unique)


def test_private_and_loopback_urls_are_refused_without_a_request(eager, tmp_path, monkeypatch):
    import socket

    urls = ["http://127.0.0.1:9/a.jpg", "http://10.0.0.1/a.jpg", "http://192.168.1.1/a.jpg",
            "http://169.254.169.254/latest/meta-data/", "http://[::1]/a.jpg",
            "http://localhost/a.jpg", "http://0.0.0.0/a.jpg"]
    (tmp_path / "urls.txt").write_text("\n".join(urls))
    eager.settings.allow_private_networks = False
    connects = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect",
                        lambda self, addr: connects.append(addr) or real_connect(self, addr))
    job = create_job(eager, [str(tmp_path / "urls.txt")], "d", JobOptions(embed=False))

    assert CHUNK_TASKS["ingest"].delay(job, 0).get() == {"ingested": 0, "failed": len(urls)}

    assert {i.reason for i in _items(eager, job).values()} == {"blocked_private_address"}
    assert connects == []
