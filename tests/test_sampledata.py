"""Synthetic data: deterministic, pHash-separated, and the sample set is what it claims."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import imagehash
import pytest
from PIL import Image

from autods.core.hashing import hamming, image_features
from examples import sampledata
from examples.sampledata import (
    SHAPES,
    near_duplicate,
    near_duplicate_bytes,
    phash,
    structured_image,
    write_sample_folder,
)

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "examples" / "sample"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
SEEDS = range(50)


def ih(img: Image.Image) -> imagehash.ImageHash:
    return imagehash.phash(img)


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("sample")
    return root, write_sample_folder(root)


def metadata_rows(root: Path) -> list[dict]:
    lines = (root / "images" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


# generator


def test_same_seed_same_pixels_other_seed_other_pixels():
    a = structured_image(7, (160, 120))
    assert a.mode == "RGB" and a.size == (160, 120)
    assert a.tobytes() == structured_image(7, (160, 120)).tobytes()
    assert a.tobytes() != structured_image(8, (160, 120)).tobytes()


def test_shape_is_honoured_and_checked():
    for shape in SHAPES:
        scene = sampledata.make_scene(3, (128, 128), shape)
        caption = sampledata.describe(scene)
        assert scene.shape == shape
        assert any(word in caption for word in sampledata.SHAPE_WORDS[shape])
    with pytest.raises(ValueError):
        structured_image(1, shape="hexagon")


def test_images_are_structured_not_noise():
    # Neighbouring pixels mostly agree; in noise they would not.
    img = structured_image(5, (128, 128)).convert("L")
    px = list(img.getdata())
    same = sum(abs(px[i] - px[i + 1]) <= 4 for i in range(len(px) - 1))
    assert same / (len(px) - 1) > 0.8


def test_phash_matches_imagehash():
    for seed in range(10):
        img = structured_image(seed, (192, 192))
        assert phash(img) == int(str(ih(img)), 16)


@pytest.mark.parametrize("size", [(512, 512), (192, 192), (256, 176)])
def test_near_duplicates_stay_within_two_bits(size):
    distances = []
    for seed in SEEDS:
        img = structured_image(seed, size)
        near = near_duplicate(img)
        assert near.tobytes() != img.tobytes()
        distances.append(ih(img) - ih(near))
    assert max(distances) <= 2


def test_near_duplicate_is_deterministic():
    img = structured_image(11, (192, 192))
    assert near_duplicate_bytes(img) == near_duplicate_bytes(img)


@pytest.mark.parametrize("size", [(512, 512), (128, 128)])
def test_different_seeds_are_far_apart(size):
    hashes = [ih(structured_image(seed, size)) for seed in SEEDS]
    closest = min(a - b for a, b in itertools.combinations(hashes, 2))
    assert closest > 10


# the sample set


def test_counts_match_files_on_disk(sample):
    root, counts = sample
    images = [p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_EXTS]
    captions = list((root / "images").glob("*.txt"))
    rows = metadata_rows(root)
    texts = [json.loads(line) for line in (root / "texts.jsonl").read_text().splitlines()]
    variants = [r["variant"] for r in rows]
    assert counts == {
        "images": len(images),
        "unique_images": variants.count("original"),
        "exact_duplicates": variants.count("exact_duplicate"),
        "near_duplicates": variants.count("near_duplicate"),
        "corrupt": variants.count("truncated") + variants.count("not_an_image"),
        "captions": len(captions),
        "metadata_rows": len(rows),
        "texts": len(texts),
        "unique_texts": len({t["text"] for t in texts}),
    }
    assert (counts["images"], counts["unique_images"], counts["exact_duplicates"],
            counts["near_duplicates"], counts["corrupt"]) == (48, 40, 3, 3, 2)
    assert (counts["texts"], counts["unique_texts"]) == (20, 19)
    assert {r["file_name"] for r in rows} == {p.name for p in images}
    assert all(r["license"] == "CC0-1.0" and r["source"] == "autods-synthetic"
               for r in rows + texts)
    assert "CC0" in (root / "LICENSE").read_text() and "examples.sampledata" in (
        root / "LICENSE").read_text()


def test_generation_is_byte_for_byte_repeatable(sample, tmp_path):
    root, _ = sample
    write_sample_folder(tmp_path)
    assert digests(tmp_path) == digests(root)


def test_formats_and_modes_cover_the_decoder_paths(sample):
    root, _ = sample
    seen = set()
    animated = 0
    for row in metadata_rows(root):
        if row["variant"] != "original":
            continue
        with Image.open(root / "images" / row["file_name"]) as img:
            mode = "P+transparency" if img.mode == "P" and "transparency" in img.info else img.mode
            seen.add((img.format, mode))
            animated += getattr(img, "n_frames", 1) > 1
            assert min(img.size) >= 128 and max(img.size) <= 256
    assert {("JPEG", "RGB"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "LA"),
            ("PNG", "P+transparency"), ("PNG", "L"), ("JPEG", "CMYK"), ("JPEG", "L"),
            ("PNG", "I;16"), ("WEBP", "RGB"), ("WEBP", "RGBA"), ("GIF", "P")} <= seen
    assert animated == 1


def test_duplicates_and_rejects_are_what_the_pipeline_will_see(sample):
    root, _ = sample
    folder = root / "images"
    rows = metadata_rows(root)
    feats = {r["file_name"]: image_features((folder / r["file_name"]).read_bytes()).phash
             for r in rows if r["variant"] in {"original", "near_duplicate"}}
    for row in rows:
        data = (folder / row["file_name"]).read_bytes()
        if row["variant"] == "exact_duplicate":
            assert data == (folder / row["duplicate_of"]).read_bytes()
        elif row["variant"] == "near_duplicate":
            assert data != (folder / row["duplicate_of"]).read_bytes()
            assert hamming(feats[row["file_name"]], feats[row["duplicate_of"]]) <= 2
        elif row["variant"] in {"truncated", "not_an_image"}:
            with pytest.raises(OSError):
                Image.open(io.BytesIO(data)).load()
    originals = [feats[r["file_name"]] for r in rows if r["variant"] == "original"]
    assert min(hamming(a, b) for a, b in itertools.combinations(originals, 2)) > 10


def test_exact_duplicates_vary_their_captions(sample):
    folder = sample[0] / "images"
    copies = [r for r in metadata_rows(sample[0]) if r["variant"] == "exact_duplicate"]

    def caption(name: str) -> str | None:
        path = folder / f"{name.rsplit('.', 1)[0]}.txt"
        return path.read_text() if path.exists() else None

    kinds = sorted(
        "none" if caption(r["file_name"]) is None
        else "same" if caption(r["file_name"]) == caption(r["duplicate_of"]) else "other"
        for r in copies
    )
    assert kinds == ["none", "other", "same"]


def test_cli_regenerates_and_cleans(tmp_path):
    stray = tmp_path / "images" / "stray.png"
    stray.parent.mkdir()
    stray.write_bytes(b"old")
    assert sampledata.main([str(tmp_path), "--clean"]) == 0
    assert not stray.exists() and (tmp_path / "images" / "metadata.jsonl").exists()


# the committed copy


def test_bundled_sample_has_the_generated_layout(sample):
    root, _ = sample
    assert set(digests(BUNDLED)) == set(digests(root))
    total = sum(p.stat().st_size for p in BUNDLED.rglob("*") if p.is_file())
    assert total < 2 * 1024 * 1024
    assert metadata_rows(BUNDLED) == metadata_rows(root)
    assert (BUNDLED / "texts.jsonl").read_bytes() == (root / "texts.jsonl").read_bytes()


def _load_lfs():
    pytest.importorskip("snorkel")
    spec = importlib.util.spec_from_file_location("sample_lfs", REPO / "examples" /
                                                  "sample_lfs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lf_inputs(root: Path) -> list[tuple[SimpleNamespace, str]]:
    """The fields the labelling stage hands to LFs, with each input's true shape."""
    out = []
    for row in metadata_rows(root):
        if row["variant"] in {"truncated", "not_an_image"}:
            continue
        path = root / "images" / row["file_name"]
        caption = path.with_suffix(".txt")
        with Image.open(path) as img:
            x = SimpleNamespace(
                caption=caption.read_text().strip() if caption.exists() else None,
                text=None, modality="image", width=img.width, height=img.height,
                format=img.format, mode=img.mode, nbytes=path.stat().st_size)
        out.append((x, row["shape"]))
    for line in (root / "texts.jsonl").read_text().splitlines():
        rec = json.loads(line)
        x = SimpleNamespace(caption=None, text=rec["text"], modality="text", width=None,
                            height=None, format=None, mode=None, nbytes=None)
        out.append((x, rec["shape"]))
    return out


def test_sample_lfs_are_mostly_right_and_sometimes_disagree(sample):
    lfs = _load_lfs()
    assert lfs.LABELS == ["circle", "square", "triangle", "stripes"]
    right = wrong = conflicts = 0
    for x, truth in _lf_inputs(sample[0]):
        votes = [v for v in (lf(x) for lf in lfs.LFS) if v != -1]
        assert all(0 <= v < len(lfs.LABELS) for v in votes)
        right += sum(lfs.LABELS[v] == truth for v in votes)
        wrong += sum(lfs.LABELS[v] != truth for v in votes)
        conflicts += len(set(votes)) > 1
    assert right > 3 * wrong and wrong > 0 and conflicts >= 5
