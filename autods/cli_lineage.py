"""``autods lineage`` as a person reads it: one tree per content (its inputs and their
fates, votes and labels, its features and gold label), then the versions that hold it."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from autods.pipeline.lineage import Input, Lineage


def lineage_view(found: Lineage) -> Group:
    """The lineage as a tree and a table; only the votes cast are shown, not abstains."""
    if found.key is None:
        tree = Tree(Text("no content: rejected before its bytes were hashed", "bold"))
    else:
        tree = Tree(Text.assemble((found.key, "bold"), f" {found.modality} {found.mime}, "
                                  f"{found.nbytes} bytes, sha256 {found.sha256}"))
    inputs = tree.add(f"inputs ({len(found.inputs)})")
    for item in found.inputs:
        _input(inputs, item)
    f = found.features
    if f is not None:
        facts = [f"pHash {f.phash}" if f.phash else None,
                 f"check hash {f.check_hash}" if f.check_hash else None,
                 f"{f.width}x{f.height} {f.format} {f.mode}" if f.width else None,
                 f"language {f.language} ({f.language_score:.2f})" if f.language else None,
                 f"not decoded: {f.error} ({f.error_detail})" if f.error else None,
                 f"embedding {f.embedding_model} in {f.embedding_key} row {f.embedding_row}"
                 if f.embedding_key else None]
        tree.add(Text("features: " + "; ".join(x for x in facts if x)))
    if found.gold is not None:
        g = found.gold
        tree.add(Text(f"gold: {g.label} by {g.annotator} ({g.annotated_at:%Y-%m-%d %H:%M}), "
                      f"imported from {g.origin}"))
    if found.forgotten is not None:
        tree.add(f"forgotten by job {found.forgotten.job} at {found.forgotten.at:%Y-%m-%d %H:%M}")
    if not found.versions:
        return Group(tree, Text("in no version" if found.key else ""))
    splits = any(p.split for p in found.versions)
    table = Table("version", "made by", "shard", "offset", "size", "label", "label from",
                  *(["split"] if splits else []), box=box.SIMPLE_HEAD, pad_edge=False,
                  title="versions that hold it", title_justify="left")
    for p in found.versions:
        table.add_row(*("-" if v is None else str(v) for v in (
            p.version, f"{p.kind} job {p.job}", p.shard, p.offset, p.size, p.label,
            p.label_source, *([p.split] if splits else []))))
    return Group(tree, table)


def _input(parent: Tree, item: Input) -> None:
    fate = item.fate
    when = f", ingested {item.ingested_at:%Y-%m-%d %H:%M:%S}" if item.ingested_at else ""
    node = parent.add(Text(f"job {fate.job} ({item.job_kind}) #{fate.ordinal} {fate.uri}"
                           + (f", source {item.source}" if item.source else "") + when))
    node.add(Text(fate.sentence()))
    if item.votes is not None:
        cast = [f"{v.lf or '?'}={v.label or v.vote}" for v in item.votes.votes if v.vote >= 0]
        node.add(Text(f"votes ({item.votes.spec_version}): "
                      + (", ".join(cast) or "all abstained")))
    if item.label is not None:
        lb = item.label
        node.add(Text(f"label {lb.name or lb.label} p={lb.probability:.3f} "
                      f"model {lb.model_version}" + (" (gold)" if lb.gold else "")))
