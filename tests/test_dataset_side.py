"""The dataset side on a real build of the bundled sample, through the CLI a user runs:
versions, query (checked against a brute-force scan), get, a view read by three readers,
forget (with the pinned version unchanged), a sample's lineage across both versions, and
gc."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import autods
from autods.dataset import members_of
from tests.test_build_sample import ENV, ROOT, _build

AUTODS = str(Path(sys.executable).parent / "autods")


def _cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([AUTODS, *args], cwd=ROOT, env={**os.environ, **ENV},
                          capture_output=True, text=True, timeout=400)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _manifest_rows(out: Path, index: str = "index.json") -> list[dict]:
    """Every manifest row of the shards an index lists: the brute-force answer."""
    doc = json.loads((out / index).read_text())
    folder = (out / index).parent
    files = [str((folder / e["manifest_parquet"]).resolve()) for e in doc["shardlist"]]
    return duckdb.connect().sql("SELECT * FROM read_parquet(?, union_by_name = true)",
                                params=[files]).to_arrow_table().to_pylist()


def _tar_digests(out: Path, index: str) -> dict[str, str]:
    doc = json.loads((out / index).read_text())
    folder = (out / index).parent
    return {e["name"]: hashlib.sha256((folder / e["url"]).read_bytes()).hexdigest()
            for e in doc["shardlist"]}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dataset-side") / "ds"
    _build(out)
    return out


def test_a_build_publishes_version_one(out):
    proc = _cli("versions", str(out))
    assert "build" in proc.stdout and " 59 " in proc.stdout
    doc = json.loads((out / "versions" / "v000001.json").read_text())
    assert doc["version"] == 1 and doc["parent"] is None and doc["num_samples"] == 59
    assert json.loads((out / "index.json").read_text())["version"] == 1


def test_query_matches_a_brute_force_scan(out):
    proc = _cli("query", str(out), "label = 'circle' AND modality = 'image'",
                "--columns", "label,width", "--format", "jsonl", "--explain")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = {r["__key__"] for r in _manifest_rows(out)
                if r["label"] == "circle" and r["modality"] == "image"}
    assert expected and {r["key"] for r in rows} == expected and len(rows) == len(expected)
    assert all(r["label"] == "circle" and r["width"] > 0 for r in rows)
    assert "shards total" in proc.stderr and "skipped" in proc.stderr


def test_a_sources_metadata_fields_are_queryable_columns(out):
    """``metadata.jsonl`` keys (``shape``, ``seed``...) reach the manifests as columns."""
    proc = _cli("query", str(out), "shape = 'circle' AND seed < 100", "--columns",
                "shape,seed,uri", "--format", "json")
    rows = json.loads(proc.stdout)
    meta = [json.loads(line) for line in (ROOT / "examples" / "sample" / "images" /
                                          "metadata.jsonl").read_text().splitlines()]
    circles = {m["file_name"] for m in meta if m.get("shape") == "circle" and m["seed"] < 100}
    published = {r["uri"].rsplit("/", 1)[-1] for r in _manifest_rows(out)}
    assert rows and {r["uri"].rsplit("/", 1)[-1] for r in rows} == circles & published
    assert all(r["shape"] == "circle" and isinstance(r["seed"], int) for r in rows)
    schema = _cli("schema", str(out)).stdout
    assert "autods.sample" in schema and "shape" in schema and "source field" in schema


def test_a_predicate_that_is_not_an_expression_is_refused_in_one_line(out):
    proc = _cli("query", str(out), "1=1; DROP TABLE x", ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout


def test_get_returns_one_samples_members(out, tmp_path):
    row = _manifest_rows(out)[5]
    _cli("get", str(out), row["__key__"], "--out", str(tmp_path))
    shard = next(e for e in json.loads((out / "index.json").read_text())["shardlist"]
                 if _has_key(out / e["manifest_parquet"], row["__key__"]))
    with tarfile.open(out / shard["url"]) as tar:
        members = {n.split(".", 1)[1]: tar.extractfile(n).read() for n in tar.getnames()
                   if n.startswith(row["__key__"] + ".")}
    assert members and {p.name.split(".", 1)[1]: p.read_bytes()
                        for p in tmp_path.iterdir()} == members


def _has_key(parquet: Path, key: str) -> bool:
    return duckdb.connect().execute("SELECT count(*) FROM read_parquet(?) WHERE __key__ = ?",
                                    [str(parquet), key]).fetchone()[0] > 0


def test_a_view_loads_in_webdataset_wids_and_hugging_face(out, tmp_path, monkeypatch):
    import webdataset as wds
    import wids
    from datasets import load_dataset

    proc = _cli("materialize", str(out), "modality = 'image' AND label IS NOT NULL",
                "--name", "labelled-images", "--shard-size", "7")
    assert "written" in proc.stdout
    again = _cli("materialize", str(out), "modality='image' and label is not null",
                 "--name", "labelled-images")
    assert "cached" in again.stdout
    expected = {r["__key__"] for r in _manifest_rows(out)
                if r["modality"] == "image" and r["label"] is not None}
    view = out / "views" / "labelled-images"
    index = json.loads((view / "index.json").read_text())
    urls = [str(view / e["url"]) for e in index["shardlist"]]
    assert {s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)} == expected
    ds = wids.ShardListDataset(str(view / "index.json"))
    assert len(ds) == len(expected) and ds[0][".json"] is not None
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    loaded = 0
    layouts: dict[str, list[str]] = {}
    for e in index["shardlist"]:
        layouts.setdefault(",".join(e["extensions"]), []).append(str(view / e["url"]))
    for files in layouts.values():
        loaded += len(load_dataset("webdataset", data_files={"train": files}, split="train",
                                   cache_dir=str(tmp_path / "hf")))
    assert loaded == len(expected)


def test_forget_writes_a_new_version_and_the_pinned_one_reads_the_same(out):
    pinned = _tar_digests(out, "versions/v000001.json")
    v1_keys = {r["__key__"] for r in _manifest_rows(out, "versions/v000001.json")}
    rows = [r for r in _manifest_rows(out) if r["modality"] == "image"][:2]
    keys = [r["__key__"] for r in rows]
    proc = _cli("forget", str(out), *keys, "0" * 24)
    assert "forgot 2 sample(s)" in proc.stdout and "0" * 24 in proc.stdout
    v2 = json.loads((out / "versions" / "v000002.json").read_text())
    assert v2["parent"] == 1 and v2["kind"] == "map" and v2["num_samples"] == 57
    assert sorted(v2["tombstones"]) == sorted(keys) and v2["removed"] and v2["added"]
    latest = {r["__key__"] for r in _manifest_rows(out)}
    assert latest == v1_keys - set(keys)
    # The pinned version lists the same shards, with the same bytes, still there.
    assert _tar_digests(out, "versions/v000001.json") == pinned
    assert {r["__key__"] for r in _manifest_rows(out, "versions/v000001.json")} == v1_keys
    # The raw objects are gone; the tombstone keeps the key and hash, not the content.
    with sqlite3.connect(out / ".autods" / "autods.sqlite") as db:
        stones = db.execute("SELECT key, sha256 FROM tombstones").fetchall()
        storage = db.execute("SELECT storage_key FROM assets WHERE sha256 IN (?, ?)",
                             [r["sha256"] for r in rows]).fetchall()
    assert sorted(k for k, _ in stones) == sorted(keys)
    assert all(sha for _, sha in stones) and storage == [("",), ("",)]
    for r in rows:
        assert not list((out / ".autods" / "objects").rglob(f"{r['sha256']}*"))
    # Each rewritten shard keeps every other sample's bytes.
    for name in v2["added"]:
        manifest = json.loads((out / "shards" / f"{name}.manifest.json").read_text())
        assert manifest["parent_shards"] and manifest["job"] == v2["job"]


def _bytes_at(tar_uri: str, offset: int, size: int, ext: str) -> str:
    """The sha256 of the member ``ext`` in the byte range a lineage gives."""
    with Path(tar_uri.removeprefix("file://")).open("rb") as f:
        f.seek(offset)
        return hashlib.sha256(members_of(f.read(size))[ext]).hexdigest()


def _uri(name: str) -> str:
    return (ROOT / "examples" / "sample" / "images" / name).as_uri()


def test_lineage_places_a_sample_in_every_version_at_its_bytes(out):
    """A sample of a shard the forget rewrote: in version 1 at one place, in version 2 at
    another, both ranges holding its bytes; a forgotten one is in version 1 only."""
    v1 = json.loads((out / "versions" / "v000001.json").read_text())
    v2 = json.loads((out / "versions" / "v000002.json").read_text())
    rewritten = next(e for e in v1["shardlist"] if e["name"] in v2["removed"])
    rows = pq.read_table(out / "versions" / rewritten["manifest_parquet"]).to_pylist()
    moved = next(r for r in rows if r["__key__"] not in v2["tombstones"])

    (found,) = autods.lineage(str(out), moved["__key__"])

    assert (found.sha256, found.modality) == (moved["sha256"], moved["modality"])
    assert [(p.version, p.kind) for p in found.versions] == [(1, "build"), (2, "map")]
    first, second = found.versions
    assert first.shard in v2["removed"] and second.shard in v2["added"]
    for p in found.versions:
        assert _bytes_at(p.tar, p.offset, p.size, found.ext) == found.sha256
    (published,) = [i for i in found.inputs if i.fate.status == "published"]
    assert published.fate.uri == moved["uri"] and published.job_kind == "build"
    assert published.ingested_at is not None and published.job_finished_at is not None
    assert found.features.embedding_model == moved["embedding_model"]
    assert (found.features.phash, found.features.width) == (moved["phash"], moved["width"])
    forgotten_key = v2["tombstones"][0]
    (gone,) = autods.lineage(str(out), forgotten_key)
    assert [p.version for p in gone.versions] == [1] and gone.forgotten.job == v2["job"]


def test_lineage_names_votes_labels_duplicates_and_rejects(out):
    (copy,) = autods.lineage(str(out), _uri("sample_005_copy.jpg"))
    kept, dup = copy.inputs
    assert kept.fate.uri == _uri("sample_005.jpg") and kept.fate.status == "published"
    assert (dup.fate.status, dup.fate.rule, dup.fate.kept_key) == ("exact_duplicate", "sha256",
                                                                   copy.key)
    votes = {v.lf: v.label for v in kept.votes.votes if v.vote >= 0}
    assert votes["lf_square_words"] == "square"
    assert kept.votes.lfs_module == "examples.sample_lfs"
    assert (kept.label.name, kept.label.gold) == ("square", False)
    assert copy.versions[0].label == "square" and len(copy.features.phash) == 16
    with sqlite3.connect(out / ".autods" / "autods.sqlite") as db:
        stored = db.execute("SELECT votes FROM lf_votes JOIN items ON items.id = item_id "
                            "WHERE uri = ?", (_uri("sample_005.jpg"),)).fetchone()[0]
    assert [v.vote for v in kept.votes.votes] == json.loads(stored)

    (near,) = autods.lineage(str(out), _uri("sample_000_near.jpg"))
    (fate,) = [i.fate for i in near.inputs]
    (original,) = autods.lineage(str(out), _uri("sample_000.jpg"))
    assert fate.status == "near_duplicate" and fate.rule.startswith("phash")
    assert (fate.kept_key, fate.kept_uri) == (original.key, _uri("sample_000.jpg"))
    assert fate.kept_shard == original.versions[0].shard and near.versions == ()
    assert autods.lineage(str(out), "no-such-input") == []

    (broken,) = json.loads(_cli("lineage", str(out), _uri("broken_truncated.jpg"),
                                "--json").stdout)
    assert broken["inputs"][0]["reason"] == "corrupt_image" and broken["versions"] == []
    assert broken["features"]["error"] == "corrupt_image" and broken["features"]["phash"] is None
    assert broken == json.loads(json.dumps(autods.lineage(str(out), broken["key"])[0].to_dict()))
    table = _cli("lineage", str(out), _uri("not_an_image.jpg")).stdout
    assert "failed: not_an_image" in table and "rejected before its bytes" in table


def test_gc_removes_old_versions_and_only_their_bytes(out):
    before = set(_tar_digests(out, "versions/v000001.json"))
    latest = _tar_digests(out, "index.json")
    proc = _cli("gc", str(out), "--keep", "1")
    assert "removed 1 version(s)" in proc.stdout
    assert not (out / "versions" / "v000001.json").exists()
    for name in before - set(latest):
        assert not (out / "shards" / f"{name}.tar").exists()
    assert _tar_digests(out, "index.json") == latest
    rows = [json.loads(line) for line in _cli("query", str(out), "nbytes > 0", "--format",
                                               "jsonl").stdout.splitlines()]
    assert len(rows) == 57


def test_tars_are_plain_tars_after_a_rewrite(out):
    for e in json.loads((out / "index.json").read_text())["shardlist"]:
        data = (out / e["url"]).read_bytes()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            assert len(tar.getnames()) == e["nsamples"] * len(e["extensions"])
