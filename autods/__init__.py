"""autods: training-ready multimodal datasets from raw images and texts.

The public API is small on purpose: ``submit`` a job to a service, ``build`` one locally,
the ``Job`` handle, and ``Settings``.
"""

from autods.api import Job, build, submit
from autods.config import Settings

__all__ = ["Job", "Settings", "build", "submit"]
