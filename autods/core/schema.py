"""Sample schemas: which fields a sample has, which are queryable, and how each is summed up.

A shard's ``manifest.parquet`` holds one column per queryable field, typed by the schema
(not inferred from the values), so every shard of a schema version has the same columns and
types and one read over all manifests of a dataset never meets two types for one column.
A field added in a later version is absent from older shards: readers see it as null there,
and a query that needs it skips those shards by their ``manifest.json``.

Each field names its aggregate, the summary ``manifest.json`` keeps per shard:
``categorical`` (value counts, or a Bloom filter past ``MAX_CATEGORIES``), ``numeric``
(range, mean, histogram), ``set`` (a list field's values, or a Bloom filter), ``time`` (ISO
range) or ``None`` for per-sample identifiers (uri, sha256, phash), whose only summary is
how many are null.

Fields a source brings along (``metadata.jsonl`` keys) are not declared anywhere: they join
the manifest with their inferred type and the aggregate that type suggests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

Aggregate = Literal["categorical", "numeric", "set", "time"]

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "list<string>": pa.list_(pa.string()),
}


@dataclass(frozen=True, slots=True)
class Field:
    """One field: its arrow type, its aggregate, and the schema version that added it."""

    name: str
    type: str
    aggregate: Aggregate | None
    since: int = 1
    queryable: bool = True

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.type]


@dataclass(frozen=True, slots=True)
class SampleSchema:
    """A named, versioned list of fields; ``fields`` holds every version's fields."""

    name: str
    version: int
    fields: tuple[Field, ...]

    def queryable(self) -> list[Field]:
        """The fields of this version that go into ``manifest.parquet``."""
        return [f for f in self.fields if f.queryable and f.since <= self.version]

    def field(self, name: str) -> Field | None:
        return next((f for f in self.queryable() if f.name == name), None)

    def describe(self) -> dict[str, Any]:
        """The schema as a dataset declares it (in its versions and ``autods schema``)."""
        return {"name": self.name, "version": self.version,
                "fields": [{"name": f.name, "type": f.type, "aggregate": f.aggregate,
                            "since": f.since} for f in self.queryable()]}


def _f(name: str, type_: str, aggregate: Aggregate | None, since: int = 1) -> Field:
    return Field(name, type_, aggregate, since)


#: The image/text sample every build writes. Version 1 is what shards were written with
#: before schemas were declared (label fields only in labelled shards, no caption text);
#: version 2 writes every field in every shard (label fields null when a job does not
#: label) and adds the caption text. Version 3 adds the split, the model of the sample's
#: vector and a text's detected language.
SAMPLE = SampleSchema("autods.sample", 3, (
    _f("sha256", "string", None),
    _f("uri", "string", None),
    _f("phash", "string", None),
    _f("modality", "string", "categorical"),
    _f("source", "string", "categorical"),
    _f("license", "string", "categorical"),
    _f("format", "string", "categorical"),
    _f("mode", "string", "categorical"),
    _f("nbytes", "int64", "numeric"),
    _f("width", "int64", "numeric"),
    _f("height", "int64", "numeric"),
    _f("has_caption", "bool", "categorical"),
    _f("ordinal", "int64", "numeric"),
    _f("job", "int64", "numeric"),
    _f("ingested_at", "string", "time"),
    _f("label_id", "int64", "numeric"),
    _f("label", "string", "categorical"),
    _f("confidence", "float64", "numeric"),
    _f("label_model", "string", "categorical"),
    _f("caption", "string", None, since=2),
    _f("split", "string", "categorical", since=3),
    _f("embedding_model", "string", "categorical", since=3),
    _f("language", "string", "categorical", since=3),
    _f("label_prob", "float64", "numeric", since=4),
    _f("label_source", "string", "categorical", since=4),
))


#: Names an answer or a query uses itself: the location columns and the manifest file.
RESERVED = frozenset({"key", "shard", "offset", "size", "filename"})


def extra_column(name: str, schema: SampleSchema) -> str:
    """The manifest column of a source's own field: its name, unless the schema or a
    query's own columns use it (in any case, as SQL ignores case), or it starts with
    ``__``; then ``meta_<name>``."""
    taken = {f.name for f in schema.queryable()} | RESERVED
    if name.lower() in taken or name.startswith("__"):
        return f"meta_{name}"
    return name
