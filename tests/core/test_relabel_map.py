"""The ``relabel`` sample map: labels from an assignment table, every other byte kept."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autods.core.maps import sample_map
from autods.core.records import ShardSample
from autods.core.sample import SampleRecord, build_sample
from autods.core.storage import LocalStore, ObjectStore, open_store

PARAMS = {"assignments": "labels/lm-x", "model": "lm-x", "shard": "shard-000000"}
SHA_END = "a1" * 32      # labelled by the end model in the table
SHA_NULL = "b2" * 32     # in the table with no label
SHA_MISSING = "c3" * 32  # not in the table


def _record(sha: str, **overrides: object) -> SampleRecord:
    base: dict[str, object] = {
        "sha256": sha, "modality": "text", "ext": "txt", "nbytes": 6,
        "uri": f"file:///in/{sha[:4]}.txt", "ordinal": 1, "job_id": 3,
        "source": "reviews", "license": "cc-by", "meta": {"stars": 4, "lang": "fr"},
        "embedding_model": "all-MiniLM-L6-v2", "split": "train"}
    base.update(overrides)
    return SampleRecord(**base)  # type: ignore[arg-type]


def _sample(sha: str, *, labelled: bool, **overrides: object) -> ShardSample:
    vector = np.linspace(-1, 1, 8).astype(np.float16)
    return build_sample(_record(sha, **overrides), "héllo!".encode(), vector=vector,
                        labelled=labelled)


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    """A local folder store opened by its file:// URL, holding one assignment table."""
    store = open_store(tmp_path.as_uri())
    assert isinstance(store, LocalStore) and store.root == tmp_path.resolve()
    table = pa.table({
        "key": pa.array([SHA_END[:24], SHA_NULL[:24]], pa.string()),
        "label_id": pa.array([1, -1], pa.int64()),
        "label": pa.array(["pos", None], pa.string()),
        "label_prob": pa.array([0.83, None], pa.float64()),
        "label_source": pa.array(["end_model", None], pa.string()),
    })
    out = io.BytesIO()
    pq.write_table(table, out)
    store.put("labels/lm-x/shard-000000.parquet", out.getvalue())
    return store


LABELLED_FIELDS = {"label_id": 1, "label": "pos", "confidence": 0.83, "label_prob": 0.83,
                   "label_source": "end_model", "label_model": "lm-x"}
NULL_FIELDS = {"label_id": -1, "label": None, "confidence": None, "label_prob": None,
               "label_source": None, "label_model": None}


@pytest.mark.parametrize("labelled", [True, False])
def test_a_labelled_row_sets_cls_manifest_and_json(store: ObjectStore, labelled: bool
                                                   ) -> None:
    """The table's label reaches ``.cls``, the manifest and the ``.json`` member; the text
    and the vector keep their bytes."""
    before = _sample(SHA_END, labelled=labelled, label=0, label_name="neg", confidence=0.6,
                     label_model="lm-old", label_source="label_model")
    after = sample_map("relabel", PARAMS, store)(before)

    assert after is not None and after.key == before.key == SHA_END[:24]
    assert after.members["cls"] == b"1"
    assert {k: after.fields[k] for k in LABELLED_FIELDS} == LABELLED_FIELDS
    doc = json.loads(after.members["json"])
    assert {k: doc[k] for k in LABELLED_FIELDS} == LABELLED_FIELDS
    assert sorted(after.members) == sorted({*before.members, "cls"})
    for name in ("txt", "npy"):
        assert after.members[name] == before.members[name]
    others = {k: v for k, v in before.fields.items() if k not in LABELLED_FIELDS}
    assert {k: after.fields[k] for k in others} == others
    old_doc = json.loads(before.members["json"])
    assert {k: v for k, v in doc.items() if k not in LABELLED_FIELDS} == {
        k: v for k, v in old_doc.items() if k not in LABELLED_FIELDS}


def test_a_null_row_gives_minus_one_and_type_stable_json(store: ObjectStore) -> None:
    """A row with label -1 and nulls: ``.cls`` is -1, the manifest holds nulls, the
    ``.json`` member "" for text and 0.0 for probabilities."""
    before = _sample(SHA_NULL, labelled=True, label=1, label_name="pos", confidence=0.9,
                     label_model="lm-old", label_source="gold")
    after = sample_map("relabel", PARAMS, store)(before)

    assert after.members["cls"] == b"-1"
    assert {k: after.fields[k] for k in NULL_FIELDS} == NULL_FIELDS
    doc = json.loads(after.members["json"])
    assert {k: doc[k] for k in NULL_FIELDS} == {
        "label_id": -1, "label": "", "confidence": 0.0, "label_prob": 0.0,
        "label_source": "", "label_model": ""}
    assert after.members["txt"] == before.members["txt"]
    assert after.members["npy"] == before.members["npy"]


def test_relabelling_gives_the_bytes_a_fresh_labelled_build_gives(store: ObjectStore) -> None:
    """An unlabelled sample relabelled equals, member for member and field for field, the
    sample built with that label from the start."""
    fn = sample_map("relabel", PARAMS, store)
    cases = [
        (SHA_END, {"label": 1, "label_name": "pos", "confidence": 0.83,
                   "label_model": "lm-x", "label_source": "end_model"}),
        (SHA_NULL, {}),
    ]
    for sha, label in cases:
        relabelled = fn(_sample(sha, labelled=False))
        fresh = _sample(sha, labelled=True, **label)
        assert relabelled.members == fresh.members, sha
        assert list(relabelled.members) == list(fresh.members), sha
        assert relabelled.fields == fresh.fields, sha


def test_a_key_missing_from_the_table_is_returned_unchanged(store: ObjectStore) -> None:
    """A sample the table lacks is the same object, its members untouched."""
    before = _sample(SHA_MISSING, labelled=True, label=0, label_name="neg", confidence=0.7,
                     label_model="lm-old", label_source="label_model")
    members = dict(before.members)
    after = sample_map("relabel", PARAMS, store)(before)
    assert after is before
    assert after.members == members and after.members["cls"] == b"0"


def test_the_table_is_read_from_the_shard_named_in_the_parameters(store: ObjectStore) -> None:
    """Another shard name reads another object: an absent one fails when the map is
    built."""
    with pytest.raises(FileNotFoundError):
        sample_map("relabel", {**PARAMS, "shard": "shard-000001"}, store)


def test_an_unknown_map_is_refused_with_the_known_names(store: ObjectStore) -> None:
    """The error names the maps there are."""
    with pytest.raises(ValueError, match=r"no sample map 'nope'; known: forget, relabel"):
        sample_map("nope", PARAMS, store)


def test_forget_drops_listed_keys_only(store: ObjectStore) -> None:
    """The ``forget`` map returns None for a listed key and the sample itself otherwise."""
    fn = sample_map("forget", {"keys": [SHA_END[:24]]}, store)
    kept = _sample(SHA_NULL, labelled=False)
    assert fn(_sample(SHA_END, labelled=False)) is None
    assert fn(kept) is kept
