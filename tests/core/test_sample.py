"""The sample format: members, the ``.json`` member and resizing, from plain records."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from autods.core.sample import SampleRecord, build_sample, maybe_resize, sample_json

SHA = "ab" * 32


def _record(**overrides) -> SampleRecord:
    base = {"sha256": SHA, "modality": "image", "ext": "png", "nbytes": 10,
            "uri": "file:///in/a.png", "ordinal": 3, "job_id": 7, "caption": "a cat",
            "meta": {"shot": "night", "empty": None},
            "ingested_at": datetime(2026, 1, 2, tzinfo=UTC), "width": 4, "height": 2,
            "format": "PNG", "mode": "RGB", "phash": -1}
    return SampleRecord(**{**base, **overrides})


def test_an_image_sample_has_its_bytes_caption_json_vector_and_class():
    vector = np.arange(4, dtype=np.float16)
    sample = build_sample(_record(label=1, label_name="cat", confidence=0.75,
                                  label_model="lm-1"), b"PNGDATA", vector=vector,
                          labelled=True)

    assert sample.key == SHA[:24]
    assert list(sample.members) == ["png", "txt", "json", "npy", "cls"]
    assert sample.members["png"] == b"PNGDATA" and sample.members["txt"] == b"a cat"
    assert np.array_equal(np.load(io.BytesIO(sample.members["npy"])), vector)
    assert sample.members["cls"] == b"1"
    doc = json.loads(sample.members["json"])
    assert doc["label"] == "cat" and doc["confidence"] == 0.75 and doc["label_id"] == 1
    assert doc["phash"] == "ffffffffffffffff" and doc["meta"] == {"shot": "night"}
    assert "job" not in doc and "ingested_at" not in doc  # they differ between runs
    assert sample.fields["job"] == 7 and sample.fields["ingested_at"].startswith("2026-01-02")


def test_an_abstained_or_unlabelled_sample_keeps_a_type_stable_json():
    sample = build_sample(_record(caption=None, source=None), b"x", labelled=True)

    doc = json.loads(sample.members["json"])
    assert sample.members["cls"] == b"-1"
    assert (doc["label"], doc["label_model"], doc["confidence"]) == ("", "", 0.0)
    assert (doc["caption"], doc["source"], doc["has_caption"]) == ("", "", False)
    assert sample.members["txt"] == b""


def test_a_text_sample_is_its_text_with_no_label_members_when_not_labelled():
    sample = build_sample(_record(modality="text", ext="txt", caption=None, width=None,
                                  height=None, format=None, mode=None, phash=None),
                          "héllo".encode())

    assert list(sample.members) == ["txt", "json"]
    assert sample.members["txt"] == "héllo".encode()
    assert json.loads(sample.members["json"])["phash"] is None


def test_the_json_member_is_the_same_bytes_for_the_same_sample():
    fields = {"b": 1, "a": None, "label": None}
    assert sample_json("k", fields, "c", {"z": 1}) == sample_json("k", dict(fields), "c",
                                                                  {"z": 1})
    assert sample_json("k", fields, "c", {}) == (
        b'{"a": null, "b": 1, "caption": "c", "key": "k", "label": "", "meta": {}}')


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def test_resize_keeps_small_images_and_format_and_shrinks_large_ones():
    small, large = _png((32, 16)), _png((400, 100))
    assert maybe_resize(small, None) == small and maybe_resize(small, 64) == small
    shrunk = Image.open(io.BytesIO(maybe_resize(large, 64)))
    assert (shrunk.format, shrunk.size) == ("PNG", (64, 16))


def test_source_fields_that_clash_with_a_column_in_any_case_are_renamed():
    from autods.core.sample import meta_fields

    fields = meta_fields({"Label": "x", "size": 3, "filename": "a.jpg", "photographer": "p",
                          "tags": ["a", "b"], "exif": {"iso": 100}, "gone": None})
    assert fields == {"meta_Label": "x", "meta_size": 3, "meta_filename": "a.jpg",
                      "photographer": "p", "tags": ["a", "b"], "exif": '{"iso": 100}'}
