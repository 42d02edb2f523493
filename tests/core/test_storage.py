import boto3
import pytest

from autods.core.storage import LocalStore, S3Store, check_key, open_store


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", "", "-x"])
def test_keys_that_could_escape_the_root_are_refused(key):
    with pytest.raises(ValueError):
        check_key(key)


def test_local_store_round_trip_and_listing(tmp_path):
    store = open_store(tmp_path.as_uri())
    assert isinstance(store, LocalStore)
    store.put("raw/ab/abc.jpg", b"bytes")
    src = tmp_path / "tmpfile"
    src.write_bytes(b"shard")
    store.put_file("shards/s.tar", src)
    assert store.get("raw/ab/abc.jpg") == b"bytes" and store.exists("shards/s.tar")
    assert not src.exists()
    assert store.list("") == ["raw/ab/abc.jpg", "shards/s.tar"]


def test_a_file_from_another_filesystem_is_copied_in_blocks_then_renamed(tmp_path,
                                                                          monkeypatch):
    """Where the staged file cannot be renamed into the store (another filesystem), it
    is copied beside the target and renamed, without reading it whole into memory."""
    import errno
    import os
    import pathlib

    store = LocalStore(tmp_path / "store")
    staged = tmp_path / "staged.tar"
    payload = os.urandom(3 * (1 << 20) + 17)
    staged.write_bytes(payload)
    real_replace = os.replace

    def cross_device(src, dst):
        if os.fspath(src) == os.fspath(staged):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst)

    def whole_read(self):
        raise AssertionError(f"{self} read whole")

    monkeypatch.setattr(os, "replace", cross_device)
    monkeypatch.setattr(pathlib.Path, "read_bytes", whole_read)
    store.put_file("shards/big.tar", staged)
    monkeypatch.undo()
    assert store.get("shards/big.tar") == payload and not staged.exists()
    assert [p.name for p in (tmp_path / "store" / "shards").iterdir()] == ["big.tar"]


def test_s3_store_against_a_real_s3_server(s3_endpoint, tmp_path):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="store-test")
    store = open_store("s3://store-test/prefix", endpoint_url=s3_endpoint)
    assert isinstance(store, S3Store)
    store.put("raw/x.bin", b"123")
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    store.put_file("shards/a.tar", src)
    assert store.get("raw/x.bin") == b"123" and store.exists("shards/a.tar")
    assert not store.exists("missing")
    assert store.list("") == ["raw/x.bin", "shards/a.tar"]
    assert client.get_object(Bucket="store-test", Key="prefix/raw/x.bin")["Body"].read() == b"123"
    _ranges_sizes_and_deletes(store)


def _ranges_sizes_and_deletes(store) -> None:
    store.put("r/data.bin", bytes(range(200)))
    assert store.get_range("r/data.bin", 10, 5) == bytes([10, 11, 12, 13, 14])
    assert store.get_range("r/data.bin", 195, 50) == bytes(range(195, 200))
    assert store.get_range("r/data.bin", 0, 0) == b""
    assert store.size("r/data.bin") == 200
    store.delete("r/data.bin")
    store.delete("r/data.bin")  # an absent object is already deleted
    assert not store.exists("r/data.bin")


def test_local_store_ranges_sizes_and_deletes(tmp_path):
    _ranges_sizes_and_deletes(LocalStore(tmp_path))


def test_stored_objects_get_the_mode_the_umask_gives(tmp_path):
    import os
    import stat

    store = LocalStore(tmp_path)
    store.put("a/b.bin", b"x")
    staged = tmp_path / "staged.tar"
    staged.write_bytes(b"tar")
    os.chmod(staged, 0o600)  # as mkstemp makes it
    store.put_file("a/c.tar", staged)

    mask = os.umask(0)
    os.umask(mask)
    for name in ("a/b.bin", "a/c.tar"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask
