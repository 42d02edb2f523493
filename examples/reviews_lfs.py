"""Keyword labelling functions for movie-review snippets (``bench.reviews``): ten rules a
person would write in a minute, five per class. They cover about a third of the snippets,
and disagree where a review says "not bad" or "the best of a bad lot": the label model
weighs them, the end model labels what none of them matches.
"""

from __future__ import annotations

from autods.core.label import keyword_lf

LABELS = ["negative", "positive"]
NEGATIVE, POSITIVE = range(len(LABELS))

lf_bad = keyword_lf("lf_bad", NEGATIVE, ["bad", "worst", "awful", "terrible"])
lf_boring = keyword_lf("lf_boring", NEGATIVE, ["boring", "dull", "tedious", "bland"])
lf_stupid = keyword_lf("lf_stupid", NEGATIVE, ["stupid", "dumb", "silly", "pointless"])
lf_mess = keyword_lf("lf_mess", NEGATIVE, ["mess", "fails", "failure", "flat"])
lf_unfunny = keyword_lf("lf_unfunny", NEGATIVE, ["unfunny", "lame", "predictable", "waste"])
lf_great = keyword_lf("lf_great", POSITIVE, ["great", "best", "excellent", "superb"])
lf_beautiful = keyword_lf("lf_beautiful", POSITIVE, ["beautiful", "beautifully", "lovely"])
lf_moving = keyword_lf("lf_moving", POSITIVE, ["moving", "touching", "powerful", "heart"])
lf_fun = keyword_lf("lf_fun", POSITIVE, ["enjoyable", "entertaining", "delightful", "charming"])
lf_smart = keyword_lf("lf_smart", POSITIVE, ["smart", "intelligent", "fascinating",
                                             "engrossing"])
