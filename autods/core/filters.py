"""Quality filters: a job's declared bounds on what a sample may be, and the verdicts.

A filter is a bound on one measured value (an image's shorter side, its aspect ratio, the
file size, a caption's or a text's length, a text's language, the CLIP similarity of an
image and its caption). The spec is declarative and the same whichever way it arrives
(command-line options, a YAML file, the REST body): ``Filters`` validates it once and a
job stores it with its options. A sample that fails a bound is not an error: it gets the
reason ``filter:<name>`` and the measured value, which the job summary and ``autods why``
show. Bounds are checked in declaration order and the first that fails is the one
recorded, so one sample has one reason whatever else it fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

REASON_PREFIX = "filter:"


class Filters(BaseModel):
    """Every bound is optional; an empty spec filters nothing.

    Sides are in pixels (``min_side`` bounds the shorter side, ``max_side`` the longer),
    ``aspect`` is the longer side over the shorter one (so 1.0 is square and a bound works
    for portrait and landscape alike), sizes are the stored bytes, lengths are characters
    after the caption or text is cleaned. ``languages`` lists ISO 639-1 codes a text must be
    in, detected with at least ``min_language_score`` probability. ``min_clip_score`` is
    the floor on the cosine of an image's CLIP vector and its caption's. Bounds are
    independent: a minimum above its maximum is accepted and turns every sample away, as
    the summary's reasons then show.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_side: int | None = Field(default=None, ge=1)
    max_side: int | None = Field(default=None, ge=1)
    max_aspect: float | None = Field(default=None, ge=1.0)
    min_bytes: int | None = Field(default=None, ge=0)
    max_bytes: int | None = Field(default=None, ge=1)
    min_caption_len: int | None = Field(default=None, ge=0)
    max_caption_len: int | None = Field(default=None, ge=0)
    min_text_len: int | None = Field(default=None, ge=0)
    max_text_len: int | None = Field(default=None, ge=0)
    languages: tuple[str, ...] | None = None
    min_language_score: float = Field(default=0.5, ge=0.0, le=1.0)
    min_clip_score: float | None = Field(default=None, ge=-1.0, le=1.0)

    @field_validator("languages", mode="before")
    @classmethod
    def _split_languages(cls, value: Any) -> Any:
        """``"en,de"`` on the command line, a list in YAML and JSON."""
        if isinstance(value, str):
            value = value.split(",")
        if value is None:
            return None
        codes = tuple(str(v).strip().lower() for v in value if str(v).strip())
        return codes or None

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Filters:
        """A YAML file's bounds (a mapping, or one under a top-level ``filters`` key), with
        every override that is not None on top: options given on the command line win."""
        doc: dict[str, Any] = {}
        if path is not None:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping of filter bounds")
            doc = loaded.get("filters", loaded) if isinstance(loaded.get("filters"), dict) \
                else loaded
        doc.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(doc)

    def as_params(self) -> dict[str, Any] | None:
        """The bounds that are set, as a job stores them; None when nothing is filtered."""
        params = self.model_dump(exclude_none=True, exclude_defaults=True, mode="json")
        return params or None

    @property
    def needs_clip(self) -> bool:
        return self.min_clip_score is not None


@dataclass(frozen=True, slots=True)
class Failure:
    """The first bound a sample failed: ``reason`` is what the item records."""

    name: str
    value: float | str
    bound: str

    @property
    def reason(self) -> str:
        return f"{REASON_PREFIX}{self.name}"

    @property
    def detail(self) -> str:
        return f"{self.name}={_fmt(self.value)} ({self.bound})"


def _fmt(value: float | str) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _bounds(name: str, value: float, low: float | None, high: float | None) -> Failure | None:
    if low is not None and value < low:
        return Failure(name, value, f"min {_fmt(low)}")
    if high is not None and value > high:
        return Failure(name, value, f"max {_fmt(high)}")
    return None


def check_image(spec: Filters, width: int, height: int, nbytes: int,
                caption: str | None) -> Failure | None:
    """The first bound an image sample fails, or None."""
    short, long = sorted((width, height))
    checks = (
        ("min_side", short, spec.min_side, None),
        ("max_side", long, None, spec.max_side),
        ("aspect", long / max(short, 1), None, spec.max_aspect),
        ("bytes", nbytes, spec.min_bytes, spec.max_bytes),
        ("caption_len", len(caption or ""), spec.min_caption_len, spec.max_caption_len),
    )
    return _first(checks)


def check_text(spec: Filters, length: int, nbytes: int,
               language: tuple[str, float] | None) -> Failure | None:
    """The first bound a text sample fails, or None. ``language`` is the detected code and
    its probability (``detect_language``)."""
    failed = _first((("bytes", nbytes, spec.min_bytes, spec.max_bytes),
                     ("text_len", length, spec.min_text_len, spec.max_text_len)))
    if failed is not None or not spec.languages:
        return failed
    code, score = language or ("", 0.0)
    if code not in spec.languages:
        return Failure("language", code or "unknown", "one of " + ",".join(spec.languages))
    if score < spec.min_language_score:
        return Failure("language_score", score, f"min {_fmt(spec.min_language_score)}")
    return None


def check_clip(spec: Filters, similarity: float) -> Failure | None:
    """The CLIP image-caption floor, or None when it passes or is not asked for."""
    return _bounds("clip_score", similarity, spec.min_clip_score, None)


def _first(checks) -> Failure | None:
    for name, value, low, high in checks:
        failed = _bounds(name, value, low, high)
        if failed is not None:
            return failed
    return None


@cache
def _identifier():
    """py3langid's shipped model (97 languages), loaded once per process (~0.7 s)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> tuple[str, float]:
    """ISO 639-1 code and its probability, judged on the case-folded text with whitespace
    collapsed: the model counts byte n-grams, and text in capitals or laid out in columns
    reads to it as another language (an English paragraph in capitals came out as Fula)."""
    language, score = _identifier().classify(" ".join(text.casefold().split()))
    return language, float(score)
