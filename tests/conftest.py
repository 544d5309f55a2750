"""Fixtures shared by every test folder. Real components only: the machine's Redis and PostgreSQL, moto,
aiosmtpd, Celery worker processes, headless Chromium (see README). Helpers live in ``support/``."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.paths import ARTIFACTS_DIR, TOPICS_FILE

from mailer.topics import TopicRegistry, load_registry

pytest_plugins = ["plugins.db", "plugins.browser", "plugins.sending", "plugins.web"]


@pytest.fixture(scope="session")
def registry() -> TopicRegistry:
    return load_registry(TOPICS_FILE)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR
