"""Packs: a chunk's contents in one object, read back by byte ranges."""

from __future__ import annotations

import hashlib

import pytest

from autods.core import packs
from autods.core.packs import PackWriter, StoredRef, iter_bytes, read_one
from autods.core.storage import LocalStore


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pack(store: LocalStore, contents: list[bytes], drop=()) -> tuple[str | None, dict]:
    with PackWriter(store.root / "packs") as writer:
        for data in contents:
            writer.add(_sha(data), data)
        return writer.publish(store, drop=drop)


class CountingStore(LocalStore):
    """A local store that counts its reads."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads: list[tuple[str, int, int]] = []

    def get_range(self, key: str, start: int, size: int) -> bytes:
        self.reads.append((key, start, size))
        return super().get_range(key, start, size)


def test_pack_holds_each_content_once_under_its_hash(tmp_path):
    store = LocalStore(tmp_path)
    contents = [b"alpha", b"beta", b"alpha", b"gamma"]
    key, offsets = _pack(store, contents)
    data = store.get(key)
    assert data == b"alphabetagamma" and key == f"packs/{_sha(data)[:2]}/{_sha(data)}.pack"
    assert offsets == {_sha(b"alpha"): 0, _sha(b"beta"): 5, _sha(b"gamma"): 9}
    # No temporary file is left behind, and the same contents publish the same object.
    assert store.list("") == [key]
    assert _pack(store, contents) == (key, offsets) and store.list("") == [key]


def test_add_says_whether_it_appended(tmp_path):
    with PackWriter(tmp_path) as writer:
        assert [writer.add(_sha(d), d) for d in (b"a", b"b", b"a")] == [True, True, False]


def test_publish_drops_contents_stored_before(tmp_path):
    store = LocalStore(tmp_path)
    key, offsets = _pack(store, [b"one", b"two", b"three"], drop={_sha(b"two")})
    assert store.get(key) == b"onethree"
    assert offsets == {_sha(b"one"): 0, _sha(b"three"): 3}
    assert _pack(store, [b"two"], drop={_sha(b"two")}) == (None, {})
    assert store.list("") == [key]


def test_an_unpublished_pack_leaves_nothing(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(RuntimeError), PackWriter(store.root / "packs") as writer:
        writer.add(_sha(b"x"), b"x")
        raise RuntimeError("the chunk failed")
    assert store.list("") == []


def test_iter_bytes_reads_a_run_of_one_pack_at_once(tmp_path):
    store = CountingStore(tmp_path)
    contents = [bytes([i]) * (10 + i) for i in range(6)]
    key, offsets = _pack(store, contents)
    store.put("whole/object.bin", b"legacy")
    refs = [StoredRef(key, offsets[_sha(c)], len(c)) for c in contents]
    # Out of pack order, with an object stored whole in the middle.
    order = [refs[2], refs[0], refs[1], StoredRef("whole/object.bin", None, 6), refs[5], refs[3]]
    expected = [contents[2], contents[0], contents[1], b"legacy", contents[5], contents[3]]
    assert list(iter_bytes(store, order)) == expected
    assert [(k, s) for k, s, _ in store.reads] == [(key, 0), (key, offsets[_sha(contents[3])])]
    # A smaller span limit splits a run; the bytes are the same.
    store.reads.clear()
    assert list(iter_bytes(store, refs, max_span=25)) == contents
    assert len(store.reads) == 4 and all(size <= 25 for _, _, size in store.reads)
    assert read_one(store, refs[4]) == contents[4]


def test_blank_zeroes_ranges_and_keeps_offsets(tmp_path):
    store = LocalStore(tmp_path)
    key, offsets = _pack(store, [b"keep", b"forget", b"also"])
    packs.blank(store, key, [(offsets[_sha(b"forget")], 6)])
    assert store.get(key) == b"keep" + bytes(6) + b"also"
    assert read_one(store, StoredRef(key, offsets[_sha(b"also")], 4)) == b"also"
