"""Security properties that hold by construction, checked so they keep holding."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autods.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_no_sql_is_built_from_strings():
    pattern = re.compile(r"""(?<!\w)(text|execute|exec_driver_sql)\(\s*f?["'].*(\{|%s|\+)""")
    offenders = [f"{p}:{n}" for p in (ROOT / "autods").rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_api_refuses_to_start_without_a_token():
    from autods.rest import create_app

    settings = Settings()
    settings.api.token = None
    settings.api.insecure_local = False
    with pytest.raises(RuntimeError, match="AUTODS_API_TOKEN"):
        create_app(settings)


def test_secrets_are_not_shown_in_settings_repr():
    from pydantic import SecretStr

    settings = Settings()
    settings.api.token = SecretStr("s3cr3t-token")
    settings.storage.secret_access_key = SecretStr("aws-s3cr3t")
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings.model_dump())
