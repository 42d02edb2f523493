"""Curation end to end in the embedded mode, on real images and texts: near-duplicate
images, normalised, near and semantic text duplicates, quality filters, splits, the
model of every vector, and ``autods why``; a second build of the same inputs publishes
the same samples in the same splits."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.curation_data import LANGUAGES, MIN_SIDE, Expected, write_inputs

ROOT = Path(__file__).resolve().parents[1]
ENV = {"AUTODS_CLIP_MODEL": "autods-tiny-vit", "AUTODS_CLIP_PRETRAINED": "random",
       "AUTODS_PIPELINE_CHUNK_SIZE": "16", "AUTODS_PIPELINE_BATCH_SIZE": "48"}


def _autods(*args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "autods"), *args], cwd=ROOT,
                          env={**os.environ, **ENV}, capture_output=True, text=True,
                          timeout=timeout)


def _build(base: Path, out: Path) -> str:
    proc = _autods("build", str(base / "images"), str(base / "copies"),
                   str(base / "texts.jsonl"), "--out", str(out), "--workers", "2", "--quiet",
                   "--min-side", str(MIN_SIDE), "--lang", LANGUAGES, "--split", "0.6,0.2,0.2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _fates(out: Path) -> dict[str, tuple]:
    """Input name (file name, or a text's source) -> (status, reason, rule, kept input's
    name, split, shard, score)."""
    with sqlite3.connect(out / ".autods" / "autods.sqlite") as db:
        rows = db.execute("SELECT id, uri, source, status, reason, dedup_rule, duplicate_of, "
                          "split, shard_name, dedup_score, modality FROM items").fetchall()
    name = {r[0]: (r[2] if r[10] == "text" else r[1].rsplit("/", 1)[-1]) for r in rows}
    return {name[r[0]]: (r[3], r[4], r[5], name.get(r[6]), r[7], r[8], r[9]) for r in rows}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, Expected, str]:
    base = tmp_path_factory.mktemp("curation")
    expected = write_inputs(base / "in")
    out = base / "ds"
    return base / "in", out, expected, _build(base / "in", out)


def test_every_input_meets_the_fate_its_rule_gives(built):
    _, out, expected, stdout = built
    fates = _fates(out)
    assert set(fates) == set(expected.fates)
    caught = copies = 0
    # The picture each image input shows: a copy missed is published, and a later copy of
    # the same picture may then be dropped as its duplicate.
    picture = {n: (f[2] if f[1:2] == ("phash",) else n) for n, f in expected.fates.items()}
    for name, want in expected.fates.items():
        status, reason, rule, kept, *_ = fates[name]
        if want[1:2] == ("phash",):
            copies += 1
            # A copy is either caught as a copy of its own original, or (recall below 1)
            # published; never matched to another picture.
            assert status in ("near_duplicate", "published"), (name, fates[name])
            if status == "near_duplicate":
                caught += 1
                assert (rule.split("=")[0], picture[kept]) == ("phash", want[2]), \
                    (name, fates[name])
        elif want[0] == "filtered":
            assert (status, reason) == want, (name, fates[name])
        elif want[0] == "published":
            assert status == "published", (name, fates[name])
        else:
            assert (status, kept) == (want[0], want[2]), (name, fates[name])
            assert rule.startswith(want[1]), (name, rule)
    assert caught / copies >= 0.9, f"{caught} of {copies} planted image copies caught"
    for line in ("near duplicates", "by phash", "by minhash", "by text_normalized",
                 "semantic duplicates", "filter:min_side", "filter:language"):
        assert line in stdout, stdout


def test_dropped_items_record_a_score_and_filtered_ones_the_measured_value(built):
    _, out, _, _ = built
    fates = _fates(out)
    semantic = [f for f in fates.values() if f[0] == "semantic_duplicate"]
    assert semantic and all(0.95 <= f[6] <= 1.0001 for f in semantic)
    minhash = [f for f in fates.values() if f[2] and f[2].startswith("minhash")]
    assert minhash and all(0.8 <= f[6] <= 1.0 for f in minhash)
    with sqlite3.connect(out / ".autods" / "autods.sqlite") as db:
        detail = db.execute("SELECT detail FROM items WHERE reason = 'filter:min_side'").fetchone()
    side = int(detail[0].split("=")[1].split()[0])
    assert side < MIN_SIDE and detail[0].endswith(f"(min {MIN_SIDE})")


def test_manifests_carry_split_and_model_and_query_selects_a_split(built):
    _, out, expected, _ = built
    con = duckdb.connect()
    rows = con.sql(f"SELECT __key__, modality, split, embedding_model, language "
                   f"FROM '{out}/shards/*.manifest.parquet'").fetchall()
    published = [f for f in _fates(out).values() if f[0] == "published"]
    assert len(rows) == len(published) == len(expected.published()) + sum(
        f[0] == "published" for n, f in _fates(out).items()
        if expected.fates[n][1:2] == ("phash",))
    assert {r[2] for r in rows} == {"train", "val", "test"}
    models = {r[1]: r[3] for r in rows}
    assert models == {"image": "autods-tiny-vit:random-init", "text": "all-MiniLM-L6-v2"}
    assert {r[4] for r in rows if r[1] == "text"} == {"en"}
    proc = _autods("query", str(out), "split = 'val'", "--format", "jsonl", "--columns", "split")
    assert proc.returncode == 0, proc.stderr
    answered = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert sorted(r["key"] for r in answered) == sorted(r[0] for r in rows if r[2] == "val")


def test_why_names_the_rule_score_and_kept_sample(built):
    _, out, expected, _ = built
    fates = _fates(out)
    copy = next(n for n, f in fates.items() if f[0] == "near_duplicate" and n.startswith("copy"))
    with sqlite3.connect(out / ".autods" / "autods.sqlite") as db:
        (uri,) = db.execute("SELECT uri FROM items WHERE uri LIKE ?", (f"%/{copy}",)).fetchone()
    proc = _autods("why", str(out), uri, "--json")
    assert proc.returncode == 0, proc.stderr
    (fate,) = json.loads(proc.stdout)
    assert fate["status"] == "near_duplicate" and fate["rule"].startswith("phash")
    assert fate["kept_uri"].endswith(expected.fates[copy][2]) and fate["kept_shard"]
    kept_key = fate["kept_key"]
    proc = _autods("why", str(out), kept_key)
    assert proc.returncode == 0 and "published in shard-" in proc.stdout, proc.stdout
    assert _autods("why", str(out), "no-such-input").returncode == 2


def test_a_second_build_publishes_the_same_samples_in_the_same_splits(built, tmp_path):
    base, out, _, _ = built
    again = tmp_path / "again"
    _build(base, again)
    first, second = _fates(out), _fates(again)
    assert {n: f[:5] for n, f in first.items()} == {n: f[:5] for n, f in second.items()}
