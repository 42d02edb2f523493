"""The dataset report as one self-contained HTML page: what came in, what was dropped and
why, what the labels look like, where the time went, and a map of the embeddings.

Everything the page shows is in the file (thumbnails as data URIs, charts as inline SVG,
one small script for the map's hover box), so it opens from disk, from a mail attachment
or from the API with no server and no network. This module only renders; the pipeline's
``report`` module gathers the figures.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files

from jinja2 import Environment, select_autoescape
from markupsafe import Markup
from PIL import Image, ImageOps

#: Longest side of a thumbnail in pixels, and its JPEG quality: about 3 KB each.
THUMB_SIDE = 96
THUMB_QUALITY = 70
#: Characters of a text sample shown in place of a thumbnail.
TEXT_SNIPPET = 160


def image_thumbnail(data: bytes, side: int = THUMB_SIDE) -> str | None:
    """A JPEG data URI of the image, at most ``side`` pixels; transparency flattened on
    white. None when the bytes do not decode (a rejected input may be anything)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (side * 2, side * 2))
            img = ImageOps.exif_transpose(img)
            img.thumbnail((side, side))
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                img = Image.new("RGB", rgba.size, "white")
                img.paste(rgba, mask=rgba.getchannel("A"))
            buf = io.BytesIO()
            img.convert("RGB").save(buf, "JPEG", quality=THUMB_QUALITY)
    except Exception:  # noqa: BLE001 - Pillow raises many types for bad input
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def text_snippet(data: bytes | str, limit: int = TEXT_SNIPPET) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Tile:
    """One input as the galleries show it: a thumbnail, or a text snippet, and a caption."""

    uri: str
    key: str | None = None
    image: str | None = None
    text: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class FunnelRow:
    step: str
    name: str
    count: int
    share: float


@dataclass(frozen=True, slots=True)
class Cluster:
    """A kept sample and what it absorbed (each tile's note names the rule and score)."""

    kept: Tile
    absorbed: list[Tile]
    size: int


@dataclass(frozen=True, slots=True)
class Group:
    """A reject reason or a label: its count, a share, and a few examples."""

    name: str
    count: int
    share: float
    examples: list[Tile]
    extra: str | None = None


@dataclass(slots=True)
class ReportPage:
    """Everything one report shows; empty parts render as a sentence saying so."""

    dataset: str
    scope: str
    generated_at: datetime
    funnel: list[FunnelRow]
    clusters: list[Cluster] = field(default_factory=list)
    n_clusters: int = 0
    rejects: list[Group] = field(default_factory=list)
    labels: list[Group] = field(default_factory=list)
    label_chart: str = ""
    lf_table: list[list[str]] = field(default_factory=list)
    lf_summary: list[tuple[str, str]] = field(default_factory=list)
    lf_note: str | None = None
    throughput_chart: str = ""
    wait_chart: str = ""
    stage_rows: list[list[str]] = field(default_factory=list)
    slowest: list[list[str]] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    map_chart: str = ""
    map_note: str | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)


def _environment() -> Environment:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: f"{100 * v:.1f} %"
    env.filters["num"] = lambda v: f"{v:,}"
    return env


def render(page: ReportPage) -> str:
    """The page as HTML. Charts are trusted SVG built by ``autods.core.charts`` from
    escaped text; every other value is escaped by the template."""
    template = _environment().from_string(
        files("autods.core").joinpath("templates/report.html.j2").read_text("utf-8"))
    return template.render(page=page, svg=Markup)
