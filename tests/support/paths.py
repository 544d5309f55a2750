"""Where things are: the project, its own test fixtures, the optional real-world fixtures, test artifacts.

Everything a test needs to pass is made or shipped by the project (``tests/fixtures``, the signer in
``mailer/testing``, the factories in ``support/``). ``../shared/fixtures`` (real issues, AWS-signed SNS
messages, the SES guide's examples) only adds cases, replayed by ``tests/real_world`` when it exists.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = PROJECT_ROOT / "test-artifacts"
TOPICS_FILE = PROJECT_ROOT / "templates" / "topics.yaml"

# the project's own sample issues, written for the tests (tests/fixtures/README.md says what each is for)
SAMPLE_ISSUES_DIR = PROJECT_ROOT / "tests" / "fixtures" / "issues"
REFERENCE_ISSUE = SAMPLE_ISSUES_DIR / "2025-06-12-community-weekly-06.md"  # zh, CRLF, four topics
TYPO_ISSUE = SAMPLE_ISSUES_DIR / "2025-05-29-community-weekly-05.md"  # a "### Tempst" heading, CRLF
LONG_ISSUE = SAMPLE_ISSUES_DIR / "2025-07-03-community-weekly-08.md"  # 17 topics, long paragraphs, LF
ENGLISH_ISSUE = SAMPLE_ISSUES_DIR / "community-weekly-en.md"  # lang: en, date in the front matter, LF

# optional: real-world data beside the checkout; only tests/real_world may read it
SHARED_FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"
REAL_WORLD_MISSING = "real-world fixtures: ../shared/fixtures not found"


def sample_issues() -> list[Path]:
    return sorted(SAMPLE_ISSUES_DIR.glob("*.md"))


def real_issues() -> list[Path]:
    return sorted((SHARED_FIXTURES / "issues").glob("*.md"))
