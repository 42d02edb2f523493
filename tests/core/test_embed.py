import io

import numpy as np
import pytest
from PIL import Image

from autods.core.embed import ClipEmbedder, npy_bytes


@pytest.fixture(scope="module")
def embedder():
    return ClipEmbedder("autods-tiny-vit", pretrained="", device="cpu", batch_size=3)


def _png(mode: str, color) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (40, 30), color).save(buf, "PNG")
    return buf.getvalue()


def test_images_of_any_mode_embed_to_unit_vectors(embedder):
    blobs = [_png("RGBA", (255, 0, 0, 100)), _png("L", 80), _png("P", 3), _png("RGB", (0, 9, 9)),
             _png("LA", (10, 200))]
    vectors = embedder.embed_images(blobs)
    assert vectors.shape == (5, 64) and vectors.dtype == np.float16
    assert np.allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1.0, atol=1e-2)


def test_batching_does_not_change_results(embedder):
    blobs = [_png("RGB", (i * 20, 0, 255 - i * 20)) for i in range(7)]
    one_by_one = np.concatenate([embedder.embed_images([b]) for b in blobs])
    assert np.allclose(embedder.embed_images(blobs), one_by_one, atol=2e-3)


def test_batched_normalisation_equals_the_models_own_transform(embedder):
    """The fast path (PIL steps per image, ToTensor + Normalize once per batch) must feed the
    model what open_clip's transform would."""
    import torch

    from autods.core.embed import _rgb

    blobs = [_png("RGBA", (255, 0, 0, 100)), _png("L", 80), _png("RGB", (0, 90, 200))]
    fast = embedder._stack([embedder._prepare(b) for b in blobs])
    reference = torch.stack([embedder.preprocess(_rgb(Image.open(io.BytesIO(b))))
                             for b in blobs])
    assert embedder._pil_steps is not None and fast.shape == reference.shape
    assert torch.allclose(fast, reference, atol=1e-5)


def test_texts_share_the_image_space(embedder):
    vectors = embedder.embed_texts(["a red circle", "a blue square"])
    assert vectors.shape == (2, 64)
    assert not np.allclose(vectors[0], vectors[1])


def test_pretrained_checkpoint_path_is_loaded(tmp_path):
    import torch

    source = ClipEmbedder("autods-tiny-vit", device="cpu")
    path = tmp_path / "tiny.pt"
    torch.save(source.model.state_dict(), path)
    loaded = ClipEmbedder("autods-tiny-vit", pretrained=str(path), device="cpu")
    blob = [_png("RGB", (1, 2, 3))]
    assert np.allclose(loaded.embed_images(blob), source.embed_images(blob))
    assert loaded.name.endswith(str(path))


def test_npy_member_round_trips():
    vec = np.arange(4, dtype=np.float16)
    assert np.array_equal(np.load(io.BytesIO(npy_bytes(vec))), vec)


def test_weights_check_refuses_in_one_line_before_any_work(tmp_path, monkeypatch):
    import socket

    import huggingface_hub

    from autods.core.embed import WeightsUnavailable, check_weights

    assert check_weights("autods-tiny-vit", "random") == "random"
    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(b"weights")
    assert check_weights("autods-tiny-vit", str(checkpoint)) == str(checkpoint)
    with pytest.raises(WeightsUnavailable, match="no such file"):
        check_weights("autods-tiny-vit", str(tmp_path / "absent.pt"))
    with pytest.raises(WeightsUnavailable, match="not a tag of this model"):
        check_weights("ViT-B-32", "no-such-tag")

    def offline(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    # A machine without the weights in its cache and without a network.
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(WeightsUnavailable) as refused:
        check_weights("ViT-B-32", "laion2b_s34b_b79k")
    message = str(refused.value)
    assert "\n" not in message
    for needed in ("AUTODS_CLIP_PRETRAINED", "checkpoint path", "--no-embed",
                   "laion2b_s34b_b79k", "huggingface.co"):
        assert needed in message


def test_batches_inferred_in_parallel_give_the_same_bytes():
    """A CPU worker infers several batches at once, each on one torch thread: the vectors
    are those of one batch after another, bit for bit, in input order."""
    blobs = [_png("RGB", (i * 9 % 256, i * 31 % 256, 200)) for i in range(11)]
    serial = ClipEmbedder("autods-tiny-vit", device="cpu", batch_size=3)
    parallel = ClipEmbedder("autods-tiny-vit", device="cpu", batch_size=3, parallel_batches=3)
    assert parallel.embed_images(blobs).tobytes() == serial.embed_images(blobs).tobytes()
    assert parallel.embed_images([]).shape == (0, 64)


@pytest.mark.parametrize(("n", "batch", "parallel", "sizes"), [
    (46, 16, 2, [11, 11, 12, 12]), (17, 16, 2, [8, 9]), (256, 16, 2, [16] * 16),
    (3, 16, 4, [1, 1, 1]), (100, 16, 1, [14] * 5 + [15] * 2), (0, 16, 2, [])])
def test_a_chunks_batches_are_even_and_fill_every_parallel_round(n, batch, parallel, sizes):
    """46 images on two cores are two rounds of two batches (11 + 12, 11 + 12), not
    16 + 16 and then 14 on one core while the other waits."""
    embedder = ClipEmbedder.__new__(ClipEmbedder)
    embedder.batch_size, embedder.parallel_batches = batch, parallel
    bounds = embedder._bounds(n)
    assert [i for start, end in bounds for i in range(start, end)] == list(range(n))
    assert sorted(end - start for start, end in bounds) == sizes
