"""autods: training-ready multimodal datasets from raw images and texts.

The public API is small on purpose: ``submit`` a job to a service, ``build`` one locally,
the ``Job`` handle, ``import_gold`` and ``relabel`` for the labelling loop,
``open_dataset`` to use what they made, ``lineage`` to trace a sample, and ``Settings``.
They are imported on first use, so that the CLI and worker processes, which import this
package first, start without loading the database layer before they need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autods.api import Job, build, import_gold, lineage, relabel, submit
    from autods.config import Settings
    from autods.dataset import open_dataset

__all__ = ["Job", "Settings", "build", "import_gold", "lineage", "open_dataset", "relabel",
           "submit"]
_HOMES = {"Job": "autods.api", "build": "autods.api", "submit": "autods.api",
          "relabel": "autods.api", "import_gold": "autods.api", "lineage": "autods.api",
          "Settings": "autods.config", "open_dataset": "autods.dataset"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'autods' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
