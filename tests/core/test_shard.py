"""Shards written by autods must read back, byte for byte, in every reader we target."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from autods.core.records import ShardSample
from autods.core.shard import _header, member_order, write_shard
from autods.core.storage import LocalStore

ORDER = ["jpg", "txt", "json", "npy", "cls"]
PROVENANCE = {"dataset": "demo", "job": "job-1", "pipeline_version": "0.1.0",
              "created_at": "2024-01-01T00:00:00+00:00"}


def jpeg(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def npy(vector: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vector)
    return buffer.getvalue()


def make_sample(i: int) -> ShardSample:
    embedding = np.linspace(-1, 1, 8, dtype=np.float16) * (i + 1)
    return ShardSample(
        key=f"sample_{i:04d}",
        members={  # deliberately not in member order
            "cls": str(i - 1).encode("ascii"),
            "npy": npy(embedding),
            "json": json.dumps({"id": i, "source": "test"}).encode(),
            "txt": f"caption number {i} – ünïcode".encode(),
            "jpg": jpeg(16 + i, 8 + 2 * i, (40 * i, 100, 200)),
        },
        fields={"label": "cat" if i % 2 else "dog", "score": i / 10},
    )


@pytest.fixture
def samples() -> list[ShardSample]:
    return [make_sample(i) for i in range(5)]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def shard(samples, store):
    info = write_shard(samples, "shard-000000", store, PROVENANCE)
    return info, store.root / info.tar_key


def test_shard_info_describes_the_tar(samples, store, shard):
    info, path = shard
    data = path.read_bytes()
    assert info.tar_key == "shards/shard-000000.tar"
    assert info.count == 5
    assert info.nbytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.extensions == ["cls", "jpg", "json", "npy", "txt"]
    assert info.modality == "image"
    assert store.exists(info.manifest_json_key)
    assert store.exists(info.manifest_parquet_key)
    assert not any(Path(p).name.startswith(".tmp-") for p in store.list(""))


def test_tarfile_lists_exactly_the_members_in_order(samples, shard):
    _, path = shard
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    expected = [f"{s.key}.{ext}" for s in samples for ext in ORDER]
    assert [m.name for m in members] == expected
    assert all(m.isreg() for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {
        (0, 0, 0, "root", "root")
    }


def test_webdataset_yields_identical_bytes_and_decodes(samples, shard):
    import webdataset as wds

    _, path = shard
    got = list(wds.WebDataset(str(path), shardshuffle=False))
    assert [g["__key__"] for g in got] == [s.key for s in samples]
    for sample, row in zip(samples, got, strict=True):
        assert {k: v for k, v in row.items() if not k.startswith("__")} == sample.members

    decoded = list(wds.WebDataset(str(path), shardshuffle=False).decode("pil"))
    for i, row in enumerate(decoded):
        assert row["jpg"].size == (16 + i, 8 + 2 * i)
        assert row["cls"] == i - 1
        assert row["json"] == {"id": i, "source": "test"}
        assert row["npy"].dtype == np.float16
        assert row["txt"] == f"caption number {i} – ünïcode"


def test_hugging_face_datasets_loads_the_shard(samples, shard, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    import datasets

    _, path = shard
    ds = datasets.load_dataset(
        "webdataset",
        data_files={"train": [str(path)]},
        split="train",
        cache_dir=str(tmp_path / "hf_cache"),
    )
    assert len(ds) == len(samples)
    assert ds["__key__"] == [s.key for s in samples]
    assert ds["txt"] == [f"caption number {i} – ünïcode" for i in range(5)]
    assert ds["cls"] == [i - 1 for i in range(5)]
    for i, row in enumerate(ds):
        assert row["jpg"].size == (16 + i, 8 + 2 * i)
        assert row["json"] == {"id": i, "source": "test"}
        assert np.allclose(row["npy"], np.linspace(-1, 1, 8, dtype=np.float16) * (i + 1))


def test_manifest_offsets_slice_out_each_sample(samples, store, shard):
    info, path = shard
    data = path.read_bytes()
    table = pq.read_table(store.root / info.manifest_parquet_key)
    assert table.column_names[:3] == ["__key__", "__offset__", "__size__"]
    rows = table.to_pylist()
    assert [r["__key__"] for r in rows] == [s.key for s in samples]
    for sample, row in zip(samples, rows, strict=True):
        piece = data[row["__offset__"] : row["__offset__"] + row["__size__"]]
        with tarfile.open(fileobj=io.BytesIO(piece)) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        assert list(members) == [f"{sample.key}.{ext}" for ext in ORDER]
        assert members == {f"{sample.key}.{ext}": sample.members[ext] for ext in ORDER}
    # the samples tile the archive up to the end-of-archive blocks
    assert rows[0]["__offset__"] == 0
    for before, after in zip(rows, rows[1:], strict=False):
        assert before["__offset__"] + before["__size__"] == after["__offset__"]


def test_same_samples_give_byte_identical_tars(samples, tmp_path):
    first = write_shard(samples, "a", LocalStore(tmp_path / "one"), PROVENANCE)
    second = write_shard(
        [make_sample(i) for i in range(5)], "b", LocalStore(tmp_path / "two"), {"job": "other"}
    )
    assert first.sha256 == second.sha256
    assert (tmp_path / "one" / first.tar_key).read_bytes() == (
        tmp_path / "two" / second.tar_key
    ).read_bytes()


def _tarfile_bytes(samples: list[ShardSample], order: list[str]) -> bytes:
    """The same members written by ``tarfile`` in USTAR format, with the writer's metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            for ext in order:
                data = bytes(sample.members[ext])
                info = tarfile.TarInfo(f"{sample.key}.{ext}")
                info.size, info.mode, info.mtime = len(data), 0o444, 0
                info.uname = info.gname = "root"
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _edge_samples() -> list[ShardSample]:
    """Members ending on and around block and record boundaries; full-length names."""
    sizes = [0, 1, 511, 512, 513, 10240 - 3 * 512, 10240]
    return [
        ShardSample(
            key="d/" + "k" * 91 + f"{i:02d}" if i % 2 else f"dir/sub-{i}/x_{i}",
            members={"bin": bytearray([i]) * n, "txt": memoryview(f"t{i}".encode())},
        )
        for i, n in enumerate(sizes)
    ]


@pytest.mark.parametrize("kind", ["typical", "edges"])
def test_tar_is_byte_identical_to_tarfile_ustar(kind, store):
    # Shards written by earlier versions, which used tarfile, must equal today's for the
    # same samples, or a resumed run would write different bytes.
    samples = [make_sample(i) for i in range(5)] if kind == "typical" else _edge_samples()
    info = write_shard(samples, "same", store, PROVENANCE)
    expected = _tarfile_bytes(samples, member_order(samples[0].members))
    assert (store.root / info.tar_key).read_bytes() == expected


def test_member_over_ustar_size_limit_is_refused():
    with pytest.raises(ValueError):
        _header(b"big.bin", 8**11)


def test_member_order_puts_image_first_then_fixed_then_alphabetical():
    shuffled = ["zzz", "cls", "npy", "aaa", "json", "png", "txt"]
    assert member_order(shuffled) == ["png", "txt", "json", "npy", "cls", "aaa", "zzz"]


def _with(sample: ShardSample, **changes) -> ShardSample:
    return ShardSample(
        key=changes.get("key", sample.key),
        members=changes.get("members", sample.members),
        fields=sample.fields,
    )


def _violations() -> dict[str, list[ShardSample]]:
    good = [make_sample(i) for i in range(3)]
    members = good[1].members
    return {
        "key with a dot": [good[0], _with(good[1], key="bad.key")],
        "non-ascii key": [_with(good[0], key="clé")],
        "key with a space": [_with(good[0], key="a b")],
        "duplicate key": [good[0], _with(good[1], key=good[0].key)],
        "missing extension": [good[0], _with(good[1], members={
            k: v for k, v in members.items() if k != "npy"})],
        "extra extension": [good[0], _with(good[1], members={**members, "png": b"x"})],
        "non-integer cls": [_with(good[0], members={**members, "cls": b"two"})],
        "float cls": [_with(good[0], members={**members, "cls": b"1.5"})],
        "padded cls": [_with(good[0], members={**members, "cls": b" 2\n"})],
        "upper-case extension": [_with(good[0], members={"JPG": members["jpg"]})],
        "bad utf-8 text": [_with(good[0], members={**members, "txt": b"\xff\xfe"})],
        "bad json": [_with(good[0], members={**members, "json": b"{nope"})],
        "pickled npy": [_with(good[0], members={
            **members, "npy": npy(np.array([{"a": 1}], dtype=object))})],
        "str member": [_with(good[0], members={**members, "txt": "not bytes"})],
        "name too long": [_with(good[0], key="k" * 96)],
        "no members": [_with(good[0], members={})],
        "no samples": [],
    }


@pytest.mark.parametrize("case", sorted(_violations()))
def test_reader_rule_violations_raise_and_write_nothing(case, store):
    with pytest.raises(ValueError):
        write_shard(_violations()[case], "bad", store, PROVENANCE)
    assert store.list("") == []


def test_signed_integer_cls_is_accepted(store):
    sample = make_sample(0)
    sample.members["cls"] = b"-12"
    info = write_shard([sample], "neg", store, PROVENANCE)
    assert info.count == 1
