"""Sources: every spec kind yields the right items, in a stable order, bad rows included."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autods.core.records import Modality, SourceItem
from autods.core.sources import iter_source, parse_metadata, source_kind
from autods.core.storage import s3_client

PNG_BYTES = b"\x89PNG\r\n\x1a\nnot really, ingest decides"


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def summary(items: list[SourceItem]) -> list[tuple]:
    return [(i.ordinal, i.uri, i.error) for i in items]


# folders


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    write(root / "a.jpg", b"jpeg-a")
    write(root / "b.PNG", PNG_BYTES)
    write(root / "b.txt", "  caption for b \n")
    write(root / "e.Tiff", b"tiff")
    write(root / "f.gif", b"this is not a gif")  # listed anyway: ingest rejects it
    write(root / "my photo é.webp", b"webp")
    write(root / "notes.md", "ignored")
    write(root / "readme.txt", "no image with this stem: ignored")
    write(root / ".DS_Store", b"\0")
    write(root / ".cache" / "hidden.jpg", b"hidden")
    write(root / "sub" / "c.JPEG", b"jpeg-c")
    write(root / "sub" / "c.txt", "caption file wins")
    write(root / "sub" / "deeper" / "d.bmp", b"bmp")
    write(root / "metadata.jsonl", jsonl(
        {"file_name": "a.jpg", "caption": "meta caption a", "license": "CC-BY-4.0",
         "source": "camera", "rating": 5},
        {"file_name": "sub/deeper/d.bmp", "source": "root metadata", "tags": ["x", "y"]},
        {"file_name": "sub/c.JPEG", "license": "overridden by sub/metadata.jsonl"},
    ))
    write(root / "sub" / "metadata.jsonl", jsonl(
        {"file_name": "c.JPEG", "caption": "meta caption c", "license": "MIT", "extra": 1},
    ))
    return root


def test_folder_items_are_sorted_with_captions_and_metadata(tree: Path):
    items = list(iter_source(str(tree), start_ordinal=10))
    rels = ["a.jpg", "b.PNG", "e.Tiff", "f.gif", "my photo é.webp", "sub/c.JPEG",
            "sub/deeper/d.bmp"]
    assert [i.uri for i in items] == [(tree / r).as_uri() for r in rels]
    assert [i.ordinal for i in items] == list(range(10, 17))
    assert all(i.modality is Modality.IMAGE and i.error is None for i in items)
    by_name = {r: i for r, i in zip(rels, items, strict=True)}

    a = by_name["a.jpg"]
    assert (a.caption, a.license, a.source, a.meta) == (
        "meta caption a", "CC-BY-4.0", "camera", {"rating": 5})
    assert by_name["b.PNG"].caption == "caption for b"
    c = by_name["sub/c.JPEG"]
    assert (c.caption, c.license, c.meta) == ("caption file wins", "MIT", {"extra": 1})
    d = by_name["sub/deeper/d.bmp"]
    assert (d.caption, d.source, d.meta) == (None, "root metadata", {"tags": ["x", "y"]})
    assert by_name["f.gif"].caption is None and by_name["f.gif"].meta == {}
    assert "%C3%A9" in by_name["my photo é.webp"].uri and " " not in items[4].uri


def test_folder_listing_is_deterministic_and_kind_is_folder(tree: Path):
    assert summary(list(iter_source(str(tree)))) == summary(list(iter_source(str(tree))))
    assert source_kind(str(tree)) == "folder"
    assert [i.uri for i in iter_source(tree.as_uri())] == [i.uri for i in iter_source(str(tree))]


def test_empty_folder_yields_nothing(tmp_path: Path):
    assert list(iter_source(str(tmp_path))) == []
    assert source_kind(str(tmp_path)) == "folder"


def test_undecodable_caption_file_is_flagged_not_fatal(tmp_path: Path):
    write(tmp_path / "x.png", PNG_BYTES)
    write(tmp_path / "x.txt", b"caf\xe9 latin-1")
    write(tmp_path / "y.png", PNG_BYTES)
    write(tmp_path / "y.txt", "\ufeffwith a BOM\n".encode())
    x, y = iter_source(str(tmp_path))
    assert x.caption is None and x.meta == {"caption_error": "invalid_utf8"}
    assert y.caption == "with a BOM" and y.meta == {}


def test_malformed_metadata_lines_are_skipped_counted_and_logged(tmp_path: Path, caplog):
    write(tmp_path / "ok.jpg", b"j")
    write(tmp_path / "metadata.jsonl", (
        b'{"file_name": "ok.jpg", "license": "CC0-1.0", "caption": "fine"}\n'
        b"{not json\n"
        b"[1, 2]\n"
        b'{"caption": "no file_name"}\n'
        b'{"file_name": "../outside.jpg", "license": "x"}\n'
        b"\n"
    ) + b'{"file_name": "\xff.jpg"}\n')
    with caplog.at_level(logging.WARNING, logger="autods.core.sources"):
        (item,) = iter_source(str(tmp_path))
    assert (item.caption, item.license) == ("fine", "CC0-1.0")
    assert "5 malformed metadata line(s) skipped" in caplog.text
    rows, malformed = parse_metadata((tmp_path / "metadata.jsonl").read_bytes(), "m")
    assert list(rows) == ["ok.jpg"] and malformed == 5


def test_metadata_file_name_is_normalised(tmp_path: Path):
    write(tmp_path / "sub" / "z.png", PNG_BYTES)
    write(tmp_path / "metadata.jsonl", jsonl({"file_name": "./sub//z.png", "license": "L"}))
    (item,) = iter_source(str(tmp_path))
    assert item.license == "L"


# URL lists


def test_txt_url_list(tmp_path: Path):
    path = write(tmp_path / "urls.txt", (
        b"# a comment\n"
        b"\n"
        b"https://example.com/a.jpg\n"
        b"   http://example.com/b.png   \n"
        b"ftp://example.com/c.jpg\n"
        b"file:///etc/passwd\n"
    ) + b"https://example.com/\xff.jpg\n" + b"HTTPS://EXAMPLE.COM/D.JPG\n")
    items = list(iter_source(str(path), start_ordinal=3))
    assert source_kind(str(path)) == "urls"
    assert summary(items) == [
        (3, "https://example.com/a.jpg", None),
        (4, "http://example.com/b.png", None),
        (5, "ftp://example.com/c.jpg", "blocked_scheme"),
        (6, "file:///etc/passwd", "blocked_scheme"),
        (7, f"{path.as_uri()}#7", "invalid_utf8"),
        (8, "HTTPS://EXAMPLE.COM/D.JPG", None),
    ]
    assert all(i.modality is Modality.IMAGE for i in items)


def test_csv_url_list_with_bom_extra_columns_and_bad_rows(tmp_path: Path):
    body = (
        "\ufeffURL,caption,license,source,width\n"
        "https://e.com/1.jpg,\"a cat, sitting\",CC-BY-4.0,web,640\n"
        ",no url here,,,\n"
        "javascript:alert(1),x,,,\n"
        "https://e.com/2.jpg,\"two\nlines\",,,\n"
        "https://e.com/3.jpg,a,b,c,d,too many\n"
        "\n"
        "https://e.com/4.jpg\n"
    ).encode() + b"https://e.com/5.jpg,caf\xe9,,,\n" + b"https://e.com/6.jpg,six,,,\n"
    path = write(tmp_path / "urls.csv", body)
    items = list(iter_source(str(path)))
    f = path.as_uri()
    assert summary(items) == [
        (0, "https://e.com/1.jpg", None),
        (1, f"{f}#3", "bad_record"),
        (2, "javascript:alert(1)", "blocked_scheme"),
        (3, "https://e.com/2.jpg", None),
        (4, f"{f}#7", "bad_record"),
        (5, "https://e.com/4.jpg", None),
        (6, f"{f}#10", "invalid_utf8"),
        (7, "https://e.com/6.jpg", None),
    ]
    first = items[0]
    assert (first.caption, first.license, first.source, first.meta) == (
        "a cat, sitting", "CC-BY-4.0", "web", {"width": "640"})
    assert items[3].caption == "two\nlines"
    assert items[5].caption is None and items[5].meta == {}
    assert source_kind(str(path)) == "urls"


def test_jsonl_url_list_keeps_every_line_accounted_for(tmp_path: Path):
    body = (
        jsonl({"url": "https://e.com/1.jpg", "caption": "one", "license": "CC0-1.0",
               "source": "s", "id": 7, "nested": {"k": [1]}})
        + "{broken json\n"
        + "\n"
        + jsonl(["not", "an", "object"], {"caption": "no url"}, {"url": 12},
                {"url": "data:image/png;base64,AAAA"}, {"url": "http://[::1/x.jpg"})
    )
    path = write(tmp_path / "urls.jsonl", body.encode() + b'{"url": "https://e.com/\xff"}\n')
    items = list(iter_source(str(path)))
    f = path.as_uri()
    assert summary(items) == [
        (0, "https://e.com/1.jpg", None),
        (1, f"{f}#2", "bad_record"),
        (2, f"{f}#4", "bad_record"),
        (3, f"{f}#5", "bad_record"),
        (4, f"{f}#6", "bad_record"),
        (5, "data:image/png;base64,AAAA", "blocked_scheme"),
        (6, f"{f}#8", "bad_record"),
        (7, f"{f}#9", "invalid_utf8"),
    ]
    assert items[0].meta == {"id": 7, "nested": {"k": [1]}}
    assert (items[0].caption, items[0].license, items[0].source) == ("one", "CC0-1.0", "s")
    assert source_kind(str(path)) == "urls"


def test_parquet_url_list(tmp_path: Path):
    table = pa.table({
        "url": ["https://e.com/1.jpg", None, "s3://bucket/key.jpg", "https://e.com/2.jpg"],
        "caption": ["one", "x", None, ""],
        "license": ["CC0-1.0", None, None, None],
        "score": [0.5, 0.1, 0.2, 0.9],
    })
    path = tmp_path / "urls.parquet"
    pq.write_table(table, path)
    items = list(iter_source(str(path), start_ordinal=1))
    assert summary(items) == [
        (1, "https://e.com/1.jpg", None),
        (2, f"{path.as_uri()}#2", "bad_record"),
        (3, "s3://bucket/key.jpg", "blocked_scheme"),
        (4, "https://e.com/2.jpg", None),
    ]
    assert (items[0].caption, items[0].license, items[0].meta) == ("one", "CC0-1.0",
                                                                  {"score": 0.5})
    assert items[3].caption is None
    assert source_kind(str(path)) == "urls"


def test_records_with_both_url_and_text_are_a_url_list(tmp_path: Path):
    path = write(tmp_path / "mixed.jsonl", jsonl({"url": "https://e.com/a.jpg", "text": "t"}))
    assert source_kind(str(path)) == "urls"
    (item,) = iter_source(str(path))
    assert item.uri == "https://e.com/a.jpg" and item.meta == {"text": "t"}


# text records


def test_csv_text_records_with_a_non_utf8_line(tmp_path: Path):
    body = (
        b"text,license,source,lang\n"
        b"A red circle.,CC0-1.0,synthetic,en\n"
        b"Un carr\xe9 bleu.,CC0-1.0,synthetic,fr\n"
        b"\"Stripes, in two\nlines\",,,\n"
        b",,,\n"
    )
    path = write(tmp_path / "texts.csv", body)
    assert source_kind(str(path)) == "texts"
    items = list(iter_source(str(path)))
    f = path.as_uri()
    assert summary(items) == [
        (0, f"{f}#2", None), (1, f"{f}#3", "invalid_utf8"), (2, f"{f}#4", None),
        (3, f"{f}#6", None),
    ]
    assert all(i.modality is Modality.TEXT for i in items)
    first = items[0]
    assert (first.text, first.license, first.source, first.meta) == (
        "A red circle.", "CC0-1.0", "synthetic", {"lang": "en"})
    assert items[2].text == "Stripes, in two\nlines" and items[2].license is None
    assert items[3].text == ""  # present but empty: ingest decides


def test_jsonl_text_records_with_bad_rows(tmp_path: Path):
    body = jsonl(
        {"text": "A triangle has three sides.", "license": "CC0-1.0", "source": "s", "n": 1},
        {"text": 42},
        {"license": "no text"},
    ).encode() + b'{"text": "caf\xe9"}\n' + b"{oops\n" + jsonl({"text": "last"}).encode()
    path = write(tmp_path / "texts.jsonl", body)
    assert source_kind(str(path)) == "texts"
    items = list(iter_source(str(path)))
    f = path.as_uri()
    assert summary(items) == [
        (0, f"{f}#1", None), (1, f"{f}#2", "bad_record"), (2, f"{f}#3", "bad_record"),
        (3, f"{f}#4", "invalid_utf8"), (4, f"{f}#5", "bad_record"), (5, f"{f}#6", None),
    ]
    assert all(i.modality is Modality.TEXT for i in items)
    assert items[0].text == "A triangle has three sides." and items[0].meta == {"n": 1}
    assert items[5].text == "last" and items[1].text is None


def test_parquet_text_records(tmp_path: Path):
    path = tmp_path / "texts.parquet"
    pq.write_table(pa.table({"text": ["one", None, "three"], "source": ["a", "b", "c"]}), path)
    items = list(iter_source(str(path)))
    assert source_kind(str(path)) == "texts"
    assert [(i.text, i.error, i.source) for i in items] == [
        ("one", None, "a"), (None, "bad_record", None), ("three", None, "c")]


def test_empty_record_files_yield_nothing(tmp_path: Path):
    for name in ("e.txt", "e.csv", "e.jsonl"):
        assert list(iter_source(str(write(tmp_path / name, b"")))) == []


# spec errors


def test_unknown_specs_are_refused_early(tmp_path: Path):
    with pytest.raises(ValueError, match="not found"):
        iter_source(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="unsupported source"):
        iter_source(str(write(tmp_path / "data.xml", "<x/>")))
    with pytest.raises(ValueError, match="bucket"):
        source_kind("s3:///prefix")


# S3 prefixes


@pytest.fixture
def bucket(s3_endpoint):
    client = s3_client(s3_endpoint, "us-east-1")
    name = f"src-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return client, name


def put(client, bucket: str, key: str, body: bytes | str) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=body)


def test_s3_prefix_with_captions_and_metadata(bucket):
    client, name = bucket
    put(client, name, "photos/b.PNG", PNG_BYTES)
    put(client, name, "photos/a.jpg", b"jpeg")
    put(client, name, "photos/a.txt", "caption object")
    put(client, name, "photos/sub/", b"")  # a console-made folder marker
    put(client, name, "photos/sub/c.webp", b"webp")
    put(client, name, "photos/sub/metadata.jsonl", jsonl(
        {"file_name": "c.webp", "caption": "meta c", "license": "MIT", "camera": "x"}))
    put(client, name, "photos/metadata.jsonl", "{bad\n" + jsonl(
        {"file_name": "a.jpg", "caption": "loses to a.txt", "license": "CC0-1.0"}))
    put(client, name, "photos/readme.md", "ignored")
    put(client, name, "photos/.hidden.jpg", b"hidden")
    put(client, name, "photos2/not-under-prefix.jpg", b"x")
    spec = f"s3://{name}/photos"
    assert source_kind(spec) == "s3"
    items = list(iter_source(spec, start_ordinal=5, s3_client=client))
    assert summary(items) == [
        (5, f"s3://{name}/photos/a.jpg", None),
        (6, f"s3://{name}/photos/b.PNG", None),
        (7, f"s3://{name}/photos/sub/c.webp", None),
    ]
    a, b, c = items
    assert (a.caption, a.caption_uri, a.license) == (None, f"s3://{name}/photos/a.txt",
                                                     "CC0-1.0")
    assert (b.caption, b.caption_uri, b.license, b.meta) == (None, None, None, {})
    assert (c.caption, c.caption_uri, c.license, c.meta) == ("meta c", None, "MIT",
                                                             {"camera": "x"})


def test_s3_whole_bucket_and_default_client(bucket, s3_endpoint, monkeypatch):
    client, name = bucket
    put(client, name, "z.gif", b"gif")
    put(client, name, "dir/y.jpg", b"jpg")
    items = list(iter_source(f"s3://{name}", s3_client=client))
    assert [i.uri for i in items] == [f"s3://{name}/dir/y.jpg", f"s3://{name}/z.gif"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    assert [i.uri for i in iter_source(f"s3://{name}/")] == [i.uri for i in items]


def test_s3_missing_bucket_is_a_bad_spec(s3_endpoint):
    client = s3_client(s3_endpoint, "us-east-1")
    with pytest.raises(ValueError, match="NoSuchBucket"):
        list(iter_source("s3://no-such-bucket-here/x", s3_client=client))


def test_a_text_with_a_lone_surrogate_is_one_rejected_item(tmp_path: Path):
    path = tmp_path / "texts.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "bad \\udcff here"}\n{"text": "also fine"}\n')

    items = list(iter_source(str(path)))

    assert [i.error for i in items] == [None, "invalid_utf8", None]
    assert items[1].text is None and items[2].text == "also fine"


@pytest.mark.parametrize("spec", ["s3://", "s3:///x/", "s3://Bad_Bucket/x/", "s3://ab/x/",
                                  "s3://bucket/a\x00b/"])
def test_s3_specs_that_name_no_valid_bucket_are_refused_before_listing(spec):
    from autods.core.records import SourceError

    with pytest.raises(SourceError):
        iter_source(spec, s3_client=object())


def test_a_metadata_file_over_the_limit_is_refused_not_read(tmp_path: Path, monkeypatch):
    from autods.core import sources
    from autods.core.records import SourceError

    monkeypatch.setattr(sources, "MAX_METADATA_BYTES", 100)
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.jpg", "caption": "c"}\n' * 10)

    with pytest.raises(SourceError, match="metadata over 100 bytes"):
        list(iter_source(str(tmp_path)))


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.text(max_size=40),
    st.builds(lambda s, rest: f"{s}://{rest}",
              st.sampled_from(["http", "HTTPS", "ftp", "s3", "h2tp", "ht-tp", "file", ""]),
              st.text(max_size=30))))
def test_the_scheme_shortcut_agrees_with_urlsplit(url):
    from urllib.parse import urlsplit

    from autods.core.sources import _scheme

    try:
        expected = urlsplit(url).scheme.lower()
    except ValueError:
        with pytest.raises(ValueError):
            _scheme(url)
        return
    assert _scheme(url) == expected
