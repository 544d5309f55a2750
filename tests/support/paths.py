"""Where things are: the project, ../shared's fixtures (real issues, SNS and SES messages), test artifacts."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"
ISSUES_DIR = SHARED_FIXTURES / "issues"
REFERENCE_ISSUE = ISSUES_DIR / "2014-01-16-openstack-activity-1226-0116.md"
TYPO_ISSUE = ISSUES_DIR / "2013-12-26-openstack-activity-1216-1226.md"
ARTIFACTS_DIR = PROJECT_ROOT / "test-artifacts"
TOPICS_FILE = PROJECT_ROOT / "templates" / "topics.yaml"


def fixture_issues() -> list[Path]:
    return sorted(ISSUES_DIR.glob("*.md"))
