"""Votes are named again from the spec they were cast under: by a label model's report
when one was fitted with that spec (no user code runs), never by a module that changed."""

from __future__ import annotations

from autods.core.label import spec_version
from autods.core.lfreport import LfReport, LfRow
from autods.db.models import Asset, Dataset, Item, Job, LabelModelRow, LfVote
from autods.db.session import session_scope
from autods.pipeline.lineage import lineage

LABELS = ["cat", "dog"]
LFS = ["lf_meow", "lf_woof"]
# A module this process cannot import: only the label model's report can name the LFs.
MODULE = "no_such_lfs_module"
SHA = "ab" * 32


def _report() -> dict:
    rows = [LfRow(name=n, polarity=[], coverage=0.0, overlaps=0.0, conflicts=0.0, votes=0)
            for n in LFS]
    return LfReport(n_samples=1, n_gold=0, coverage=0.0, abstain_rate=1.0, conflict_rate=0.0,
                    lfs=rows, model={"labels": LABELS}).to_dict()


def _one_voted_input(rt, tmp_path, spec: str) -> None:
    with session_scope(rt.engine) as db:
        ds = Dataset(name="d", output_url=(tmp_path / "none").as_uri())
        db.add(ds)
        db.flush()
        job = Job(dataset_id=ds.id, sources=[], params={"lfs": MODULE}, fingerprint="f")
        asset = Asset(dataset_id=ds.id, sha256=SHA, modality="image", mime="image/png",
                      ext="png", nbytes=3, storage_key="raw/x.png")
        db.add_all([job, asset])
        db.flush()
        item = Item(job_id=job.id, ordinal=0, chunk_no=0, modality="image", uri="file:///a.png",
                    asset_id=asset.id, status="ingested")
        db.add(item)
        db.flush()
        db.add(LfVote(item_id=item.id, votes=[1, -1], spec_version=spec))
        db.add(LabelModelRow(dataset_id=ds.id, version="lm-x", source_version=1, job_id=job.id,
                             lfs=MODULE, info=_report()))


def test_votes_are_named_by_the_label_model_fitted_with_their_spec(runtime, tmp_path):
    _one_voted_input(runtime, tmp_path, spec_version(MODULE, LABELS, LFS))

    (found,) = lineage(runtime, "d", SHA[:24])

    votes = found.inputs[0].votes
    assert [(v.lf, v.vote, v.label) for v in votes.votes] == [("lf_meow", 1, "dog"),
                                                             ("lf_woof", -1, None)]
    assert votes.lfs_module == MODULE and found.versions == ()


def test_votes_of_a_changed_spec_keep_their_values_without_names(runtime, tmp_path):
    _one_voted_input(runtime, tmp_path, spec_version(MODULE, LABELS, ["lf_old", "lf_woof"]))

    (found,) = lineage(runtime, "d", "file:///a.png")

    assert [(v.lf, v.vote, v.label) for v in found.inputs[0].votes.votes] == [
        (None, 1, None), (None, -1, None)]
