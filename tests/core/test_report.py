"""The report's pieces: thumbnails of any input, escaped text, charts that show the data."""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, datetime

from PIL import Image

from autods.core import charts
from autods.core.report import (
    Cluster,
    FunnelRow,
    Group,
    ReportPage,
    Tile,
    image_thumbnail,
    render,
    text_snippet,
)


def _png(size, mode="RGBA", colour=(255, 0, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, "PNG")
    return buf.getvalue()


def _decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_a_thumbnail_keeps_the_aspect_and_flattens_transparency_on_white():
    img = _decode(image_thumbnail(_png((400, 200))))
    assert img.size == (96, 48)
    assert img.convert("RGB").getpixel((48, 24)) >= (250, 250, 250)


def test_bytes_that_do_not_decode_have_no_thumbnail():
    assert image_thumbnail(b"not an image") is None
    assert image_thumbnail(_png((50, 50))[:40]) is None


def test_a_text_snippet_folds_whitespace_and_ends_with_an_ellipsis():
    assert text_snippet(b"a  b\n\tc") == "a b c"
    long = text_snippet("word " * 100, limit=20)
    assert len(long) == 20 and long.endswith("…")


def test_every_input_text_is_escaped_in_the_page():
    evil = '<script>alert(1)</script>"'
    page = ReportPage(
        dataset=evil, scope="all", generated_at=datetime(2026, 1, 1, tzinfo=UTC),
        funnel=[FunnelRow("inputs", evil, 3, 1.0)],
        clusters=[Cluster(Tile(uri=evil, key="ab" * 12), [Tile(uri=evil, note=evil)], 1)],
        n_clusters=1, rejects=[Group(evil, 1, 0.5, [Tile(uri=evil, text=evil)])],
        lf_table=[["LF", evil], ["x", evil]])
    out = render(page)
    assert "<script>alert" not in out
    assert out.count("<script>") == 1  # the page's own hover script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out


def test_an_empty_page_says_what_is_missing():
    out = render(ReportPage(dataset="d", scope="all", generated_at=datetime.now(UTC),
                            funnel=[]))
    for sentence in ("No inputs in this scope", "No duplicates were dropped",
                     "No input was rejected", "No sample has a label",
                     "No stage timings", "No embeddings"):
        assert sentence in out


def test_ticks_are_round_and_cover_the_range():
    assert charts.nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert charts.nice_ticks(0.0, 0.9)[:3] == [0.0, 0.2, 0.4]


def test_a_line_chart_draws_one_polyline_per_series_through_its_points():
    svg = charts.line_chart({"a": [(0, 0), (10, 100)], "b<": [(5, 50)]}, x_label="x",
                            y_label="y", title="t", width=200, height=100)
    lines = re.findall(r'points="([^"]*)"', svg)
    assert len(lines) == 2
    first = [tuple(map(float, p.split(","))) for p in lines[0].split()]
    # x grows to the right and y upwards: the second point is right of and above the first
    assert first[1][0] > first[0][0] and first[1][1] < first[0][1]
    assert "b&lt;" in svg and "b<" not in svg
    assert charts.line_chart({}, x_label="x", y_label="y", title="t") == ""


def test_a_scatter_point_carries_its_caption_and_thumbnail():
    svg = charts.scatter([charts.MapPoint(0, 0, 0, 'k1 "cat"', "data:image/jpeg;base64,AA"),
                          charts.MapPoint(1, 1, 1, "k2")], ["cat", "dog"], title="m")
    assert svg.count("<circle") == 2
    assert 'data-caption="k1 &quot;cat&quot;"' in svg
    assert svg.count("data-thumb=") == 1
    assert charts.colour(0) in svg and charts.colour(1) in svg
