"""Shared fixtures. Real components only: services are the machine's Redis and PostgreSQL (see README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.topics import TopicRegistry, load_registry

pytest_plugins = ["plugins.db", "plugins.services", "plugins.browser", "plugins.sending"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"
ISSUES_DIR = SHARED_FIXTURES / "issues"
REFERENCE_ISSUE = ISSUES_DIR / "2014-01-16-openstack-activity-1226-0116.md"
TYPO_ISSUE = ISSUES_DIR / "2013-12-26-openstack-activity-1216-1226.md"
ARTIFACTS_DIR = PROJECT_ROOT / "test-artifacts"


def fixture_issues() -> list[Path]:
    return sorted(ISSUES_DIR.glob("*.md"))


@pytest.fixture(scope="session")
def registry() -> TopicRegistry:
    return load_registry(PROJECT_ROOT / "templates" / "topics.yaml")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR
