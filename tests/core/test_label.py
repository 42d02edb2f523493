import sys
import textwrap

import numpy as np
import pytest

from autods.core.label import ABSTAIN, apply_lfs, data_point, fit_predict, load_spec


@pytest.fixture
def lf_module(tmp_path, monkeypatch):
    (tmp_path / "pets_lfs.py").write_text(textwrap.dedent('''
        from snorkel.labeling import labeling_function
        LABELS = ["cat", "dog"]

        @labeling_function()
        def lf_wide_is_dog(x):
            return 1 if x.width and x.width > 2 * x.height else -1

        @labeling_function()
        def lf_whiskers(x):
            return 0 if x.caption and "whisker" in x.caption else -1
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "pets_lfs"
    sys.modules.pop("pets_lfs", None)


def test_spec_collects_user_and_builtin_lfs_in_order(lf_module):
    spec = load_spec(lf_module)
    assert spec.labels == ["cat", "dog"]
    assert [lf.name for lf in spec.lfs] == [
        "lf_whiskers", "lf_wide_is_dog", "builtin_mentions_0", "builtin_mentions_1"]
    assert spec.version.startswith("lm-") and spec.version == load_spec(lf_module).version


def test_module_without_labels_is_refused(tmp_path, monkeypatch):
    (tmp_path / "nolabels.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="LABELS"):
        load_spec("nolabels")


def test_label_matrix_and_label_model(lf_module):
    spec = load_spec(lf_module)
    points = [
        data_point(caption="a cat with whiskers", modality="image", width=10, height=10),
        data_point(caption="two dogs", modality="image", width=40, height=10),
        data_point(caption="nothing to say", modality="image", width=10, height=10),
        data_point(text="my cat sleeps", modality="text"),
    ] * 5
    matrix = apply_lfs(spec, points)
    assert matrix.shape == (20, 4)
    assert matrix[0].tolist() == [0, ABSTAIN, 0, ABSTAIN]
    assert matrix[1].tolist() == [ABSTAIN, 1, ABSTAIN, 1]
    labels, conf = fit_predict(spec, matrix, epochs=100, seed=0)
    assert labels[:4].tolist() == [0, 1, ABSTAIN, 0]
    assert (conf[[0, 1, 3]] > 0.5).all()


def test_no_votes_means_no_fit_and_no_labels(lf_module):
    spec = load_spec(lf_module)
    labels, conf = fit_predict(spec, np.full((3, 4), ABSTAIN), epochs=10, seed=0)
    assert labels.tolist() == [ABSTAIN] * 3 and conf.tolist() == [0.0] * 3
