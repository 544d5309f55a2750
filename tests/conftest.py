"""Fixtures shared by every test folder. Real components only: the machine's Redis and PostgreSQL, moto,
aiosmtpd, Celery worker processes, headless Chromium (see README). Helpers live in ``support/``."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.paths import ARTIFACTS_DIR, SHARED_FIXTURES, TOPICS_FILE

from mailer.topics import TopicRegistry, load_registry

pytest_plugins = ["plugins.db", "plugins.browser", "plugins.sending", "plugins.web"]

# the real-world replay runs only beside ../shared/fixtures (tests/real_world/test_shared_fixtures.py)
collect_ignore_glob = [] if SHARED_FIXTURES.is_dir() else ["real_world/test_real_*.py"]


@pytest.fixture(scope="session")
def registry() -> TopicRegistry:
    return load_registry(TOPICS_FILE)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR
