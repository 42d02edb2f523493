"""The version, read once from the installed package's metadata (``pyproject.toml``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("autods")
except PackageNotFoundError:  # a source tree on sys.path without an install
    VERSION = "0+unknown"

#: Recorded in every manifest: which code wrote the shard.
PIPELINE_VERSION = f"autods-{VERSION}"
