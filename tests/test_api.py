"""The Python API as a caller sees it: what it leaves alone and what it refuses."""

from __future__ import annotations

import os
import sqlite3

import pytest

import autods
from autods.config import Settings
from autods.db.session import SchemaNotCurrent
from tests.datagen import image_folder


def test_build_leaves_the_callers_environment_and_configuration_alone(tmp_path):
    from autods.pipeline.runtime import get_runtime
    from autods.tasks.app import app

    exp = image_folder(tmp_path / "in", n_unique=5, n_exact=1)
    env_before, broker_before = dict(os.environ), app.conf.broker_url
    runtime_before = get_runtime()

    status = autods.build(str(tmp_path / "in"), tmp_path / "ds", workers=1, embed=False)

    assert status.status == "succeeded", status.error
    assert status.published == len(exp.unique) and status.statuses["exact_duplicate"] == 1
    assert dict(os.environ) == env_before
    assert app.conf.broker_url == broker_before and get_runtime() is runtime_before


def test_submit_refuses_a_database_without_the_schema_and_says_what_to_run(tmp_path):
    from autods.pipeline.runtime import set_runtime
    from autods.tasks.app import app, configure

    settings = Settings()
    settings.database.url = f"sqlite:///{tmp_path / 'never-migrated.sqlite'}"
    settings.broker.url = "memory://localhost/"
    image_folder(tmp_path / "in", n_unique=1)

    try:
        with pytest.raises(SchemaNotCurrent, match="autods db upgrade"):
            autods.submit(str(tmp_path / "in"), "d", settings=settings)
    finally:  # submit(settings=...) configures this process; give the next test a clean one
        set_runtime(None)
        configure(app, Settings())

    with sqlite3.connect(tmp_path / "never-migrated.sqlite") as db:  # nothing half-created
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
