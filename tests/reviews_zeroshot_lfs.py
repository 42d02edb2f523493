"""The review keyword LFs plus a zero-shot LF on the reviews' sentence embeddings."""

from __future__ import annotations

from autods.core.zeroshot import zero_shot_lf
from examples.reviews_lfs import *  # noqa: F403
from examples.reviews_lfs import NEGATIVE, POSITIVE

lf_zero_shot = zero_shot_lf("lf_zero_shot", {
    NEGATIVE: ["a bad, boring movie", "I hated this film"],
    POSITIVE: ["a great, moving movie", "I loved this film"]}, margin=0.05)
