"""Zero-shot LFs against the real sentence model: class prompts vote by cosine margin."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from autods.core.label import ABSTAIN, LabelSpec, apply_lfs, data_point, keyword_lf
from autods.core.textembed import DEFAULT_NAME, SentenceEmbedder
from autods.core.zeroshot import ZeroShot, bind_zero_shot, zero_shot_lf

PROMPTS = {0: ["a terrible, boring film"], 1: ["a wonderful, moving film"]}
POSITIVE = "an absolutely wonderful movie, I loved it"
NEGATIVE = "the worst movie I have ever seen, dull and stupid"


@pytest.fixture(scope="module")
def embedder() -> Iterator[SentenceEmbedder]:
    """The bundled all-MiniLM-L6-v2, loaded once for the module."""
    yield SentenceEmbedder()


@pytest.fixture(scope="module")
def vectors(embedder: SentenceEmbedder) -> dict[str, np.ndarray]:
    pos, neg = embedder.embed_texts([POSITIVE, NEGATIVE])
    return {"pos": pos, "neg": neg}


def _bound(embedder: SentenceEmbedder, **kwargs: Any):
    lf = zero_shot_lf("zs_sentiment", PROMPTS, **kwargs)
    assert bind_zero_shot([lf], lambda modality: embedder) == 1
    return lf


def _point(text: str, vector: np.ndarray | None, model: str | None,
           modality: str = "text") -> SimpleNamespace:
    return data_point(text=text, modality=modality, embedding=vector, embedding_model=model)


def test_votes_the_class_whose_prompts_are_closest(embedder, vectors) -> None:
    """A glowing review votes 1 and a scathing one 0 with the default margin."""
    lf = _bound(embedder)
    assert embedder.name == DEFAULT_NAME
    assert lf(_point(POSITIVE, vectors["pos"], embedder.name)) == 1
    assert lf(_point(NEGATIVE, vectors["neg"], embedder.name)) == 0


def test_a_point_with_no_model_name_still_votes(embedder, vectors) -> None:
    """Only a different model name abstains: an unnamed vector is taken as it is."""
    lf = _bound(embedder)
    assert lf(_point(POSITIVE, vectors["pos"], None)) == 1


def test_the_label_matrix_holds_the_votes(embedder, vectors) -> None:
    """Applied with Snorkel's applier beside a keyword LF, votes land in the matrix."""
    zs = _bound(embedder)
    spec = LabelSpec(labels=["neg", "pos"], lfs=[zs, keyword_lf("kw", 1, ["loved"])],
                     source="t")
    points = [_point(POSITIVE, vectors["pos"], embedder.name),
              _point(NEGATIVE, vectors["neg"], embedder.name),
              _point(NEGATIVE, None, None)]
    assert apply_lfs(spec, points).tolist() == [[1, 1], [0, ABSTAIN], [ABSTAIN, ABSTAIN]]


def test_abstains_when_the_margin_is_not_met(embedder, vectors) -> None:
    """A cosine lead of a whole 1.0 is never reached by these texts."""
    lf = _bound(embedder, margin=1.0)
    assert lf(_point(POSITIVE, vectors["pos"], embedder.name)) == ABSTAIN
    assert lf(_point(NEGATIVE, vectors["neg"], embedder.name)) == ABSTAIN


def test_abstains_on_another_modality(embedder, vectors) -> None:
    """A text LF does not vote on an image sample, whatever its vector."""
    lf = _bound(embedder)
    assert lf(_point(POSITIVE, vectors["pos"], embedder.name, modality="image")) == ABSTAIN


def test_abstains_without_an_embedding(embedder) -> None:
    """A sample with no vector abstains."""
    lf = _bound(embedder)
    assert lf(_point(POSITIVE, None, embedder.name)) == ABSTAIN


def test_abstains_on_a_vector_from_another_model(embedder, vectors) -> None:
    """A vector of another model's space abstains though its dimension matches."""
    lf = _bound(embedder)
    assert lf(_point(POSITIVE, vectors["pos"], "clip-vit-b-32")) == ABSTAIN


def test_abstains_on_a_zero_or_wrong_sized_vector(embedder, vectors) -> None:
    """A zero vector or one of another dimension cannot be compared: abstain."""
    lf = _bound(embedder)
    zero = np.zeros_like(vectors["pos"])
    assert lf(_point(POSITIVE, zero, embedder.name)) == ABSTAIN
    assert lf(_point(POSITIVE, vectors["pos"][:100], embedder.name)) == ABSTAIN


def test_an_unbound_lf_refuses_to_vote_on_an_embedding(vectors) -> None:
    """Used before its encoder was bound, a zero-shot LF raises."""
    lf = zero_shot_lf("zs_unbound", PROMPTS)
    with pytest.raises(RuntimeError, match="before its encoder was bound"):
        lf(_point(POSITIVE, vectors["pos"], DEFAULT_NAME))
    assert lf(_point(POSITIVE, None, None)) == ABSTAIN


@pytest.mark.parametrize("prompts", [{}, {0: "only one class"}, {1: ["a", "b"]}])
def test_fewer_than_two_classes_is_refused(prompts: dict[int, Any]) -> None:
    """A zero-shot LF needs prompts for two classes or more."""
    with pytest.raises(ValueError, match="at least two classes"):
        zero_shot_lf("zs", prompts)


def test_prompts_are_normalised_and_classes_sorted() -> None:
    """A single prompt string becomes a one-item list; classes are kept in index order."""
    zs = ZeroShot({2: "c", 0: ["a", "aa"]}, margin=0.1, modality="image")
    assert zs.classes == [0, 2]
    assert zs.prompts == {0: ["a", "aa"], 2: ["c"]}


def test_bind_counts_zero_shot_lfs_and_ignores_keyword_lfs(embedder) -> None:
    """Only zero-shot LFs are bound, each by the encoder of its modality."""
    asked: list[str] = []

    def encoder_for(modality: str) -> SentenceEmbedder:
        asked.append(modality)
        return embedder

    text_lf = zero_shot_lf("zs_text", PROMPTS)
    image_lf = zero_shot_lf("zs_image", {0: "a cat", 1: "a dog"}, modality="image")
    keyword = keyword_lf("kw", 0, ["boring"])
    assert bind_zero_shot([keyword, text_lf, image_lf], encoder_for) == 2
    assert asked == ["text", "image"]
    assert text_lf._f.model_name == DEFAULT_NAME
    assert text_lf._f._centroids.shape == (2, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(text_lf._f._centroids, axis=1), 1.0, atol=1e-6)
    assert bind_zero_shot([keyword], encoder_for) == 0
    assert asked == ["text", "image"]
