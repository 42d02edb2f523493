"""The sample LFs plus one that holds the first call it gets until the test lets it go.

A kill -9 aimed at the label queue's pool process while that call waits lands mid-task
on any machine, however fast the other stages run: the fault comes by count, not by
timing. The hold happens once per directory (an exclusive create), so the task that
comes back after the kill runs through.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from snorkel.labeling import labeling_function

from examples.sample_lfs import *  # noqa: F403 - LABELS and every sample LF
from examples.sample_lfs import ABSTAIN

#: The folder the test watches: ``held`` holds the waiting process's pid, ``release``
#: lets it go.
HOLD_DIR_ENV = "AUTODS_TEST_HOLD_DIR"


@labeling_function()
def lf_zz_hold_once(x) -> int:
    """Abstains; its first call waits for ``release`` in the hold folder."""
    folder = os.environ.get(HOLD_DIR_ENV)
    if folder:
        mine = Path(folder) / f"held.{os.getpid()}"
        mine.write_text(str(os.getpid()))
        try:  # a link appears whole, with the pid in it, or not at all
            os.link(mine, Path(folder) / "held")
        except FileExistsError:
            return ABSTAIN
        while not (Path(folder) / "release").exists():
            time.sleep(0.02)
    return ABSTAIN
